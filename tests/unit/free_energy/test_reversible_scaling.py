"""Reversible scaling: G(T) over a temperature range from one nonequilibrium run.

Checked where G(T) is exact (Einstein crystal in a fixed cell; ideal gas in NPT and NVT)
and, for Lennard-Jones fcc argon in NPT, against Gibbs–Helmholtz integration of sampled
equilibrium enthalpies.
"""

import math

import numpy as np
import pytest
import torch
import torch_sim as ts
from ase import Atoms
from torch_sim.models.interface import ModelInterface

from phasetune.free_energy.einstein import EinsteinCrystal, einstein_free_energy_per_atom_eV
from phasetune.free_energy.reversible_scaling import (
    ScaledModel,
    mean_and_error,
    reversible_scaling,
)
from phasetune.potentials.ideal_gas import IdealGas
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points
from phasetune.structures import build_structure
from phasetune.thermo.phase_transitions import gibbs_helmholtz_delta_g
from phasetune.units import EV_PER_A3_PER_GPA, KB_EV_PER_K


@pytest.fixture(autouse=True)
def _one_thread():
    """These batches are small: one thread is faster than two contending ones (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _argon_fcc_batch(n_replicas: int, n_atoms: int = 32):
    atoms = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=n_atoms)
    return atoms, ts.io.atoms_to_state([atoms] * n_replicas, device="cpu", dtype=torch.float64)


@pytest.mark.parametrize(("final_temperature", "switching_steps"), [(600.0, 3000), (150.0, 2000)])
def test_einstein_crystal_free_energy_over_a_temperature_range(final_temperature, switching_steps):
    """F_E(T)/N = 3kT ln(ħω/kT) at every grid temperature, heating and cooling, within 3σ.

    Fixed cell, Langevin thermostat (a global one is not ergodic for independent springs).
    Soft springs (ħω = 5.1 meV, period 810 fs): the integrator's O(dt²) configurational bias
    is then negligible; with k = 1 eV/Å² and dt = 5 fs it is ≈ −0.15 meV at 600 K.
    Here W_rev = (3N/2) kT₀ ln λ, so the formula's kinetic term (3/2) kT ln λ is half of
    the answer's T-dependence beyond T/T₀: leaving it out would miss by ≈ 54 meV at 600 K.
    """
    n_replicas, t0, spring = 32, 300.0, 0.25
    atoms, state = _argon_fcc_batch(n_replicas)
    mass = float(state.masses[0])
    g0 = einstein_free_energy_per_atom_eV(spring_eV_A2=spring, mass_amu=mass, temperature_K=t0)
    result = reversible_scaling(
        EinsteinCrystal(sites=state.positions, spring_eV_A2=spring),
        state,
        temperature_K=t0,
        final_temperature_K=final_temperature,
        cell_mode="fixed",
        g_reference_eV_per_atom=torch.full((n_replicas,), g0, dtype=torch.float64),
        timestep_fs=5.0,
        equilibration_steps=300,
        switching_steps=switching_steps,
        n_points=7,
        seed=1,
        progress=False,
    )
    assert result.temperatures_K[0] == t0
    assert float(result.temperatures_K[-1]) == pytest.approx(final_temperature, rel=1e-12)
    assert result.g_eV_per_atom.shape == (n_replicas, 7)
    assert bool((result.work_forward[:, 0] == 0).all() and (result.work_backward[:, 0] == 0).all())
    assert torch.equal(result.n_atoms, torch.full((n_replicas,), len(atoms)))
    assert torch.allclose(result.g_eV_per_atom, result.gibbs_energy(g0))
    mean, error = mean_and_error(result.g_eV_per_atom, range(n_replicas))
    for temperature, estimate, sigma in zip(
        result.temperatures_K.tolist(), mean.tolist(), error.tolist(), strict=True
    ):
        exact = einstein_free_energy_per_atom_eV(
            spring_eV_A2=spring, mass_amu=mass, temperature_K=temperature
        )
        assert abs(estimate - exact) < 3 * sigma + 2e-5, (temperature, estimate, exact, sigma)
    dissipation = result.dissipation / len(atoms)
    assert float(dissipation.mean()) > -3 * float(dissipation.std()) / math.sqrt(n_replicas)


def test_ideal_gas_npt_and_nvt_exact():
    """Ideal gas, per-system pressure and cell mode in one batch, exact in both ensembles.

    NPT with the Langevin thermostat (centre of mass thermalised): P(V) ∝ V^N e^(−βPV), so
    ⟨PV⟩ = (N + 1) kT and H = (5N/2 + 1) kT, whence
        G(T)/(NT) − G(T₀)/(NT₀) = −(5/2 + 1/N) k ln(T/T₀)   (whatever P).
    Fixed cell: W = 0 exactly and F(T)/(NT) − F(T₀)/(NT₀) = −(3/2) k ln(T/T₀).
    Without the PV work, or with the barostat at P instead of λP, the NPT result would be
    off by ≈ 45 meV or ≈ 6 meV per atom at 600 K (errors here ≈ 0.6 meV).
    """
    n_atoms, n_npt, n_fixed, t0, tf = 4, 48, 4, 300.0, 600.0
    kT = KB_EV_PER_K * t0
    pressure = (n_atoms + 1) * kT / 8000.0  # ⟨V⟩ = 8000 Å³ at T₀, eV/Å³
    side = 8000.0 ** (1 / 3)
    rng = np.random.default_rng(0)
    atoms = [
        Atoms(f"Ar{n_atoms}", positions=rng.random((n_atoms, 3)) * side, cell=[side] * 3, pbc=True)
        for _ in range(n_npt + n_fixed)
    ]
    state = ts.io.atoms_to_state(atoms, device="cpu", dtype=torch.float64)
    pressures = torch.tensor([1.0, 2.0] * (n_npt // 2) + [5.0] * n_fixed) * pressure
    result = reversible_scaling(
        IdealGas(),
        state,
        temperature_K=t0,
        final_temperature_K=tf,
        pressure_GPa=pressures / EV_PER_A3_PER_GPA,
        cell_mode=["isotropic"] * n_npt + ["fixed"] * n_fixed,
        timestep_fs=5.0,
        equilibration_steps=400,
        switching_steps=2000,
        barostat_tau_fs=200.0,
        compressibility_per_GPa=1.0 / (pressure / EV_PER_A3_PER_GPA),
        n_points=5,
        seed=4,
        progress=False,
    )
    assert result.g_eV_per_atom is None
    log_t = torch.log(result.temperatures_K / t0)
    mean, error = mean_and_error(result.delta_g_over_t, range(n_npt))
    exact = -(2.5 + 1.0 / n_atoms) * KB_EV_PER_K * log_t
    assert bool(((mean - exact).abs() <= 3 * error + 1e-12).all()), (mean, exact, error)
    fixed = result.delta_g_over_t[n_npt:]
    assert torch.allclose(fixed, (-1.5 * KB_EV_PER_K * log_t).expand_as(fixed), atol=1e-15)
    assert torch.equal(result.w_rev[n_npt:], torch.zeros_like(result.w_rev[n_npt:]))


def test_lennard_jones_fcc_matches_gibbs_helmholtz(argon):
    """LJ argon fcc (32 atoms), NPT at P = 0, 40 K → 70 K, against Gibbs–Helmholtz.

    Reference: G(T)/T − G(T₀)/T₀ = −∫_{T₀}^{T} H/T′² dT′, with H/N = ⟨U + PV⟩/N + (3/2) kT
    sampled (4 replicas each) at 4 temperatures, a quadratic H(T) integrated analytically
    (``gibbs_helmholtz_delta_g``); its error propagated linearly from the replicas' scatter.
    Compared: g(T) = G(T)/N − (T/T₀) G(T₀)/N. Measured (seed 1, 8 RS replicas): differences
    ≤ 0.07 meV, combined σ ≤ 0.13 meV; without the kinetic term RS would be off by 5 meV.
    The barostat's coupling uses a realistic β_T (0.5/GPa): with 0.05 the volume relaxes
    over ≈ 10 ps and both sides drift.
    """
    t0, tf, n_replicas, n_h_replicas = 40.0, 70.0, 8, 4
    md = {"barostat_tau_fs": 500.0, "compressibility_per_GPa": 0.5, "thermostat": "langevin"}

    def lennard_jones():
        return LennardJones(
            epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"], cutoff_sigma=2.5
        )

    atoms, state = _argon_fcc_batch(n_replicas)
    n_atoms = len(atoms)
    result = reversible_scaling(
        lennard_jones(),
        state,
        temperature_K=t0,
        final_temperature_K=tf,
        pressure_GPa=0.0,
        cell_mode="isotropic",
        timestep_fs=10.0,
        equilibration_steps=200,
        switching_steps=1000,
        n_points=7,
        seed=1,
        progress=False,
        **md,
    )
    rs, rs_error = mean_and_error(result.gibbs_energy(0.0), range(n_replicas))

    temperatures = torch.linspace(t0, tf, 4, dtype=torch.float64)
    points = [
        StatePoint(name=f"T{t:g}-{r}", phase="fcc", atoms=atoms, temperature_K=t)
        for t in temperatures.tolist()
        for r in range(n_h_replicas)
    ]
    settings = SamplerSettings(
        timestep_fs=10.0,
        equilibration_steps=500,
        production_steps=1500,
        stride=10,
        check_phase=False,
        progress=False,
        seed=1,
        **md,
    )
    frames, _ = sample_state_points(lennard_jones(), points, settings)
    kinetic = 1.5 * KB_EV_PER_K * temperatures.repeat_interleave(n_h_replicas)
    enthalpy = (frames.enthalpy - frames.kinetic_energy).mean(0) / n_atoms + kinetic
    enthalpy = enthalpy.reshape(len(temperatures), n_h_replicas)
    h_mean = enthalpy.mean(1)
    h_error = enthalpy.std(1) / math.sqrt(n_h_replicas)

    def gibbs_helmholtz(h):
        return gibbs_helmholtz_delta_g(
            result.temperatures_K,
            coexistence_temperature_K=t0,
            temperatures_K=temperatures,
            delta_h_eV=h,
            degree=2,
        )

    reference = gibbs_helmholtz(h_mean)
    jacobian = torch.autograd.functional.jacobian(gibbs_helmholtz, h_mean)  # linear in H
    reference_error = ((jacobian * h_error) ** 2).sum(1).sqrt()
    sigma = torch.sqrt(rs_error**2 + reference_error**2)
    assert bool(((rs - reference).abs() < 3 * sigma + 5e-5).all()), (
        (rs * 1e3).tolist(),
        (reference * 1e3).tolist(),
        (sigma * 1e3).tolist(),
    )
    kT0 = KB_EV_PER_K * t0
    assert float(result.dissipation.mean()) / n_atoms < 0.5 * kT0  # slow enough switching


class _AutogradSprings(ModelInterface):
    """Einstein springs with forces from autograd (like MACE): needs grad mode."""

    def __init__(self, sites, spring):
        super().__init__()
        self._device, self._dtype = torch.device("cpu"), torch.float64
        self._compute_forces, self._compute_stress = True, True
        self.sites, self.spring = sites.clone(), spring

    def forward(self, state, **kwargs):
        positions = state.positions.detach().requires_grad_(True)
        per_atom = 0.5 * self.spring * ((positions - self.sites) ** 2).sum(-1)
        energy = torch.zeros(state.n_systems, dtype=torch.float64).index_add(
            0, state.system_idx, per_atom
        )
        (gradient,) = torch.autograd.grad(energy.sum(), positions)
        zeros = torch.zeros(state.n_systems, 3, 3, dtype=torch.float64)
        return {"energy": energy, "forces": -gradient, "stress": zeros}


def test_scaled_model_scales_energy_forces_and_stress(argon):
    atoms = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=32)
    atoms.rattle(0.05, seed=0)
    state = ts.io.atoms_to_state([atoms, atoms], device="cpu", dtype=torch.float64)
    model = LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"])
    plain = model(state)
    scaled = ScaledModel(model)
    unscaled = scaled(state)  # lam None: λ = 1
    assert torch.allclose(unscaled["energy"], plain["energy"].detach())
    lam = torch.tensor([0.5, 2.0], dtype=torch.float64)
    scaled.lam = lam
    out = scaled(state)
    assert torch.allclose(out["energy"], lam * plain["energy"].detach(), rtol=1e-14)
    assert torch.allclose(out["forces"], lam[state.system_idx, None] * plain["forces"])
    assert torch.allclose(out["stress"], lam[:, None, None] * plain["stress"], rtol=1e-14)
    assert torch.allclose(scaled.unscaled_energy, plain["energy"].detach())
    assert not any(t.requires_grad for t in out.values())  # ε, σ are trainable parameters
    scaled.lam = torch.ones(3, dtype=torch.float64)
    with pytest.raises(ValueError, match="shape"):
        scaled(state)


def test_autograd_force_model_runs_like_the_analytic_one():
    """Same seed, same springs, forces by autograd or in closed form: identical works."""
    _, state = _argon_fcc_batch(2, n_atoms=8)
    kwargs = dict(
        temperature_K=100.0,
        final_temperature_K=200.0,
        cell_mode="fixed",
        timestep_fs=5.0,
        equilibration_steps=5,
        switching_steps=20,
        n_points=3,
        seed=3,
        progress=False,
    )
    analytic = reversible_scaling(
        EinsteinCrystal(sites=state.positions, spring_eV_A2=1.0), state, **kwargs
    )
    autograd = reversible_scaling(_AutogradSprings(state.positions, 1.0), state, **kwargs)
    assert torch.allclose(analytic.w_rev, autograd.w_rev, rtol=1e-10, atol=1e-14)
    assert float(analytic.w_rev.abs().max()) > 0


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"final_temperature_K": 100.0}, "differ"),
        ({"temperature_K": -1.0}, "> 0"),
        ({"final_temperature_K": 0.0}, "> 0"),
        ({"switching_steps": 0}, "switching_steps"),
        ({"equilibration_steps": -1}, "equilibration_steps"),
        ({"n_points": 1}, "n_points"),
        ({"cell_mode": "triclinic"}, "cell_mode"),
        ({"cell_mode": ["fixed"]}, "one per system"),
        ({"pressure_GPa": torch.zeros(3)}, "pressure_GPa"),
        ({"g_reference_eV_per_atom": torch.zeros(3)}, "g_reference"),
        ({"thermostat": "berendsen"}, "thermostat"),
        ({"timestep_fs": 0.0}, "timestep_fs"),
    ],
)
def test_bad_inputs_raise(overrides, match):
    _, state = _argon_fcc_batch(2, n_atoms=4)
    kwargs = dict(
        temperature_K=100.0,
        final_temperature_K=200.0,
        cell_mode="fixed",
        timestep_fs=5.0,
        equilibration_steps=1,
        switching_steps=2,
        progress=False,
    )
    kwargs.update(overrides)
    springs = EinsteinCrystal(sites=state.positions, spring_eV_A2=1.0)
    with pytest.raises(ValueError, match=match):
        reversible_scaling(springs, state, **kwargs)


def test_mean_and_error():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], dtype=torch.float64)
    mean, error = mean_and_error(values, [0, 1])
    assert mean.tolist() == [2.0, 3.0]
    assert error.tolist() == pytest.approx([1.0, 1.0])  # std √2, over √2
    assert bool(torch.isnan(mean_and_error(values, [2])[1]).all())
    with pytest.raises(ValueError):
        mean_and_error(values, [])
    with pytest.raises(ValueError):
        mean_and_error(values, [3])
