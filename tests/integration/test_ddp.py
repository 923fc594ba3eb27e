"""State points across processes: a 2-process DDP run (CPU, gloo) equals a 1-process run, and
a DDP run crashed and resumed equals an uninterrupted one.

Two LJ targets (32-atom boxes), so that each rank owns one target and its two state points.
Re-sampling is frequent (ESS threshold 0.97), so every step chains new frames: the ranks'
frames must be the ones a single process samples (one noise stream per state point), and the
exchange of residuals and Jacobian rows must not change a bit of the Gauss–Newton step.
Slow (order 1: end-to-end runs that check no published value, after the literature checks);
costs from a timed run on the free 2-core CPU, 108 s for the three (bench/RESULTS.md).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_TRAIN

TARGETS = """# @package _global_
targets:
  - name: a
    phases: [fcc, liquid]
    temperature_K: 78.0
    pressure_GPa: 0.0
    tolerance_K: 1.0
    model_transition_K: 75.0
    structures:
      fcc: {element: Ar, lattice_A: 5.45, n_atoms: 32}
      liquid: {element: Ar, lattice_A: 5.75, n_atoms: 32}
  - name: b
    phases: [fcc, liquid]
    temperature_K: 82.0
    pressure_GPa: 0.01
    tolerance_K: 1.0
    model_transition_K: 79.0
    structures:
      fcc: {element: Ar, lattice_A: 5.45, n_atoms: 32}
      liquid: {element: Ar, lattice_A: 5.75, n_atoms: 32}
"""

#: the shared tiny training settings, less their first target's (the two targets above)
#: and their step count
SETTINGS = [
    *(o for o in TINY_TRAIN if not o.lstrip("+").startswith(("targets.", "trainer.max_steps"))),
    "targets=two_tiny",
    "sampler.stride=10",
    "sampler.progress=false",
    "trainer.max_steps=3",
    "~logger",
    "plot=false",
    "convergence.patience=100",
]
DDP = ["trainer.devices=2", "trainer.strategy=ddp"]


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """run(name, *overrides, crash=None) → the run dir (each run once per module)."""
    base = tmp_path_factory.mktemp("ddp")
    (base / "conf" / "targets").mkdir(parents=True)
    (base / "conf" / "targets" / "two_tiny.yaml").write_text(TARGETS)
    done: dict[str, Path] = {}

    def run(
        name: str,
        *overrides: str,
        crash: str | None = None,
        expect_ok: bool = True,
        directory: str | None = None,
    ):
        if name in done:
            return done[name]
        directory = base / (directory or name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHASETUNE_CRASH")}
        if crash:
            env["PHASETUNE_CRASH_AT"] = crash
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "phasetune",
                f"hydra.searchpath=[file://{base / 'conf'}]",
                f"anchor.cache_dir={base / 'cache'}",
                f"hydra.run.dir={directory}",
                *SETTINGS,
                *overrides,
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=900,
        )
        assert (result.returncode == 0) == expect_ok, result.stderr[-3000:]
        done[name] = directory
        return directory

    return run


# full 2 % steps from the first (the trust radius opens at a quarter of that by default), so
# that the ESS drops below 0.97 and every step re-samples: the chains are exercised too
GAUSS_NEWTON = ["resampling.ess_threshold=0.97", "optimizer.initial_step=0.02"]


@pytest.fixture(scope="module")
def ddp_reference(ddp_runs) -> Path:
    """The uninterrupted 2-rank Gauss–Newton run (shared by two tests)."""
    return ddp_runs("two_gn", *GAUSS_NEWTON, *DDP)


def _parameters(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "trained_model.pt", weights_only=True)


def _checkpoint(run: Path) -> dict:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    data = next(v for k, v in ckpt.items() if k.endswith("StatePointDataModule"))
    for entry in data["ensembles"].values():
        entry.pop("frames_path")  # differs between run dirs
    return {
        "global_step": ckpt["global_step"],
        "parameters": ckpt["state_dict"],
        "optimizer": ckpt["optimizer_states"],
        "datamodule": data,
        "history": ckpt["phasetune"]["history"],
    }


def _assert_equal(a, b, where="") -> None:
    if isinstance(a, torch.Tensor):
        assert torch.equal(torch.nan_to_num(a), torch.nan_to_num(b)), where
    elif isinstance(a, dict):
        assert set(a) == set(b), (where, set(a) ^ set(b))
        for key in a:
            _assert_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_equal(x, y, f"{where}[{k}]")
    elif isinstance(a, float) and a != a:
        assert b != b, where
    else:
        assert a == b, (where, a, b)


@pytest.mark.slow(seconds=25, shared={"ddp_reference": 25}, order=1)
def test_two_ddp_ranks_take_the_same_gauss_newton_steps_as_one_process(ddp_runs, ddp_reference):
    """Gauss–Newton with a re-sampling at every step: the trained parameters, every chain
    link and the step history of the 2-rank run equal the 1-process run's bit for bit."""
    one = ddp_runs("one_gn", *GAUSS_NEWTON)
    two = ddp_reference
    assert (two / "train_ddp_process_1.log").exists()  # a second rank did run
    first, second = _parameters(one), _parameters(two)
    assert not torch.equal(first["epsilon"], torch.tensor(0.0103236, dtype=torch.float64))
    _assert_equal(first, second, "parameters")
    summaries = [json.loads((run / "summary.json").read_text()) for run in (one, two)]
    assert summaries[0]["resamplings"] >= 4  # new frames at every step, on both ranks
    _assert_equal(summaries[0]["chains"], summaries[1]["chains"], "chains")
    _assert_equal(_checkpoint(one)["history"], _checkpoint(two)["history"], "history")


@pytest.mark.slow(seconds=45, order=1)
def test_two_ddp_ranks_take_the_same_adam_steps_as_one_process(ddp_runs):
    """Adam: each rank's gradient share, summed over the ranks, gives one process's gradient
    to float64 rounding (summation order); on the same frames (no re-sampling) the
    parameters after 3 steps agree to 1e-13 relative."""
    adam = ["optimizer=adam", "optimizer.lr=0.01", "resampling.ess_threshold=0.01"]
    one = _parameters(ddp_runs("one_adam", *adam))
    two = _parameters(ddp_runs("two_adam", *adam, *DDP))
    start = torch.tensor(0.0103236, dtype=torch.float64)
    assert abs(float(one["epsilon"] - start)) > 1e-6  # Adam moved ε
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-13, atol=0.0)


@pytest.mark.slow(seconds=50, shared={"ddp_reference": 25}, order=1)
def test_a_crashed_ddp_run_resumes_bit_identical(ddp_runs, ddp_reference):
    """Both ranks crash at the start of step 3 (after step 2's checkpoint); resumed under
    DDP from the last checkpoint, the run ends bit-identical to the uninterrupted DDP run:
    parameters, optimizer state, every ensemble's reference energies, chain and counters."""
    settings = [*GAUSS_NEWTON, *DDP]
    reference = ddp_reference
    crashed = ddp_runs("crashed", *settings, crash="between_steps:3", expect_ok=False)
    assert not (crashed / "trained_model.pt").exists()
    assert torch.load(crashed / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 2
    resumed = ddp_runs("resumed", *settings, "ckpt_path=last", directory="crashed")
    _assert_equal(_checkpoint(reference), _checkpoint(resumed), "checkpoint")
    _assert_equal(_parameters(reference), _parameters(resumed), "parameters")
