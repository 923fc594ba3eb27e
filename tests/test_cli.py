"""The phasetune-sample entry point on a tiny configuration: files written and consistent."""

import csv

import pytest
from hydra import compose, initialize_config_dir

from phasetune.cli import CONFIG_DIR, sample, state_points_from_config
from phasetune.sampling.frames import Frames

TINY = [
    "sampler.equilibration_steps=20",
    "sampler.melt_steps=0",
    "sampler.production_steps=40",
    "sampler.stride=10",
    "sampler.progress=false",
    "threads=1",
    "state_points=[{name: s, phase: fcc, element: Ar, lattice_A: 5.3, n_atoms: 32,"
    " temperature_K: 40, pressure_GPa: 0.0}, {name: l, phase: fcc, element: Ar,"
    " lattice_A: 5.3, n_atoms: 32, temperature_K: 50, pressure_GPa: 0.2}]",
]


def test_sample_writes_frames_summary_and_plot(tmp_path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="sample", overrides=TINY)
    frames = sample(cfg, tmp_path)
    loaded = Frames.load(tmp_path / "frames.h5")
    assert loaded.equals(frames)
    assert (tmp_path / "traces.png").stat().st_size > 10_000
    with open(tmp_path / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == ["s", "l"]
    # the summary reports the means of the stored frames
    assert float(rows[1]["T_K"]) == pytest.approx(float(frames.temperature[:, 1].mean()), abs=1e-3)


def test_state_point_config_errors_name_the_field():
    with pytest.raises(ValueError, match=r"state_points\[0\] is missing lattice_A"):
        state_points_from_config(
            [{"name": "x", "phase": "fcc", "element": "Ar", "n_atoms": 4, "temperature_K": 10}]
        )
    with pytest.raises(ValueError, match="unknown phase"):
        state_points_from_config(
            [
                {
                    "name": "x",
                    "phase": "bct",
                    "element": "Ar",
                    "lattice_A": 5.3,
                    "n_atoms": 4,
                    "temperature_K": 10,
                }
            ]
        )
