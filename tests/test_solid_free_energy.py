"""Absolute crystal free energies by Frenkel–Ladd switching: thermodynamic consistency."""

import pytest

from phasetune.free_energy.solid import FrenkelLaddSettings, solid_free_energy
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.structures import build_structure
from phasetune.units import EV_PER_A3_PER_GPA


def test_gibbs_energy_rises_by_v_dp_between_two_pressures(argon):
    """(∂G/∂P)_T = V: G(P₂) − G(P₁) = ∫ V dP ≈ (V₁ + V₂)/2 · ΔP per atom.

    Checks the whole chain (NPT lattice, springs from the MSD, switching, centre-of-mass
    terms, PV) on LJ fcc at 40 K: the two absolute free energies come from independent
    switching runs at different volumes and spring constants.
    """
    lj = LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"], cutoff_sigma=2.5)
    atoms = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=32)
    settings = FrenkelLaddSettings(
        timestep_fs=10.0,
        npt_equilibration_steps=400,
        npt_production_steps=1200,
        npt_stride=10,
        switching_equilibration_steps=200,
        switching_steps=800,
        n_replicas=6,
        compressibility_per_GPa=0.3,
        progress=False,
    )
    low, high = (
        solid_free_energy(
            lj, atoms, phase="fcc", temperature_K=40.0, pressure_GPa=p, settings=settings
        )
        for p in (0.0, 0.3)
    )
    expected = 0.5 * (low.volume_A3_per_atom + high.volume_A3_per_atom) * 0.3 * EV_PER_A3_PER_GPA
    error = (low.g_error_eV**2 + high.g_error_eV**2) ** 0.5
    measured = high.g_eV_per_atom - low.g_eV_per_atom
    assert abs(measured - expected) < 3 * error + 0.02 * expected, (measured, expected, error)
    assert high.volume_A3_per_atom < low.volume_A3_per_atom
    assert high.spring_eV_A2 > low.spring_eV_A2  # stiffer when compressed
    # the switching was close to reversible: dissipation ≪ k_BT per atom
    assert max(low.dissipation_eV.mean(), high.dissipation_eV.mean()) / 32 < 0.1 * 40 * 8.617e-5


def test_settings_and_inputs_are_checked(argon):
    with pytest.raises(ValueError, match="n_replicas"):
        FrenkelLaddSettings(n_replicas=1)
    lj = LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"])
    atoms = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=32)
    with pytest.raises(ValueError, match="phase must be one of"):
        solid_free_energy(lj, atoms, phase="liquid", temperature_K=40.0)
