"""Resume parity: a run crashed inside a sampling round, inside an optimizer step, or between
steps, then resumed from its last checkpoint, ends bit-identical (float64, CPU) to a run that
was never interrupted; and the same seed and config give the same numbers."""

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from phasetune.analysis import load_metrics
from phasetune.configs import CONFIG_DIR
from phasetune.faults import InjectedFaultError, crash_at
from phasetune.learn.checkpoint import previous_path
from phasetune.sampling.frames import Frames
from phasetune.train import train

#: on top of the ``tiny_train`` fixture (tests/conftest.py): Adam (its state must resume
#: too), frequent re-sampling, 4 steps
EXTRA = [
    "sampler.stride=10",
    "optimizer=adam",
    "optimizer.lr=0.01",
    "resampling.ess_threshold=0.97",
    "convergence.patience=100",
    "trainer.max_steps=4",
    "~logger",
    "plot=false",
]


def _cfg(tiny: list[str], tmp_path: Path, *extra: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(
            config_name="train",
            overrides=[*tiny, *EXTRA, f"anchor.cache_dir={tmp_path / 'cache'}", *extra],
        )


def _assert_same(a, b, where="checkpoint"):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype, where
        if a.is_floating_point():  # NaN marks frames that are not used: equal there too
            assert torch.equal(torch.isnan(a), torch.isnan(b)), where
            a, b = torch.nan_to_num(a, nan=0.0), torch.nan_to_num(b, nan=0.0)
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), (where, set(a) ^ set(b))
        for key in a:
            _assert_same(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_same(x, y, f"{where}[{k}]")
    elif isinstance(a, float) and a != a:  # NaN
        assert b != b, where
    else:
        assert a == b, (where, a, b)


def _state(run: Path) -> dict:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    datamodule = next(v for k, v in ckpt.items() if k.endswith("StatePointDataModule"))
    frames = {
        name: Frames.load(entry["frames_path"]) for name, entry in datamodule["ensembles"].items()
    }
    for entry in datamodule["ensembles"].values():  # paths differ between run dirs
        entry.pop("frames_path")
    return {
        "global_step": ckpt["global_step"],
        "parameters": ckpt["state_dict"],
        "optimizer": ckpt["optimizer_states"],
        "datamodule": datamodule,  # reference energies, θ_ref, BAR chain, counters
        "phasetune": ckpt["phasetune"],  # ESS history, rng state, anchors, θ₀
        "trained": torch.load(run / "trained_model.pt", weights_only=True),
        "frames": frames,
    }


def _same_frames(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for name in a:
        assert a[name].equals(b[name]), name


@pytest.mark.parametrize(
    "site, count",
    [("sampling", 2), ("optimizer_step", 2), ("between_steps", 3)],
)
def test_crashed_and_resumed_run_is_bit_identical(tmp_path_factory, site, count, tiny_train):
    base = tmp_path_factory.getbasetemp() / "resume"
    reference = base / "reference"
    if not (reference / "trained_model.pt").exists():
        summary = train(_cfg(tiny_train, base), reference)
        assert summary["steps"] == 4 and summary["resamplings"] >= 1, summary
    expected = _state(reference)

    run = base / site
    with crash_at(site, count), pytest.raises(InjectedFaultError):
        train(_cfg(tiny_train, base), run)
    assert not (run / "trained_model.pt").exists()
    train(_cfg(tiny_train, base, "ckpt_path=last"), run)
    got = _state(run)
    _same_frames(got.pop("frames"), expected["frames"])
    _assert_same(got, {k: v for k, v in expected.items() if k != "frames"})


def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path, tiny_train):
    run = tmp_path / "run"
    train(_cfg(tiny_train, tmp_path, "trainer.max_steps=2"), run)
    last = run / "checkpoints" / "last.ckpt"
    assert previous_path(last).exists()
    step_of_previous = torch.load(previous_path(last), weights_only=True)["global_step"]
    last.write_bytes(last.read_bytes()[:1000])  # a crash while writing, without the rename
    with pytest.warns(RuntimeWarning, match="resuming from the previous one"):
        summary = train(_cfg(tiny_train, tmp_path, "trainer.max_steps=3", "ckpt_path=last"), run)
    assert step_of_previous == 1 and summary["steps"] == 3


def _process_state() -> dict:
    import os
    import random
    import warnings

    from hydra.core.global_hydra import GlobalHydra

    return {
        "threads": torch.get_num_threads(),
        "torch_rng": torch.random.get_rng_state(),
        "numpy_rng": np.random.get_state()[1].copy(),  # noqa: NPY002
        "random": random.getstate(),
        "warning_filters": list(warnings.filters),
        "environment": dict(os.environ),
        "hydra": GlobalHydra.instance().is_initialized(),
    }


def test_same_seed_same_numbers(tmp_path, tiny_train):
    """Two runs with one seed agree; and train() called as a library function leaves no trace
    in the process (threads, random states that pl.seed_everything sets, warning filters,
    environment, Hydra's global state)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    before = _process_state()
    first = train(_cfg(tiny_train, tmp_path, "trainer.max_steps=2"), tmp_path / "a")
    after = _process_state()
    for key, value in before.items():
        if torch.is_tensor(value):
            assert torch.equal(value, after[key]), key
        elif isinstance(value, np.ndarray):
            assert np.array_equal(value, after[key]), key
        else:
            assert value == after[key], key
    second = train(_cfg(tiny_train, tmp_path, "trainer.max_steps=2"), tmp_path / "b")
    _assert_same(
        torch.load(tmp_path / "a" / "trained_model.pt", weights_only=True),
        torch.load(tmp_path / "b" / "trained_model.pt", weights_only=True),
    )
    assert first["rows"][0]["reweighted_K"] == second["rows"][0]["reweighted_K"]
    # and a different seed gives different frames (the test can fail)
    third = train(
        _cfg(tiny_train, tmp_path, "trainer.max_steps=2", "sampler.seed=1"), tmp_path / "c"
    )
    assert third["rows"][0]["reweighted_K"] != first["rows"][0]["reweighted_K"]
    torch.set_num_threads(threads)


def test_wall_times_add_up_and_show_the_resamplings(tmp_path, tiny_train):
    """MD and chaining are parts of fine-tuning, each step's re-sampling and update are parts
    of that step, and a step re-sampled exactly when the re-sampling counter moved."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[
                *tiny_train,
                *[x for x in EXTRA if x != "~logger"],
                "logger=csv",
                f"anchor.cache_dir={tmp_path / 'cache'}",
            ],
        )
    summary = train(cfg, tmp_path / "run")
    timing = summary["timing_s"]
    assert all(v >= 0 for v in timing.values()), timing
    assert timing["of_which_md"] > 0 and timing["of_which_chaining"] > 0, timing
    assert timing["of_which_md"] + timing["of_which_chaining"] <= timing["fine_tuning"], timing
    assert sum(v for k, v in timing.items() if not k.startswith("of_")) <= summary["wall_s"]
    metrics = load_metrics(tmp_path / "run")
    step, update, resampling = (metrics[f"time/{k}_s"] for k in ("step", "update", "resampling"))
    assert len(step) == summary["steps"] and np.all(update > 0)
    assert np.all(step >= update + resampling)
    resampled = np.diff(metrics["resamplings"], prepend=0.0) > 0
    assert resampled.any() and np.array_equal(resampling > 0, resampled), (resampling, resampled)
