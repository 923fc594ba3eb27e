"""DiffTRe bookkeeping against exact results: springs whose Gibbs energy is analytic.

Atoms on springs to fixed sites, U = ½ k Σ|x − x₀|², in a fixed cell: the configurational
free energy per atom changes as ΔG/N = (3/2) kT ln(k/k₀) (classical, exact), and
∂(G/N)/∂k = (3/2) kT/k. The reweighted estimate, its gradient, and the BAR chain across a
re-sampling must all reproduce these.
"""

import math

import pytest
import torch
from ase import Atoms
from torch_sim.models.interface import ModelInterface

from phasetune.learn.difftre import (
    StatePointEnsemble,
    chain_with_bar,
    correlated_fep_error,
    delta_g_estimates,
    energies_on_frames,
    l2_sp,
    parameter_scales,
    parameter_snapshot,
    reweighted_gibbs_change,
    transition_loss,
)
from phasetune.potentials.base import sampling_copy
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points
from phasetune.thermo import (
    free_energy_perturbation,
    free_energy_perturbation_error,
    series_inefficiency,
)
from phasetune.units import KB_EV_PER_K


class Springs(ModelInterface):
    """Trainable spring constant k (eV/Å²), one for all atoms, sites fixed (a test model)."""

    def __init__(self, sites: torch.Tensor, k: float) -> None:
        super().__init__()
        self._device, self._dtype = torch.device("cpu"), torch.float64
        self._compute_forces = self._compute_stress = True
        self.register_buffer("sites", sites.clone())
        self.k = torch.nn.Parameter(torch.tensor(k, dtype=torch.float64))

    def forward(self, state, **kwargs):
        d = state.positions - self.sites.repeat(state.n_systems, 1)
        per_atom = 0.5 * self.k * (d**2).sum(-1)
        energy = torch.zeros(state.n_systems, dtype=torch.float64).index_add(
            0, state.system_idx, per_atom
        )
        return {
            "energy": energy,
            "forces": -self.k.detach() * d.detach(),
            "stress": torch.zeros(state.n_systems, 3, 3, dtype=torch.float64),
        }


TEMPERATURE_K = 100.0
N_ATOMS = 8


def _ensemble(model: Springs, atoms: Atoms, seed: int) -> StatePointEnsemble:
    point = StatePoint(
        name="springs", phase="fcc", atoms=atoms, temperature_K=TEMPERATURE_K, cell_mode="fixed"
    )
    settings = SamplerSettings(
        timestep_fs=10.0,
        equilibration_steps=300,
        production_steps=6000,
        stride=15,
        thermostat="langevin",
        thermostat_tau_fs=200.0,
        check_phase=False,
        progress=False,
        seed=seed,
    )
    frames, _ = sample_state_points(sampling_copy(model), [point], settings)
    ensemble = StatePointEnsemble(
        name="springs",
        target="t",
        phase="fcc",
        temperature_K=TEMPERATURE_K,
        pressure_GPa=0.0,
        frames=frames,
        reference_energy=torch.zeros(frames.n_frames, dtype=torch.float64),
        reference_params=parameter_snapshot(model),
    )
    with torch.no_grad():
        ensemble.reference_energy = energies_on_frames(model, ensemble).double()
    return ensemble


@pytest.fixture(scope="module")
def springs():
    rng = torch.Generator().manual_seed(0)
    sites = 2.0 + 6.0 * torch.rand(N_ATOMS, 3, generator=rng, dtype=torch.float64)
    atoms = Atoms("Ar8", positions=sites.numpy(), cell=[10.0, 10.0, 10.0], pbc=True)
    return Springs(sites, k=0.5), atoms


def test_reweighted_change_gradient_and_bar_chain_are_exact_for_springs(springs):
    model, atoms = springs
    kT = KB_EV_PER_K * TEMPERATURE_K
    k0 = 0.5
    with torch.no_grad():
        model.k.fill_(k0)
    old = _ensemble(model, atoms, seed=1)

    def exact(k: float) -> float:
        return 1.5 * kT * math.log(k / k0)

    # a small step: the reweighted estimate and its gradient (no re-sampling needed)
    with torch.no_grad():
        model.k.fill_(1.05 * k0)
    rg = reweighted_gibbs_change(model, old)
    assert rg.relative_ess > 0.8
    assert rg.delta_g_eV.item() == pytest.approx(exact(1.05 * k0), abs=0.05 * kT)
    rg.delta_g_eV.backward()
    assert model.k.grad.item() == pytest.approx(1.5 * kT / (1.05 * k0), rel=0.05)
    model.k.grad = None

    # a big step (ESS collapses), re-sample at k1 and chain with BAR
    k1 = 1.6 * k0
    with torch.no_grad():
        model.k.fill_(k1)
    assert reweighted_gibbs_change(model, old).relative_ess < 0.9
    new = chain_with_bar(model, old, _ensemble(model, atoms, seed=2))
    error = math.sqrt(new.offset_variance)
    assert new.round == 1 and 0 < error < 0.05 * kT
    assert abs(new.offset_eV - exact(k1)) < 4 * error + 0.01 * kT, (new.offset_eV, exact(k1))
    # the chain also records both one-sided estimates (meV/atom): each alone estimates the
    # same change (forward from the old frames, reverse from the new), less precisely than BAR
    step = new.history[-1]
    exact_meV = 1e3 * exact(k1)  # per atom, as the offsets
    for key in ("forward_fep_meV", "reverse_fep_meV"):
        assert abs(step[key] - exact_meV) < 0.05 * 1e3 * kT, (key, step, exact_meV)
    assert step["forward_fep_meV"] != step["reverse_fep_meV"]
    # each number once: the chained BAR step is not repeated under another name
    assert step["delta_g_meV"] == pytest.approx(1e3 * new.offset_eV - 1e3 * old.offset_eV)
    estimates = [v for k, v in step.items() if k.endswith("_meV") and k != "offset_meV"]
    assert "bar_meV" not in step and len(set(estimates)) == len(estimates), step
    # chained from the fresh frames alone: the reverse estimate, with its own (larger) error
    fresh = chain_with_bar(model, old, _ensemble(model, atoms, seed=2), method="fresh")
    fresh_error = math.sqrt(fresh.offset_variance)
    assert fresh.offset_eV == pytest.approx(1e-3 * fresh.history[-1]["delta_g_meV"])
    assert "reverse_fep_meV" not in fresh.history[-1] and "bar_meV" in fresh.history[-1]
    assert fresh.history[-1]["method"] == "fresh" and 0 < fresh_error < 0.05 * kT
    assert abs(fresh.offset_eV - exact(k1)) < 4 * fresh_error + 0.01 * kT
    with pytest.raises(ValueError, match="chain method"):
        chain_with_bar(model, old, _ensemble(model, atoms, seed=2), method="both")
    # and the chained estimate keeps tracking G further on
    with torch.no_grad():
        model.k.fill_(1.7 * k0)
    rg = reweighted_gibbs_change(model, new)
    assert rg.delta_g_eV.item() == pytest.approx(exact(1.7 * k0), abs=4 * error + 0.03 * kT)
    # its error carries the chain's and this reweighting's (correlated frames)
    assert error < rg.error_eV < 0.05 * kT
    assert abs(rg.delta_g_eV.item() - exact(1.7 * k0)) < 4 * rg.error_eV + 0.01 * kT


def test_several_gradients_of_one_reweighting_share_one_chunked_pass(springs, monkeypatch):
    """A Gauss–Newton step takes one gradient per residual: every one equals the one-graph
    gradient times its factor, and the energies are evaluated once, chunk by chunk, in the
    forward (with the gradient: the weights are normalised by a streamed log-sum-exp)."""
    model, atoms = springs
    with torch.no_grad():
        model.k.fill_(0.5)
    ensemble = _ensemble(model, atoms, seed=3)
    for k_new in (0.55, 0.8):  # nearly uniform and strongly varying weights
        with torch.no_grad():
            model.k.fill_(k_new)
        reference = reweighted_gibbs_change(model, ensemble, keep_graph=True)
        (expected,) = torch.autograd.grad(reference.delta_g_eV, [model.k])
        calls = []
        forward = Springs.forward

        def counted(self, state, forward=forward, calls=calls, **kwargs):
            calls.append(1)
            return forward(self, state, **kwargs)

        monkeypatch.setattr(Springs, "forward", counted)
        rg = reweighted_gibbs_change(model, ensemble, chunk_frames=150)
        monkeypatch.setattr(Springs, "forward", forward)
        assert len(calls) == -(-ensemble.n_valid() // 150)  # one pass over the chunks
        torch.testing.assert_close(rg.delta_g_eV, reference.delta_g_eV, rtol=1e-12, atol=0)
        assert rg.relative_ess == pytest.approx(reference.relative_ess, rel=1e-12)
        dg = rg.delta_g_eV
        residuals = torch.stack([2.0 * dg, -3.0 * dg + 1.0, dg])
        for k, factor in enumerate((2.0, -3.0, 1.0)):
            (grad,) = torch.autograd.grad(residuals[k], [model.k], retain_graph=True)
            torch.testing.assert_close(grad, factor * expected, rtol=1e-10, atol=0)
        assert len(calls) == -(-ensemble.n_valid() // 150)  # no pass in the backward
    assert reference.relative_ess < 0.5  # the second case reweights for real


def test_loss_pieces():
    f64 = torch.float64
    changes = {"a/fcc": torch.tensor(0.001, dtype=f64), "a/liquid": torch.tensor(0.004, dtype=f64)}
    dg = delta_g_estimates(
        changes, anchors_eV=torch.tensor([-0.002], dtype=f64), pairs=[("a/fcc", "a/liquid")]
    )
    assert dg.tolist() == pytest.approx([0.001], abs=1e-15)
    assert transition_loss(torch.tensor([2e-4]), torch.tensor([1e-4])).item() == pytest.approx(4)

    lin = torch.nn.Linear(2, 1, dtype=torch.float64)
    theta0 = {n: p.detach().clone() for n, p in lin.named_parameters()}
    scales = parameter_scales(lin)
    assert l2_sp(lin, theta0, scales).item() == 0.0
    with torch.no_grad():
        lin.weight.add_(scales["weight"])
    # two weight entries moved by one scale each, one bias unchanged: mean = 2/3
    assert l2_sp(lin, theta0, scales).item() == pytest.approx(2 / 3)


def test_correlated_fep_error_matches_the_spread_of_independent_runs():
    """AR(1) energy differences, φ = 0.8 (statistical inefficiency (1 + φ)/(1 − φ) = 9):
    the error from one series must match the spread of the FEP estimate over 400
    independent series; the independent-frames formula understates it by ≈ √9 = 3."""
    kT, phi, sd, n_frames, n_runs = 0.1, 0.8, 0.05, 400, 400
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn(n_runs, n_frames, generator=generator, dtype=torch.float64)
    series = torch.empty_like(noise)
    series[:, 0] = noise[:, 0]
    for i in range(1, n_frames):
        series[:, i] = phi * series[:, i - 1] + math.sqrt(1 - phi**2) * noise[:, i]
    du = 1.0 + sd * series  # eV; σ(βΔU) = 0.5
    estimates = torch.stack([free_energy_perturbation(d, kT) for d in du])
    spread = float(estimates.std())
    correlated = sum(correlated_fep_error(d, kT) for d in du) / n_runs
    independent = float(sum(free_energy_perturbation_error(d, kT) for d in du)) / n_runs
    assert correlated == pytest.approx(spread, rel=0.2), (correlated, spread)
    assert independent < 0.5 * spread, (independent, spread)


def test_correlated_fep_error_covers_runs_that_still_relax():
    """Each run relaxes from its own start (ΔU offset a·e^{−t/τ}, a random per run, τ a
    third of the run) on top of fast noise: the runs' estimates scatter by the offsets,
    which the autocorrelation of one run cannot see; the halves' difference does."""
    kT, n_frames, n_runs = 0.1, 200, 300
    generator = torch.Generator().manual_seed(5)
    t = torch.arange(n_frames, dtype=torch.float64)
    amplitude = 0.02 * torch.randn(n_runs, 1, generator=generator, dtype=torch.float64)
    noise = 0.01 * torch.randn(n_runs, n_frames, generator=generator, dtype=torch.float64)
    du = 1.0 + amplitude * torch.exp(-t / (n_frames / 3)) + noise
    spread = float(torch.stack([free_energy_perturbation(d, kT) for d in du]).std())
    errors = torch.tensor([correlated_fep_error(d, kT) for d in du])
    stationary_part = torch.tensor(
        [
            float(free_energy_perturbation_error(d, kT))
            * math.sqrt(series_inefficiency(torch.exp(-(d - d.min()) / kT)))
            for d in du
        ]
    )
    rms = float(errors.pow(2).mean().sqrt())
    assert float(stationary_part.pow(2).mean().sqrt()) < 0.5 * spread  # what σ_stat misses
    assert 0.7 * spread < rms < 2.0 * spread, (rms, spread)
