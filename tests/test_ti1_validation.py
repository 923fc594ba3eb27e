"""The measuring stick on a real metal: the Ti1 EAM against its published transition points.

Mendelev, Underwood & Ackland, J. Chem. Phys. 145, 154102 (2016), Table IV, for the same
potential (``model=ti1_eam``): hcp→bcc at 1150 K (MD, melting of the competing solids) and
1152 K (lattice-switch Monte Carlo); bcc melting at 1918 K; ΔH(hcp→bcc) = 0.022 eV/atom.

One ``phasetune-measure model=ti1_eam pair=hcp_bcc method=both preset=quick`` run at 0 GPa
gives both routes for hcp|bcc (Frenkel–Ladd + Gibbs–Helmholtz; the melting points of both
solids + Gibbs–Helmholtz) and, on the way, the bcc|liquid coexistence T_m.
"""

import math

import pytest
from hydra import compose, initialize_config_dir

from phasetune.cli import CONFIG_DIR
from phasetune.measure import measure

PUBLISHED_HCP_BCC_K = 1150.0
PUBLISHED_BCC_MELTING_K = 1918.0
PUBLISHED_DELTA_H_EV = 0.022


@pytest.fixture(scope="module")
def ti1_rows(tmp_path_factory):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="measure",
            overrides=[
                "model=ti1_eam",
                "pair=hcp_bcc",
                "method=both",
                "preset=quick",
                "plot=false",
                "coexistence.progress=false",
                "free_energy.solid.progress=false",
                "free_energy.enthalpy.progress=false",
            ],
        )
    rows = measure(cfg, tmp_path_factory.mktemp("ti1"))
    return {row["method"]: row for row in rows}


def _contains(value: float, error: float, published: float) -> bool:
    return abs(value - published) <= 2 * error


@pytest.mark.slow(seconds=3000)
@pytest.mark.xfail(
    strict=True,
    reason="issue 20, open: measured 1212.5 ± 19.1 K statistical ± 58.4 K estimated systematic "
    "(total 61 K > 60 K; 18 ps switching, hcp 240 / bcc 250; bench/RESULTS.md, Ti1)",
)
def test_ti1_hcp_bcc_by_free_energies_contains_the_published_1150_K(ti1_rows):
    row = ti1_rows["free_energy"]
    t, total = row["transition_temperature_K"], row["total_error_K"]
    assert total < 60.0, row
    assert _contains(t, total, PUBLISHED_HCP_BCC_K), (t, total)
    # ΔH(hcp→bcc) near T*: the published 0.022 eV/atom within 30 %
    delta_h = sum(b - a for a, b in zip(row["h_a_eV"], row["h_b_eV"], strict=True)) / len(
        row["h_a_eV"]
    )
    assert abs(delta_h / PUBLISHED_DELTA_H_EV - 1) < 0.3, delta_h


@pytest.mark.slow(seconds=10)
@pytest.mark.xfail(
    strict=True,
    reason="issue 20, open: measured 979 ± 97 K (T_m,hcp 1722 ± 29 K against 1765; noisy "
    "hcp|bcc enthalpies; bench/RESULTS.md, Ti1 measuring stick)",
)
def test_ti1_hcp_bcc_by_melting_of_the_competing_solids_contains_1150_K(ti1_rows):
    row = ti1_rows["melting"]
    t, error = row["transition_temperature_K"], row["error_K"]
    assert row["bracketed"], row
    assert error < 60.0, row
    assert _contains(t, error, PUBLISHED_HCP_BCC_K), (t, error)
    # the two routes agree within their combined errors
    fe = ti1_rows["free_energy"]
    combined = math.hypot(error, fe["total_error_K"])
    assert abs(t - fe["transition_temperature_K"]) < 2 * combined


@pytest.mark.slow(seconds=10)
def test_ti1_bcc_liquid_coexistence_brackets_and_contains_1918_K(ti1_rows):
    bcc = ti1_rows["melting"]["melting_b"]
    assert bcc["bracketed"], bcc
    assert not bcc["replicas_disagree"], bcc
    assert _contains(bcc["melting_temperature_K"], bcc["error_K"], PUBLISHED_BCC_MELTING_K), bcc
