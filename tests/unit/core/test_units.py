"""phasetune's constants are CODATA 2018 throughout: equal to ase's 2018 unit set."""

import pytest
from ase.units import create_units

from phasetune import units

ASE_2018 = create_units("2018")


def test_constants_equal_ase_codata_2018():
    assert pytest.approx(ASE_2018["kB"], rel=1e-9) == units.KB_EV_PER_K
    assert pytest.approx(ASE_2018["GPa"], rel=1e-15) == units.EV_PER_A3_PER_GPA
    assert pytest.approx(1 / ASE_2018["fs"], rel=1e-15) == units.FS_PER_TIME_UNIT
    assert ASE_2018["_amu"] == units.AMU_IN_KG and ASE_2018["_e"] == units.EV_IN_J
    assert pytest.approx(ASE_2018["_hplanck"] / ASE_2018["_e"], rel=1e-9) == units.PLANCK_EV_S
    assert units.internal_to_gpa(ASE_2018["GPa"]) == pytest.approx(1.0, rel=1e-15)
    # CODATA 2014 (1 eV/Å³ = 160.21766208 GPa) differs at 1e-9: the test tells them apart
    assert pytest.approx(1 / 160.21766208, rel=1e-10) != units.EV_PER_A3_PER_GPA
