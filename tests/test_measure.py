"""phasetune-measure on a tiny configuration: table, JSON and plot written and consistent."""

import csv
import json

import pytest
from hydra import compose, initialize_config_dir

from phasetune.cli import CONFIG_DIR
from phasetune.measure import measure

TINY = [
    "pair.structures.fcc.n_atoms=108",
    "pair.structures.fcc.lattice_A=5.38",
    "coexistence.solid_steps=200",
    "coexistence.melt_steps=300",
    "coexistence.quench_steps=50",
    "coexistence.equilibration_steps=100",
    "coexistence.production_steps=600",
    "coexistence.stride=50",
    "coexistence.progress=false",
    "n_replicas=1",
    "window=0.15",
    "threads=2",
]


def test_measure_writes_transition_table_json_and_plot(tmp_path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="measure", overrides=TINY)
    rows = measure(cfg, tmp_path)
    assert (tmp_path / "phase_boundary.png").stat().st_size > 10_000
    with open(tmp_path / "transitions.csv") as handle:
        table = list(csv.DictReader(handle))
    stored = json.loads((tmp_path / "transitions.json").read_text())
    assert len(table) == len(stored) == len(rows) == 1
    assert table[0]["method"] == "coexistence"
    t_m = float(table[0]["transition_temperature_K"])
    assert t_m == pytest.approx(stored[0]["melting_temperature_K"])
    # a short, tiny run: only a sanity window around T_m ≈ 74 K of r_c = 2.5σ LJ argon
    assert 55.0 < t_m < 95.0, stored[0]
    assert stored[0]["model"]["cutoff_sigma"] == 2.5


def test_measure_config_errors_say_what_to_do(tmp_path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="measure", overrides=["pair=hcp_bcc", "method=coexistence"])
    with pytest.raises(ValueError, match="needs method=free_energy"):
        measure(cfg, tmp_path)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="measure", overrides=["pressures=[0,1]", "guesses_K=[70]"])
    with pytest.raises(ValueError, match="one temperature guess per pressure"):
        measure(cfg, tmp_path)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="measure", overrides=["method=melting"])  # fcc|liquid
    with pytest.raises(ValueError, match=r"method=melting .* is for a solid\|solid pair"):
        measure(cfg, tmp_path)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="measure",
            overrides=["pair=hcp_bcc", "method=both", "~pair.melting_guesses_K"],
        )
    with pytest.raises(ValueError, match="needs pair.structures.liquid and pair.melting_guesses_K"):
        measure(cfg, tmp_path)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="measure", overrides=["method=magic"])
    with pytest.raises(ValueError, match="method must be one of"):
        measure(cfg, tmp_path)
