"""The README's main job, end to end: the argon demo reaches 83.8 K.

Run as a user runs it (``python -m phasetune`` on the embedded default, a fresh anchor
cache), then read its report: the model starts 13 K low and the reweighted estimate must land
on the argon triple point within the tolerance and its error. The trained model is then
checked against an answer known without any measurement: at P = 0, T_m ∝ ε for this LJ
(σ drops out), so the trained model melts at ε/ε₀ · T_m(ε₀), with T_m(ε₀) from this
potential's melting point measured by two routes (measured runs: bench/RESULTS.md).
"""

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

from phasetune.configs import CONFIG_DIR
from phasetune.units import KB_EV_PER_K

#: T_m of this LJ (r_c = 2.5σ, shifted) at P = 0 for ε/k_B = 119.8 K: coexistence 75.48 ±
#: 0.29 K, free energies 75.51 ± 0.77 K (bench/RESULTS.md); T_m ∝ ε
T_M_PER_EPSILON_K = 75.48 / 119.8
T_M_PER_EPSILON_ERROR_K = 0.29 / 119.8


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, WANDB_MODE="disabled")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "phasetune",
            f"hydra.run.dir={tmp_path}/run",
            f"anchor.cache_dir={tmp_path}/cache",
            "trainer.enable_progress_bar=false",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = json.loads((tmp_path / "run" / "report.json").read_text())
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    trained = torch.load(tmp_path / "run" / "trained_model.pt", weights_only=True)
    return row, summary, trained


def _exact_melting_K(epsilon_eV: float) -> tuple[float, float]:
    """T_m at P = 0 of this LJ with ε = ``epsilon_eV`` from the exact scaling, and its error (K)."""
    epsilon_K = float(epsilon_eV) / KB_EV_PER_K
    return T_M_PER_EPSILON_K * epsilon_K, T_M_PER_EPSILON_ERROR_K * epsilon_K


@pytest.mark.slow(seconds=5, shared={"demo": 700}, order=1)
def test_the_argon_demo_reaches_the_triple_point(demo):
    row, summary, trained = demo
    experiment, tolerance = row["experiment_K"], row["tolerance_K"]
    assert (experiment, tolerance) == (83.8, 1.0)
    # the pretrained model is far off: what there is to correct
    assert experiment - row["before_K"] > 10 * tolerance, row
    # the anchor's T_m(θ₀) against the same scaling at the pretrained ε
    model = OmegaConf.load(f"{CONFIG_DIR}/model/lj_argon_demo.yaml")
    before_exact, before_exact_error = _exact_melting_K(model.epsilon_eV)
    assert abs(row["before_K"] - before_exact) < 2 * math.hypot(
        row["before_error_K"], before_exact_error
    ), (row, before_exact)
    # the estimate the training minimised ...
    assert abs(row["reweighted_K"] - experiment) < tolerance + 2 * row["reweighted_error_K"], row
    # ... and the trained model's true T_m: within the tolerance of the target
    after_exact, after_exact_error = _exact_melting_K(trained["epsilon"])
    assert abs(after_exact - experiment) < tolerance + 2 * after_exact_error, after_exact
    # the re-measurement ran, and its boxes are kept in the summary
    assert row["after_method"] == "coexistence"
    (remeasured,) = summary["remeasurement"]
    assert remeasured["method"] == "coexistence"
    boxes = remeasured["coexistence"]
    assert boxes["melting_temperature_K"] == pytest.approx(row["after_K"], rel=1e-12)
    assert len(boxes["velocity_A_per_ps"]) == len(boxes["temperatures_K"]) == 10


@pytest.mark.slow(seconds=5, shared={"demo": 700}, order=1)
@pytest.mark.xfail(
    strict=False,  # a realisation that lands within 2σ passes; most so far have not
    reason="issue 20, open: the coexistence re-measurement (512-atom boxes) of the trained "
    "model read 80.6 ± 0.7 and 80.8 ± 0.8 K against the exact 83.55 ± 0.32 K "
    "(bench/RESULTS.md, session 30)",
)
def test_the_argon_demo_remeasurement_agrees_with_the_exact_scaling(demo):
    row, _, trained = demo
    after_exact, after_exact_error = _exact_melting_K(trained["epsilon"])
    combined = math.hypot(row["after_error_K"], after_exact_error)
    assert abs(row["after_K"] - after_exact) < 2 * combined, (row, after_exact)
    assert row["after_error_K"] < 5.0, row  # a re-measurement that can tell 80 from 84 K
    assert row["met"] in ("yes", "unresolved"), row
