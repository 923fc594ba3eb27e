"""What a run writes, as a user reads it: the terminal, train.log, metrics.csv, report.csv,
summary.json (a seconds-long run through the installed command)."""

import csv
import json
import math
import os
import subprocess
import sys

import pytest
from conftest import TINY_TRAIN


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("outputs")
    run_dir = tmp / "run"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "phasetune",
            *TINY_TRAIN,
            "+targets.0.model_transition_error_K=0.5",
            f"anchor.cache_dir={tmp}/cache",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp,
        env=dict(os.environ, WANDB_MODE="disabled"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return run_dir, done


def test_terminal_is_quiet_and_the_table_also_goes_to_train_log(run):
    run_dir, done = run
    assert done.stderr == "", done.stderr  # no Lightning, Warp, e3nn or matplotlib lines
    for noise in ("GPU available", "TPU available", "litlogger", "Epoch 0/-2", "v_num"):
        assert noise not in done.stdout
    assert "[phasetune." not in done.stdout  # plain messages on the terminal
    log = (run_dir / "train.log").read_text()
    table_head = next(line for line in done.stdout.splitlines() if line.startswith("target "))
    assert table_head in log and "argon_triple_point" in log
    assert "[phasetune.train][INFO]" in log  # the file keeps time, module and level


def test_metrics_count_in_integers_and_step_0_carries_the_anchors_error(run):
    run_dir, _ = run
    with open(run_dir / "logs" / "version_0" / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    first = next(r for r in rows if r.get("loss"))
    for counter in ("md_steps", "resamplings", "md_restarts", "skipped_targets", "epoch"):
        assert first[counter].isdigit(), (counter, first[counter])
    assert int(first["md_steps"]) > 0
    # the anchor: T* = 75.00 ± 0.50 K given, so σ(Δg)² = (Δs · 0.5 K)² + σ_GH² at step 0 (no
    # reweighting error yet), σ_GH the Gibbs–Helmholtz integral's from the enthalpy runs (the
    # cached anchor's); Δs from the anchor's Δg = Δs (T* − T) at T = 78 K
    (cached,) = (run_dir.parent / "cache").glob("*.json")
    anchor = json.loads(cached.read_text())
    dg_meV = float(first["dg_meV/argon_triple_point"])
    delta_s_meV_per_K = -dg_meV / (78.0 - float(first["T_implied_K/argon_triple_point"]))
    assert delta_s_meV_per_K == pytest.approx(1e3 * anchor["delta_s_eV_per_K"], rel=0.02)
    enthalpy_part = 1e3 * anchor["enthalpy_error_eV"]
    expected = math.hypot(delta_s_meV_per_K * 0.5, enthalpy_part)
    assert 0 < enthalpy_part < 2 * abs(delta_s_meV_per_K) * 0.5  # T*'s part is seen
    assert float(first["dg_error_meV/argon_triple_point"]) == pytest.approx(expected, rel=0.02)


def test_report_says_not_measured_and_summary_counts_match_the_metrics(run):
    run_dir, _ = run
    with open(run_dir / "report.csv", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert row["met"] == "not measured" and row["after_method"] == "skipped"
    assert len(row["reweighted_K"].split(".")[-1]) <= 2  # rounded to 0.01 K
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["all_met"] is False and isinstance(summary["md_steps"], int)
    assert summary["remeasurement"] == [{"target": "argon_triple_point", "method": "skipped"}]
    assert math.isfinite(float(row["reweighted_error_K"]))
