"""Reweighting stored frames with the live model: energies, chunking, FEP gradients, ESS."""

import pytest
import torch

from phasetune.potentials.base import refresh_sampling_copy, sampling_copy
from phasetune.potentials.evaluation import frame_energies
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points
from phasetune.structures import build_structure
from phasetune.thermo import (
    effective_sample_size,
    free_energy_perturbation,
    reweighted_average,
    reweighting_weights,
)
from phasetune.units import KB_EV_PER_K


@pytest.fixture(scope="module")
def sampled():
    model = LennardJones(epsilon_eV=0.0104, sigma_A=3.4, cutoff_sigma=2.2)
    atoms = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=32)
    points = [
        StatePoint(name="cold", phase="fcc", atoms=atoms, temperature_K=30.0, pressure_GPa=0.0),
        StatePoint(name="warm", phase="fcc", atoms=atoms, temperature_K=50.0, pressure_GPa=0.1),
    ]
    settings = SamplerSettings(
        timestep_fs=5.0,
        equilibration_steps=100,
        production_steps=300,
        stride=10,
        progress=False,
        check_phase=False,
    )
    frames, _ = sample_state_points(sampling_copy(model), points, settings)
    return model, frames, torch.tensor([30.0, 50.0], dtype=torch.float64) * KB_EV_PER_K


def test_live_energies_reproduce_sampled_energies(sampled):
    model, frames, _ = sampled
    energies = frame_energies(model, frames)
    torch.testing.assert_close(energies.detach(), frames.potential_energy, rtol=0, atol=1e-10)


def test_chunking_changes_neither_energies_nor_gradients(sampled):
    model, frames, kT = sampled
    grads = []
    for chunk in (1, 7, 1000):
        energies = frame_energies(model, frames, chunk_frames=chunk)
        loss = free_energy_perturbation(energies - frames.potential_energy, kT, frames_dim=0).sum()
        grads.append(torch.autograd.grad(loss, [model.epsilon, model.sigma]))
    for g in grads[1:]:
        torch.testing.assert_close(g[0], grads[0][0], rtol=1e-12, atol=0)
        torch.testing.assert_close(g[1], grads[0][1], rtol=1e-12, atol=0)


def _fep(model, frames, kT):
    delta_u = frame_energies(model, frames) - frames.potential_energy  # [frames, systems]
    return free_energy_perturbation(delta_u, kT, frames_dim=0), delta_u


def test_fep_gradient_is_reweighted_mean_of_du_dtheta_and_finite_difference(sampled):
    base, frames, kT = sampled
    sigma = 3.4 * 0.998
    # the same cutoff in Å as the sampled model (r_c follows σ from there)
    model = LennardJones(epsilon_eV=0.0104 * 1.02, sigma_A=sigma, cutoff_sigma=base.cutoff / sigma)
    delta_f, delta_u = _fep(model, frames, kT)
    d_eps, d_sig = torch.autograd.grad(delta_f.sum(), [model.epsilon, model.sigma])
    # reweighted ⟨∂U/∂ε⟩ (U is linear in ε, so ∂U/∂ε = U/ε per frame)
    weights = reweighting_weights(delta_u.detach(), kT, frames_dim=0).T  # [systems, frames]
    energies = frame_energies(model, frames)
    du_deps = energies.detach() / model.epsilon.detach()
    expected_eps = reweighted_average(du_deps.T, weights).sum()
    torch.testing.assert_close(d_eps, expected_eps, rtol=1e-10, atol=0)
    # central finite differences of the whole estimate
    h = {"epsilon": 1e-7, "sigma": 1e-6}
    for name, grad in (("epsilon", d_eps), ("sigma", d_sig)):
        values = []
        for sign in (1, -1):
            param = getattr(model, name)
            with torch.no_grad():
                param.add_(sign * h[name])
            values.append(_fep(model, frames, kT)[0].sum().detach())
            with torch.no_grad():
                param.sub_(sign * h[name])
        numeric = (values[0] - values[1]) / (2 * h[name])
        torch.testing.assert_close(grad, numeric, rtol=1e-6, atol=0)


def test_ess_is_full_at_reference_and_falls_as_parameters_move(sampled):
    base, frames, kT = sampled
    live = sampling_copy(base)
    ess = []
    for factor in (1.0, 1.01, 1.03, 1.1):
        with torch.no_grad():
            live.epsilon.fill_(0.0104 * factor)
        delta_u = frame_energies(live, frames) - frames.potential_energy  # [frames, systems]
        weights = reweighting_weights(delta_u, kT, frames_dim=0)
        ess.append(effective_sample_size(weights, frames_dim=0))
    torch.testing.assert_close(ess[0], torch.full_like(ess[0], frames.n_frames), rtol=1e-12, atol=0)
    for before, after in zip(ess, ess[1:], strict=False):
        assert bool((after < before).all())
    refresh_sampling_copy(live, base)
    assert live.epsilon.item() == base.epsilon.item()
