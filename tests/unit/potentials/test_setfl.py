"""LAMMPS setfl files (eam/alloy, eam/fs): writer, reader and LAMMPS's cubic interpolation.

Ti1 is tabulated from its analytic functions and read back: on a fine grid it reproduces the
analytic potential up to the interpolation error; on coarse grids it reproduces what LAMMPS
itself computes from the same files (numbers below from LAMMPS 22 Jul 2025, pair_style
eam/alloy, ``run 0``).
"""

import dataclasses

import numpy as np
import pytest
import torch
import torch_sim as ts
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from phasetune.configs import CONFIG_DIR
from phasetune.potentials.eam import (
    TI1_CUTOFF_A,
    _ti1_density,
    _ti1_embedding,
    _ti1_pair,
    mendelev_ti1,
)
from phasetune.potentials.setfl import SetflElement, parse_setfl, read_setfl, write_setfl
from phasetune.structures import build_structure

TI = SetflElement("Ti", 22, 47.867, 2.9465, "hcp")
FINE = {"nrho": 10000, "drho": 0.01, "nr": 10000, "dr": 0.0007}  # ρ to 100, r to 7 Å
COARSE = {"nrho": 500, "drho": 0.2, "nr": 500, "dr": 0.014}

# LAMMPS on the COARSE file and the `boxes` below (wrapped into the cell)
LAMMPS_ENERGY_EV = (-508.42074592805955, -283.07837891230105)
LAMMPS_FORCES_EV_A = {  # atom index in `boxes`: force
    0: (-0.31228620377723154, 0.20221122067584602, 0.306106722134856),
    1: (0.43150637957018007, -0.3498834952677483, 1.1094511267262575),
    96: (0.11091586098955107, -0.6412056769418915, 1.2899964258525733),
}
LAMMPS_HCP_PRESSURE_BAR = (  # pxx pyy pzz pxy pxz pyz
    -4478.541950397233, -873.9597233441158, -3119.736694343022,
    -75.35773337596687, 429.9954694261085, -37.91492388738684,
)  # fmt: skip
LAMMPS_BAR_PER_EV_A3 = 1.6021765e6  # LAMMPS's metal-units conversion (nktv2p)
# ρ tabulated to 24.95 only, below every atom's ρ (26-31): F continues linearly above
SHORT_RHO = {"nrho": 500, "drho": 0.05, "nr": 500, "dr": 0.014}
LAMMPS_SHORT_RHO_ENERGY_EV = (-506.7074214444534, -282.06819584817487)
LAMMPS_SHORT_RHO_FORCE_0_EV_A = (-0.34293057134718796, 0.1966471705138617, 0.32277868733567305)


def _write_ti1(path, grid):
    return write_setfl(
        path,
        pair_eV=_ti1_pair,
        density=_ti1_density,
        embedding_eV=_ti1_embedding,
        element=TI,
        cutoff_A=TI1_CUTOFF_A,
        **grid,
    )


@pytest.fixture(scope="module")
def ti1_file(tmp_path_factory):
    return _write_ti1(tmp_path_factory.mktemp("setfl") / "Ti1.eam.alloy", FINE)


@pytest.fixture(scope="module")
def boxes():
    """A rattled 96-atom hcp box (c/a 1.6) and a rattled 54-atom bcc box."""
    hcp = build_structure("hcp", element="Ti", lattice_A=2.95, n_atoms=96, c_over_a=1.6)
    bcc = build_structure("bcc", element="Ti", lattice_A=3.28, n_atoms=54)
    hcp.rattle(0.08, seed=1)
    bcc.rattle(0.08, seed=2)
    assert (len(hcp), len(bcc)) == (96, 54)
    return ts.io.atoms_to_state([hcp, bcc], device="cpu", dtype=torch.float64)


def test_a_fine_table_reproduces_the_analytic_potential(ti1_file, boxes):
    # measured: energy 1.6e-13 relative, forces 2.3e-8 eV/Å, stress 9e-11 eV/Å³ (interpolation
    # error, O(dr⁴)); the tolerances leave a margin of ~50
    model = read_setfl(ti1_file)
    got, expected = model(boxes), mendelev_ti1()(boxes)
    torch.testing.assert_close(got["energy"], expected["energy"], rtol=1e-11, atol=0.0)
    torch.testing.assert_close(got["forces"], expected["forces"], rtol=0.0, atol=1e-6)
    torch.testing.assert_close(got["stress"], expected["stress"], rtol=0.0, atol=5e-9)
    assert model.setfl_element == TI and model.cutoff == TI1_CUTOFF_A


def test_a_coarse_table_gives_what_lammps_gives(tmp_path, boxes):
    # on this grid the interpolation differs from the analytic Ti1 by 3.7e-9 relative in
    # energy and 2e-5 eV/Å in forces; LAMMPS's own numbers agree to rounding
    out = read_setfl(_write_ti1(tmp_path / "coarse.eam.alloy", COARSE))(boxes)
    expected = torch.tensor(LAMMPS_ENERGY_EV, dtype=torch.float64)
    torch.testing.assert_close(out["energy"], expected, rtol=1e-13, atol=0.0)
    for atom, force in LAMMPS_FORCES_EV_A.items():
        expected = torch.tensor(force, dtype=torch.float64)
        torch.testing.assert_close(out["forces"][atom], expected, rtol=0.0, atol=1e-12)
    s = -out["stress"][0] * LAMMPS_BAR_PER_EV_A3
    pressure = torch.stack([s[0, 0], s[1, 1], s[2, 2], s[0, 1], s[0, 2], s[1, 2]])
    expected = torch.tensor(LAMMPS_HCP_PRESSURE_BAR, dtype=torch.float64)
    torch.testing.assert_close(pressure, expected, rtol=0.0, atol=1e-8)


def test_a_density_above_the_table_extends_the_embedding_linearly_as_lammps_does(tmp_path, boxes):
    out = read_setfl(_write_ti1(tmp_path / "short.eam.alloy", SHORT_RHO))(boxes)
    expected = torch.tensor(LAMMPS_SHORT_RHO_ENERGY_EV, dtype=torch.float64)
    torch.testing.assert_close(out["energy"], expected, rtol=1e-13, atol=0.0)
    expected = torch.tensor(LAMMPS_SHORT_RHO_FORCE_0_EV_A, dtype=torch.float64)
    torch.testing.assert_close(out["forces"][0], expected, rtol=0.0, atol=1e-12)


def test_an_eam_fs_file_gives_each_element_its_own_tables(ti1_file, boxes, tmp_path):
    """Ti second in a two-element eam/fs file, the other element's tables all different:
    reading Ti must find its F, its ψ_TiTi (not ψ_ZrTi or ψ_TiZr) and its r·φ_TiTi."""
    ti = parse_setfl(ti1_file)
    psi, z = ti.density[0, 0], ti.pair_r[0]
    zr = SetflElement("Zr", 40, 91.224, 3.232, "hcp")
    two = dataclasses.replace(
        ti,
        kind="fs",
        elements=[zr, TI],
        embedding=np.stack([0.5 * ti.embedding[0], ti.embedding[0]]),
        density=np.stack([[2 * psi, 3 * psi], [4 * psi, psi]]),  # [α][β]: α's density at β
        pair_r=np.stack([2 * z, 3 * z, z]),  # Zr-Zr, Ti-Zr, Ti-Ti
    )
    path = two.write(tmp_path / "ZrTi.eam.fs")
    model = read_setfl(path, element="Ti")  # eam/fs from the name
    expected = read_setfl(ti1_file)(boxes)
    torch.testing.assert_close(model(boxes)["energy"], expected["energy"], rtol=1e-14, atol=0.0)
    assert model.setfl_element == TI
    assert read_setfl(path).setfl_element == zr  # no element named: the first
    with pytest.raises(ValueError, match="eam/fs"):
        parse_setfl(path, kind="alloy")
    with pytest.raises(ValueError, match="no element 'Al'"):
        read_setfl(path, element="Al")


def test_a_truncated_file_names_the_file_and_what_is_missing(ti1_file, tmp_path):
    lines = ti1_file.read_text().splitlines()
    cut = tmp_path / "cut.eam.alloy"
    cut.write_text("\n".join(lines[:-100]) + "\n")  # 5 values a line
    with pytest.raises(ValueError, match=r"cut\.eam\.alloy: .* 9500 of the 10000 values of r\*phi"):
        read_setfl(cut)
    cut.write_text("\n".join(lines[:5]) + "\n")
    with pytest.raises(
        ValueError, match=r"cut\.eam\.alloy: file ends before the header line of Ti"
    ):
        read_setfl(cut)
    cut.write_text("\n".join(lines[:4]) + "\n")
    with pytest.raises(ValueError, match=r"cut\.eam\.alloy: lines 4-5"):
        read_setfl(cut)


def test_the_model_config_builds_the_potential(ti1_file, boxes):
    overrides = ["model=eam_setfl", f"model.path={ti1_file}", "model.element=Ti"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("measure", overrides=overrides)
    model = instantiate(cfg.model, device="cpu", dtype=torch.float64)  # as phasetune-measure
    expected = read_setfl(ti1_file)(boxes)["energy"]
    torch.testing.assert_close(model(boxes)["energy"], expected, rtol=0.0, atol=0.0)


def test_the_tables_closed_form_derivatives_equal_autograd(ti1_file):
    """The derivatives the EAM forces use, against autograd through the same cubics: inside
    the grid, at and between nodes, beyond r's last node (constant) and ρ's (linear)."""
    model = read_setfl(ti1_file)
    tables = {
        "pair": (model.pair, np.linspace(0.3, 8.0, 997)),
        "density": (model.density, np.linspace(0.3, 8.0, 997)),
        "embedding": (model.embedding, np.linspace(0.0, 1.5 * model.embedding.n, 1001)),
    }
    for name, (table, grid) in tables.items():
        x = torch.tensor(grid * (table.step if name == "embedding" else 1.0), dtype=torch.float64)
        x.requires_grad_(True)
        reference = table(x)
        (slope,) = torch.autograd.grad(reference.sum(), x)
        value, derivative = table.value_and_derivative(x.detach())
        torch.testing.assert_close(value, reference.detach(), rtol=1e-14, atol=1e-14, msg=name)
        torch.testing.assert_close(derivative, slope, rtol=1e-12, atol=1e-12, msg=name)
