"""Harmonic finite-size error from a model's own force constants (any torch-sim model)."""

import pytest
import torch

from phasetune.free_energy.harmonic import harmonic_finite_size_correction_eV
from phasetune.free_energy.phonons import harmonic_finite_size_error_eV
from phasetune.potentials.eam import mendelev_ti1
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.structures import build_structure


def test_lennard_jones_fcc_matches_the_analytic_lattice_sum(argon):
    """Finite differences of the model's forces + a q-grid against the analytic pair-potential
    lattice sums of :mod:`phasetune.free_energy.harmonic` (an independent implementation)."""
    lj = LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"], cutoff_sigma=2.5)
    atoms = build_structure("fcc", element="Ar", lattice_A=5.45, n_atoms=32)
    exact = harmonic_finite_size_correction_eV(lj, atoms, phase="fcc", temperature_K=80.0)
    from_forces = harmonic_finite_size_error_eV(
        lj, atoms, atoms_per_primitive_cell=1, temperature_K=80.0
    )
    assert exact < 0
    assert from_forces == pytest.approx(exact, rel=2e-3)
    # the centre-of-mass count matters: treating the fcc box as 2 atoms per primitive cell
    # moves the result by k_BT ln 2 / N, far outside the tolerance
    wrong = harmonic_finite_size_error_eV(lj, atoms, atoms_per_primitive_cell=2, temperature_K=80.0)
    assert abs(wrong - exact) > 0.1 * abs(exact)


def test_ti1_bcc_is_reported_mechanically_unstable():
    """Ti1's bcc lattice has imaginary phonons at 0 K (as β-Ti): no harmonic correction."""
    bcc = build_structure("bcc", element="Ti", lattice_A=3.30, n_atoms=16)
    with pytest.raises(ValueError, match="mechanically unstable"):
        harmonic_finite_size_error_eV(
            mendelev_ti1(dtype=torch.float64), bcc, atoms_per_primitive_cell=1, temperature_K=1150.0
        )
