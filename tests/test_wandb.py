"""logger=wandb, offline: per-step metrics, the phase-diagram and ESS images, the targets
table, and one grouped run per multirun job (never the network)."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _run(tiny, tmp_path, *extra, flags=()):
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", OMP_NUM_THREADS="1")
    env.pop("WANDB_API_KEY", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "phasetune",
            *flags,
            *tiny,
            "logger=wandb",
            f"anchor.cache_dir={tmp_path}/cache",
            *extra,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def test_wandb_offline_run_has_metrics_images_and_table(tmp_path, tiny_train):
    _run(tiny_train, tmp_path, f"hydra.run.dir={tmp_path}/run")
    (run,) = _offline_runs(tmp_path / "run")
    (record,) = run.glob("*.wandb")
    data = record.read_bytes()
    for key in (b"dg_meV/argon_triple_point", b"T_shift_K/argon_triple_point", b"loss"):
        assert key in data, key
    assert any(k in data for k in (b"ess/argon_triple_point/fcc",))
    media = run / "files" / "media"
    assert list((media / "images").glob("phase_diagram_*.png"))
    assert list((media / "images").glob("ess_history_*.png"))
    (table,) = (media / "table").glob("targets_*.table.json")
    content = json.loads(table.read_text())
    assert "before_K" in content["columns"] and len(content["data"]) == 1


def test_multirun_gives_one_grouped_wandb_run_per_job(tmp_path, tiny_train):
    _run(
        tiny_train,
        tmp_path,
        "loss.max_step=0.01,0.02",
        f"hydra.sweep.dir={tmp_path}/sweep",
        "plot=false",
        flags=("-m",),
    )
    jobs = sorted(p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and p.name.isdigit())
    assert [p.name for p in jobs] == ["0", "1"]
    names = []
    for job in jobs:
        (run,) = _offline_runs(job)
        data = next(run.glob("*.wandb")).read_bytes()
        assert b"sweep" in data  # the group: the sweep directory's name
        names.append(b"loss.max_step=0.01,plot=False" in data)  # the run name
    assert names == [True, False]
