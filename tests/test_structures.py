"""Starting structures: crystals hold at least n atoms, a liquid exactly n at its density."""

import pytest

from phasetune.structures import build_structure


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
