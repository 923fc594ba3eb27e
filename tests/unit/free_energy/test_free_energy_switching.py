"""Frenkel–Ladd machinery on Einstein crystals, where every free energy is exact."""

import math

import pytest
import torch
import torch_sim as ts

from phasetune.free_energy.einstein import (
    EinsteinCrystal,
    einstein_free_energy_per_atom_eV,
    spring_constant_from_msd,
)
from phasetune.free_energy.switching import (
    LambdaPath,
    nonequilibrium_switching,
    switching_schedule,
)
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.structures import build_structure
from phasetune.units import KB_EV_PER_K


def test_switching_schedule_is_smooth_and_monotonic():
    tau = torch.linspace(0, 1, 1001, dtype=torch.float64)
    lam = switching_schedule(tau)
    assert float(lam[0]) == 0.0 and float(lam[-1]) == pytest.approx(1.0, abs=1e-12)
    assert bool((lam.diff() >= 0).all())
    slope = lam.diff() / tau.diff()
    assert float(slope[0]) < 1e-8 and float(slope[-1]) < 1e-6  # flat ends: no work kicks


def test_einstein_free_energy_closed_form():
    """F_E/N = 3kT ln(ħω/kT); ratios of springs give (3/2) kT ln(k2/k1) exactly."""
    kT = KB_EV_PER_K * 300.0
    f1 = einstein_free_energy_per_atom_eV(spring_eV_A2=1.0, mass_amu=40.0, temperature_K=300.0)
    f4 = einstein_free_energy_per_atom_eV(spring_eV_A2=4.0, mass_amu=40.0, temperature_K=300.0)
    assert f4 - f1 == pytest.approx(1.5 * kT * math.log(4.0), rel=1e-12)
    # by hand: ω = √(1 eV/Å² / 40 amu) = 1.5531e13 rad/s, ħω = 6.5821e-16 eV·s · ω = 10.223 meV
    assert f1 == pytest.approx(3 * kT * math.log(0.010223 / kT), rel=1e-4)
    assert spring_constant_from_msd(msd_A2=0.03, temperature_K=300.0) == pytest.approx(
        3 * kT / 0.03
    )
    with pytest.raises(ValueError):
        einstein_free_energy_per_atom_eV(spring_eV_A2=-1.0, mass_amu=40.0, temperature_K=300.0)


def test_switching_between_einstein_crystals_recovers_exact_free_energy():
    """Springs k1 → k2 by nonequilibrium switching: ΔF = (3N/2) kT ln(k2/k1) within error."""
    n_replicas, temperature = 8, 300.0
    atoms = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=32)
    state = ts.io.atoms_to_state([atoms] * n_replicas, device="cpu", dtype=torch.float64)
    k1, k2 = 0.5, 2.0
    springs_a = EinsteinCrystal(sites=state.positions, spring_eV_A2=k1)
    springs_b = EinsteinCrystal(sites=state.positions, spring_eV_A2=k2)
    result = nonequilibrium_switching(
        LambdaPath(springs_a, springs_b),
        state,
        temperature_K=torch.tensor(temperature),
        timestep_fs=5.0,
        equilibration_steps=400,
        switching_steps=1500,
        seed=2,
    )
    n_atoms = len(atoms)
    exact = 1.5 * n_atoms * KB_EV_PER_K * temperature * math.log(k2 / k1)
    estimate = result.delta_f
    error = float(estimate.std() / math.sqrt(n_replicas))
    assert abs(float(estimate.mean()) - exact) < 3 * error + 1e-3 * exact, (
        float(estimate.mean()),
        exact,
        error,
    )
    assert float(result.dissipation.mean()) > -3 * float(result.dissipation.std())


def test_frenkel_ladd_on_a_cold_lj_crystal_matches_its_harmonic_lattice():
    """LJ fcc at 4 K (T* = 0.033), centre of mass fixed, switched to Einstein springs.

    With the centre of mass fixed in both, the exact harmonic-lattice result is
        ΔF = F_E − F_LJ = −U₀ + (kT/2) Σ_{3N−3 modes} ln(k/λ_m),
    with λ_m the non-zero eigenvalues of the Hessian at the lattice (autograd). Anharmonic
    corrections are ≪ kT here. A global thermostat (velocity rescaling) misses this by
    5–10 kT because the modes of a cold crystal barely exchange energy; Langevin does not.
    """
    eps, sigma, temperature, n_replicas = 119.8 * KB_EV_PER_K, 3.405, 4.0, 8
    atoms = build_structure("fcc", element="Ar", lattice_A=5.26, n_atoms=32)
    one = ts.io.atoms_to_state([atoms], device="cpu", dtype=torch.float64)

    def lj():
        return LennardJones(epsilon_eV=eps, sigma_A=sigma, cutoff_sigma=2.5)

    u0 = float(lj()(one)["energy"])

    def energy(positions):
        moved = one.clone()
        moved.positions = positions
        return lj()(moved)["energy"].sum()

    hessian = torch.autograd.functional.hessian(energy, one.positions.clone())
    eigenvalues = torch.linalg.eigvalsh(hessian.reshape(96, 96))
    assert float(eigenvalues[:3].abs().max()) < 1e-10  # three translations
    modes = eigenvalues[3:]
    assert float(modes.min()) > 0.1  # a stable lattice
    spring = 2.0 * float(torch.exp(torch.log(modes).mean()))
    kT = KB_EV_PER_K * temperature
    expected = -u0 + 0.5 * kT * float(torch.log(spring / modes).sum())

    state = ts.io.atoms_to_state([atoms] * n_replicas, device="cpu", dtype=torch.float64)
    path = LambdaPath(
        lj(), EinsteinCrystal(sites=state.positions, spring_eV_A2=spring), fix_center_of_mass=True
    )
    result = nonequilibrium_switching(
        path,
        state,
        temperature_K=torch.tensor(temperature),
        timestep_fs=5.0,
        equilibration_steps=300,
        switching_steps=1000,
        seed=1,
    )
    estimate = float(result.delta_f.mean())
    error = float(result.delta_f.std()) / math.sqrt(n_replicas)
    assert abs(estimate - expected) < 3 * error + 0.2 * kT, (estimate, expected, error, kT)
    assert error < kT  # precise enough to see a few-kT thermostat bias
