"""Sweeps on an existing job engine: Hydra's submitit launcher (hydra-submitit-launcher).

``hydra/launcher=slurm_gpu`` submits one SLURM job per sweep point (one GPU each);
``hydra/launcher=local_processes`` runs the same jobs as separate processes here, which is
what CI can test: both jobs complete, each in its own output directory with its own logger
run, and each ran its own settings.
"""

import csv
import json
import os
import subprocess
import sys

from conftest import TINY_TRAIN
from hydra import compose, initialize_config_dir

from phasetune.configs import CONFIG_DIR

TINY = [*TINY_TRAIN, "plot=false"]


def test_slurm_gpu_launcher_composes_with_one_gpu_per_job():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            "train",
            overrides=["hydra/launcher=slurm_gpu", "hydra.launcher.partition=gpu"],
            return_hydra_config=True,
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher"), launcher._target_
    assert (launcher.gpus_per_node, launcher.nodes, launcher.tasks_per_node) == (1, 1, 1)
    assert launcher.partition == "gpu" and launcher.timeout_min >= 60


def test_a_two_job_sweep_through_submitit_runs_both_jobs_in_their_own_dirs(tmp_path):
    sweep = tmp_path / "sweep"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "phasetune",
            "-m",
            "hydra/launcher=local_processes",
            f"hydra.sweep.dir={sweep}",
            f"anchor.cache_dir={tmp_path / 'cache'}",
            *TINY,
            "optimizer.max_step=0.05,0.1",
        ],
        cwd=tmp_path,
        env=dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    runs = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in runs] == ["0", "1"]
    caps = []
    for run in runs:
        summary = json.loads((run / "summary.json").read_text())
        assert summary["steps"] == 2, summary
        metrics = sorted(run.glob("logs/version_*/metrics.csv"))
        assert len(metrics) == 1, metrics  # its own logger run
        with open(metrics[0]) as handle:
            assert sum(1 for row in csv.DictReader(handle) if row.get("loss")) >= 2
        config = (run / ".hydra" / "config.yaml").read_text()
        caps.append(next(line for line in config.splitlines() if "max_step:" in line).split()[-1])
    assert sorted(caps) == ["0.05", "0.1"]
    # submitit ran each job in a process of its own and kept its logs in the sweep dir
    assert len(list((sweep / ".submitit").rglob("*_log.out"))) == 2
