"""The measuring stick on a real metal: the Ti1 EAM against its published transition points.

Mendelev, Underwood & Ackland, J. Chem. Phys. 145, 154102 (2016), Table IV, for the same
potential (``model=ti1_eam``): hcp→bcc at 1150 K (MD, melting of the competing solids) and
1152 K (lattice-switch Monte Carlo); bcc melting at 1918 K; ΔH(hcp→bcc) = 0.022 eV/atom.

Three ``phasetune-measure model=ti1_eam preset=quick`` runs at 0 GPa, one per route, each a
module fixture charged to the first test that builds it (``shared=`` in the slow marker):
bcc|liquid by coexistence; hcp|bcc by Frenkel–Ladd + Gibbs–Helmholtz; hcp|bcc by the melting
points of both solids + Gibbs–Helmholtz (Mendelev's route). Costs are this 2-core machine's.
"""

import json
import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from phasetune.configs import CONFIG_DIR
from phasetune.free_energy.coexistence_cache import coexistence_key
from phasetune.measure import _targets, measure, measurement_settings
from phasetune.potentials.base import sampling_copy

PUBLISHED_HCP_BCC_K = 1150.0
PUBLISHED_BCC_MELTING_K = 1918.0
PUBLISHED_DELTA_H_EV = 0.022
PUBLISHED_RELATIVE_VOLUME_CHANGE = -0.0070

QUIET = [
    "plot=false",
    "coexistence.progress=false",
    "free_energy.solid.progress=false",
    "free_energy.enthalpy.progress=false",
]
BCC_LIQUID = ["model=ti1_eam", "pair=bcc_liquid", "method=coexistence", "preset=quick", *QUIET]
HCP_BCC_FREE_ENERGY = [
    "model=ti1_eam",
    "pair=hcp_bcc",
    "method=free_energy",
    "preset=quick",
    *QUIET,
]
HCP_BCC_MELTING = ["model=ti1_eam", "pair=hcp_bcc", "method=melting", "preset=quick", *QUIET]


def _compose(overrides: list[str]):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="measure", overrides=overrides)


def _only_row(overrides: list[str], tmp_path_factory) -> dict:
    rows = measure(_compose(overrides), tmp_path_factory.mktemp("ti1"))
    assert len(rows) == 1, rows
    return rows[0]


@pytest.fixture(scope="module")
def coexistence_cache(tmp_path_factory) -> str:
    """One coexistence cache for the module: the melting route's bcc|liquid boxes are the
    bcc|liquid test's (same structure, guess and settings), measured once."""
    return f"coexistence.cache_dir={tmp_path_factory.mktemp('coexistence_cache')}"


@pytest.fixture(scope="module")
def ti1_bcc_melting(tmp_path_factory, coexistence_cache):
    return _only_row([*BCC_LIQUID, coexistence_cache], tmp_path_factory)


@pytest.fixture(scope="module")
def ti1_free_energy(tmp_path_factory):
    return _only_row(HCP_BCC_FREE_ENERGY, tmp_path_factory)


@pytest.fixture(scope="module")
def ti1_melting_route(tmp_path_factory, coexistence_cache, ti1_bcc_melting):
    """Built after ``ti1_bcc_melting`` (so in one xdist group), whose T_m it reads back."""
    return _only_row([*HCP_BCC_MELTING, coexistence_cache], tmp_path_factory)


@pytest.mark.parametrize("overrides", [BCC_LIQUID, HCP_BCC_FREE_ENERGY, HCP_BCC_MELTING])
def test_the_validation_runs_compose(overrides):
    """The slow runs' overrides are valid config (caught here, not after CI's queue)."""
    cfg = _compose(overrides)
    assert cfg.model.get("_target_"), cfg.model
    assert cfg.coexistence.min_slab_A == 40.0  # the quick preset is in


def _bcc_coexistence_key(overrides: list[str], guess_K: float) -> str:
    """The cache key of the bcc|liquid boxes a ``measure`` config builds, as the run does."""
    cfg = _compose(overrides)
    (target,) = _targets(cfg, [0.0], [float(cfg.pair.guess_K)])
    settings = measurement_settings(cfg, "coexistence")
    model = sampling_copy(instantiate(cfg.model, device=cfg.device, dtype=torch.float64))
    return coexistence_key(
        model,
        target.atoms("bcc"),
        solid_phase="bcc",
        pressure_GPa=0.0,
        guess_K=guess_K,
        window=settings.window,
        max_recentre=settings.max_recentre,
        n_temperatures=settings.n_temperatures,
        n_replicas=settings.n_replicas,
        settings=settings.coexistence,
        dtype=torch.float64,
        device=cfg.device,
    )


def test_the_melting_route_reuses_the_bcc_liquid_boxes():
    """pair=hcp_bcc's bcc melting point is pair=bcc_liquid's run (same structure, guess and
    preset), so with one coexistence cache the slow tests measure it once: a change to
    either pair's bcc or guess would silently cost CI 670 s."""
    bcc_liquid = _compose(BCC_LIQUID).pair
    hcp_bcc = _compose(HCP_BCC_MELTING).pair
    assert _bcc_coexistence_key(BCC_LIQUID, bcc_liquid.guess_K) == _bcc_coexistence_key(
        HCP_BCC_MELTING, hcp_bcc.melting_guesses_K[1]
    )


def _contains(value: float, error: float, published: float) -> bool:
    return abs(value - published) <= 2 * error


@pytest.mark.slow(seconds=10, shared={"ti1_bcc_melting": 670})
def test_ti1_bcc_liquid_coexistence_brackets_and_contains_1918_K(ti1_bcc_melting):
    bcc = ti1_bcc_melting
    assert bcc["bracketed"], bcc
    assert not bcc["replicas_disagree"], bcc
    assert _contains(bcc["melting_temperature_K"], bcc["error_K"], PUBLISHED_BCC_MELTING_K), bcc


@pytest.mark.slow(seconds=5, shared={"ti1_melting_route": 870, "ti1_bcc_melting": 670})
def test_ti1_melting_route_read_the_bcc_melting_point_from_the_cache(
    ti1_melting_route, ti1_bcc_melting, coexistence_cache
):
    """Two files in the cache (bcc, hcp), not three, and the bcc result is the bcc|liquid
    run's. (Equal results alone would not show it: the boxes are seeded by their names.)"""
    files = list(Path(coexistence_cache.split("=", 1)[1]).glob("coexistence_*.json"))
    assert len(files) == 2, files
    bcc_row = {k: v for k, v in ti1_bcc_melting.items() if k != "model"}
    assert json.dumps(ti1_melting_route["melting_b"], sort_keys=True) == json.dumps(
        bcc_row, sort_keys=True
    )


@pytest.mark.slow(seconds=10, shared={"ti1_free_energy": 735})
def test_ti1_hcp_bcc_by_free_energies_contains_the_published_1150_K(ti1_free_energy):
    """Measured: 1187.9 ± 17.8 (statistical) ± 51.1 K (systematic: dissipation 0.75, box
    size 0.56 meV/atom), Δh 22.5 ± 1.4 meV/atom, ΔV/V −0.40 % (bench/RESULTS.md)."""
    row = ti1_free_energy
    t, total = row["transition_temperature_K"], row["total_error_K"]
    assert total < 60.0, row
    assert _contains(t, total, PUBLISHED_HCP_BCC_K), (t, total)
    # ΔH and ΔV/V (hcp→bcc) at T*, read off the route's own NPT runs: the published
    # 0.022 eV/atom within 30 % and 2σ; −0.70 % within 0.3 points and 2σ
    latent = row["latent"]
    assert abs(latent["delta_h_eV"] - PUBLISHED_DELTA_H_EV) < (
        0.3 * PUBLISHED_DELTA_H_EV + 2 * latent["delta_h_error_eV"]
    ), latent
    dv_error = latent["delta_v_error_A3"] / latent["delta_v_A3"] * latent["relative_volume_change"]
    assert abs(latent["relative_volume_change"] - PUBLISHED_RELATIVE_VOLUME_CHANGE) < (
        0.003 + 2 * abs(dv_error)
    ), latent


@pytest.mark.slow(
    seconds=10,
    shared={"ti1_melting_route": 1300, "ti1_free_energy": 840, "ti1_bcc_melting": 600},
)
@pytest.mark.xfail(
    strict=True,
    reason="issue 20, open: measured 979 ± 97 K, then 1038 ± 190 K (T_m,hcp 1729 ± 79 K "
    "against 1765, its replicas disagreeing; at 3 fs hcp melts ≈ 44 K low; bench/RESULTS.md)",
)
def test_ti1_hcp_bcc_by_melting_of_the_competing_solids_contains_1150_K(
    ti1_melting_route, ti1_free_energy
):
    row = ti1_melting_route
    t, error = row["transition_temperature_K"], row["error_K"]
    assert row["bracketed"], row
    assert error < 60.0, row
    assert _contains(t, error, PUBLISHED_HCP_BCC_K), (t, error)
    # the two routes agree within their combined errors
    combined = math.hypot(error, ti1_free_energy["total_error_K"])
    assert abs(t - ti1_free_energy["transition_temperature_K"]) < 2 * combined
