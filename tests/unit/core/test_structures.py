"""Starting structures: crystals hold at least n atoms, a liquid exactly n at its density."""

import pytest

from phasetune.structures import build_structure, larger_crystal


@pytest.mark.parametrize("n_atoms", [32, 100, 250, 576])
def test_liquid_start_has_exactly_n_atoms_at_the_fcc_density(n_atoms):
    crystal = build_structure("fcc", element="Ti", lattice_A=4.2, n_atoms=n_atoms)
    liquid = build_structure("liquid", element="Ti", lattice_A=4.2, n_atoms=n_atoms)
    assert len(liquid) == n_atoms and len(crystal) >= n_atoms
    assert liquid.get_volume() / n_atoms == pytest.approx(4.2**3 / 4, rel=1e-12)
    assert liquid.get_all_distances(mic=True)[~_eye(n_atoms)].min() > 0.6 * 4.2 / 2**0.5


def _eye(n):
    import numpy as np

    return np.eye(n, dtype=bool)


def test_crystals_hold_at_least_n_atoms():
    assert len(build_structure("bcc", element="Ti", lattice_A=3.3, n_atoms=100)) == 128
    hcp = build_structure("hcp", element="Ti", lattice_A=2.95, n_atoms=96, c_over_a=1.6)
    assert len(hcp) >= 96 and len(hcp) % 4 == 0


@pytest.mark.parametrize(
    "phase, lattice, c_over_a", [("fcc", 4.2, None), ("bcc", 3.31, None), ("hcp", 2.95, 1.587)]
)
def test_larger_crystal_is_the_same_lattice_with_more_atoms(phase, lattice, c_over_a):
    small = build_structure(phase, element="Ti", lattice_A=lattice, n_atoms=240, c_over_a=c_over_a)
    large = larger_crystal(small, phase, n_atoms=450)
    expected = build_structure(
        phase, element="Ti", lattice_A=lattice, n_atoms=450, c_over_a=c_over_a
    )
    assert len(large) == len(expected) > len(small)
    assert large.cell.array == pytest.approx(expected.cell.array, rel=1e-12)
    assert large.get_positions() == pytest.approx(expected.get_positions(), abs=1e-9)
