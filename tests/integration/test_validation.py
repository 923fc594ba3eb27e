"""Liquid self-diffusion before and after fine-tuning, reported by the training run."""

import math

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

import phasetune.learn.validation as validation
from phasetune.analysis import load_model_diffusion
from phasetune.configs import CONFIG_DIR
from phasetune.train import train


def _einstein_D(frames, system, n_blocks=4, window=(0.2, 0.7)):
    """D = slope/6 of the multiple-origin MSD and its block error (m²/s), written out here
    in numpy from the stored positions and cells (the estimator validation.py documents:
    whole-trajectory MSD up to one block, least squares on 20–70 % of the longest lag,
    centre-of-mass drift removed, error = std of the four blocks' D / 2)."""
    atoms = (frames.system_idx == system).numpy()
    pos = frames.positions[:, atoms].numpy()
    cell = frames.cell[:, system].numpy()  # rows are the box vectors
    frac = np.einsum("fnk,fkl->fnl", pos, np.linalg.inv(cell))
    ds = np.diff(frac, axis=0)
    ds -= np.round(ds)  # minimum image between consecutive frames
    dr = np.einsum("fnk,fkl->fnl", ds, 0.5 * (cell[1:] + cell[:-1]))
    u = np.concatenate([np.zeros_like(pos[:1]), np.cumsum(dr, axis=0)])
    u -= u.mean(axis=1, keepdims=True)  # equal masses: the centre of mass is the mean
    frame_fs = frames.metadata["timestep_fs"] * int(frames.step[1] - frames.step[0])
    block = len(u) // n_blocks
    max_lag = block - 1
    lags = np.arange(math.ceil(window[0] * max_lag), math.floor(window[1] * max_lag) + 1)

    def fit(x):
        msd = [np.mean(np.sum((x[k:] - x[:-k]) ** 2, axis=-1)) for k in lags]
        return np.polyfit(lags * frame_fs, msd, 1)[0] / 6 * 1e-5  # Å²/fs → m²/s

    blocks = [fit(u[b * block : (b + 1) * block]) for b in range(n_blocks)]
    return fit(u), np.std(blocks, ddof=1) / math.sqrt(n_blocks)


def test_diffusion_before_and_after_is_reported(tmp_path, tiny_train, monkeypatch):
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
    # the validation runs' frames and the (ε, σ) of the model that made them
    runs = []
    sample = validation.sample_state_points

    def recording(model, points, settings, **kwargs):
        frames, rest = sample(model, points, settings, **kwargs)
        runs.append((float(model.epsilon), float(model.sigma), frames))
        return frames, rest

    monkeypatch.setattr(validation, "sample_state_points", recording)
    summary = train(cfg, tmp_path / "run")
    (row,) = summary["diffusion"]
    # diffusion.csv in the layout the analysis notebook reads
    written = {r["label"]: r for r in load_model_diffusion(tmp_path / "run")}
    assert written["after"]["D_m2_per_s"] == row["after_m2_per_s"]
    assert written["before"]["error_m2_per_s"] == row["before_error_m2_per_s"]
    for label in ("before", "after"):
        assert written[label]["D_m2_per_s"] == row[f"{label}_m2_per_s"]
        assert written[label]["error_m2_per_s"] == row[f"{label}_error_m2_per_s"]
        assert written[label]["temperature_K"] == 90.0
        assert float(written[label]["experiment_m2_per_s"]) == 2.4e-9
        assert row[f"{label}_deviation"] == pytest.approx(row[f"{label}_m2_per_s"] / 2.4e-9 - 1)
    # "before" is sampled with the pretrained model (ε/k_B = 115 K, σ = 3.405 Å of
    # phasetune/conf/model/lj_argon_demo.yaml), "after" with the trained one, in that order
    (eps0, sigma0, before_frames), (eps1, sigma1, after_frames) = runs
    assert (eps0, sigma0) == (cfg.model.epsilon_eV, cfg.model.sigma_A)
    trained = summary["parameters"]
    assert (eps1, sigma1) == (trained["epsilon"], trained["sigma"])
    assert (eps1, sigma1) != (eps0, sigma0)
    for label, frames in (("before", before_frames), ("after", after_frames)):
        assert frames.state_points[0]["temperature_K"] == 90.0
        # the run is at the state point asked for: 90 K within its fluctuation
        assert float(frames.temperature[:, 0].mean()) == pytest.approx(90.0, rel=0.03)
        # the reported D is the Einstein relation on those frames, to rounding
        d_ref, err_ref = _einstein_D(frames, 0)
        assert row[f"{label}_m2_per_s"] == pytest.approx(d_ref, rel=1e-8), label
        assert row[f"{label}_error_m2_per_s"] == pytest.approx(err_ref, rel=1e-8), label
        d, err = row[f"{label}_m2_per_s"], row[f"{label}_error_m2_per_s"]
        assert math.isfinite(d) and 0 < err < 0.3 * d
        # a dense LJ liquid near the triple point: D within a factor 2 of liquid argon's
        assert 1.2e-9 < d < 4.8e-9, (label, d)
    assert (tmp_path / "run" / "diffusion.png").exists()
    # the model changed, so did its dynamics (ε moved; D follows ∝ sqrt(ε/m)σ at fixed T*)
    assert row["after_m2_per_s"] != row["before_m2_per_s"]
