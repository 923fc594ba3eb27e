"""Liquid self-diffusion before and after fine-tuning, reported by the training run."""

import math

from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from phasetune.analysis import load_model_diffusion
from phasetune.cli import CONFIG_DIR
from phasetune.train import train


def test_diffusion_before_and_after_is_reported(tmp_path, tiny_train):
    overrides = [
        *tiny_train,
        "targets.0.temperature_K=80.0",
        "targets.0.structures.liquid.n_atoms=108",
        "~logger",
        f"anchor.cache_dir={tmp_path}/cache",
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    with open_dict(cfg):
        # argon near its triple point: D ≈ 2.4e-9 m²/s (order of magnitude is what matters)
        cfg.validation.diffusion = [
            {"temperature_K": 90.0, "pressure_GPa": 0.0, "D_m2_per_s": 2.4e-9}
        ]
        cfg.validation.sampler = {
            "_target_": "phasetune.sampling.sampler.SamplerSettings",
            "timestep_fs": 10.0,
            "equilibration_steps": 200,
            "melt_steps": 100,
            "production_steps": 800,
            "stride": 4,
            "check_phase": False,
            "progress": False,
        }
    summary = train(cfg, tmp_path / "run")
    (row,) = summary["diffusion"]
    # diffusion.csv in the layout the analysis notebook reads
    written = {r["label"]: r for r in load_model_diffusion(tmp_path / "run")}
    assert written["after"]["D_m2_per_s"] == row["after_m2_per_s"]
    assert written["before"]["error_m2_per_s"] == row["before_error_m2_per_s"]
    for label in ("before", "after"):
        d, err = row[f"{label}_m2_per_s"], row[f"{label}_error_m2_per_s"]
        assert math.isfinite(d) and 0 < err < 0.3 * d
        # a dense LJ liquid near the triple point: D within a factor 2 of liquid argon's
        assert 1.2e-9 < d < 4.8e-9, (label, d)
    assert (tmp_path / "run" / "diffusion.png").exists()
    # the model changed, so did its dynamics (ε moved; D follows ∝ sqrt(ε/m)σ at fixed T*)
    assert row["after_m2_per_s"] != row["before_m2_per_s"]
