"""logger=wandb, offline: per-step metrics, the phase-diagram and ESS images, the targets
table, and one grouped run per multirun job (never the network)."""

import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

REPO = Path(__file__).resolve().parents[2]


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


def _records(path: Path):
    """The protobuf records of an offline ``.wandb`` file. wandb ≥ 0.2x has no Python reader;
    the file is ":W&B" + 3 header bytes, then LevelDB-log chunks in 32 KiB blocks (4-byte
    CRC, 2-byte length, 1-byte type: 1 full, 2 first, 3 middle, 4 last)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B", data[:7]
    pos, chunks = 7, []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunks.append(data[pos + 7 : pos + 7 + length])
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(b"".join(chunks))
            chunks = []
            yield record


def _history(path: Path) -> list[dict]:
    """The logged rows that carry a loss (one per optimizer step), as the dashboard shows."""
    rows = []
    for record in _records(path):
        if record.WhichOneof("record_type") == "history":
            items = record.history.item
            row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
            if "loss" in row:
                rows.append(row)
    return rows


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
    # the dashboard's table is the run's report, value for value
    (report,) = json.loads((tmp_path / "run" / "report.json").read_text())
    (shown,) = [dict(zip(content["columns"], row, strict=True)) for row in content["data"]]
    assert shown.keys() == report.keys()
    for key, value in report.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(shown[key]), key
        else:
            assert shown[key] == value, (key, shown[key], value)
    # the per-step curves: one row per optimizer step, and what they show is consistent:
    # the loss is Σ (T_shift/tol)², the implied T* is the target's T plus the shift, and the
    # first step starts from the configured θ₀
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    cfg = OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml")
    history = _history(record)
    assert len(history) == summary["steps"] == cfg.trainer.max_steps, history
    tol, t_target = report["tolerance_K"], report["experiment_K"]
    for row in history:
        shift = row["T_shift_K/argon_triple_point"]
        assert row["loss_targets"] == pytest.approx((shift / tol) ** 2, rel=1e-9), row
        assert row["T_implied_K/argon_triple_point"] == pytest.approx(t_target + shift), row
    assert history[0]["param/epsilon"] == pytest.approx(cfg.model.epsilon_eV, rel=1e-6)
    assert history[0]["param/sigma"] == pytest.approx(cfg.model.sigma_A, rel=1e-6)
    assert history[1]["param/epsilon"] != history[0]["param/epsilon"]  # a step was taken


def test_multirun_gives_one_grouped_wandb_run_per_job(tmp_path, tiny_train):
    _run(
        tiny_train,
        tmp_path,
        "optimizer.max_step=0.01,0.02",
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
        names.append(b"optimizer.max_step=0.01,plot=False" in data)  # the run name
        # each job logged its own settings: the trust radius starts at a quarter of its
        # max_step (optimizer.initial_step null)
        history = _history(next(run.glob("*.wandb")))
        max_step = OmegaConf.load(job / ".hydra" / "config.yaml").optimizer.max_step
        assert history[0]["trust_radius"] == pytest.approx(max_step / 4), (job, history[0])
    assert names == [True, False]
