"""``import phasetune`` as a library: the entry points, lazily imported, with docstrings."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_cli import TINY

import phasetune


def test_import_phasetune_is_light_and_lists_its_entry_points():
    code = (
        "import sys, phasetune\n"
        "heavy = [m for m in ('torch', 'torch_sim', 'pytorch_lightning', 'mace')\n"
        "         if m in sys.modules]\n"
        "print(heavy, sorted(phasetune.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy, names = out.stdout.split("] ")
    assert heavy == "[", f"import phasetune imported {heavy}]"
    for name in (
        "compose_config",
        "fine_tune",
        "measure_transitions",
        "sample_state_points",
        "export_run",
        "load_report",
    ):
        assert repr(name) in names


@pytest.mark.parametrize("name", [n for n in phasetune.__all__ if n != "__version__"])
def test_every_entry_point_is_documented(name):
    function = getattr(phasetune, name)
    assert callable(function)
    assert function.__doc__ and len(function.__doc__.split()) >= 5, name
    assert name in phasetune.__doc__  # listed in the package docstring
    assert name in dir(phasetune)


def test_entry_points_are_the_commands_functions_not_modules():
    import phasetune.measure
    import phasetune.train

    # importing the modules of the same stem does not shadow the entry points
    assert phasetune.fine_tune is phasetune.train.train
    assert phasetune.measure_transitions is phasetune.measure.measure
    with pytest.raises(AttributeError, match="no attribute 'fine_tuned'"):
        phasetune.fine_tuned  # noqa: B018


def test_compose_config_applies_overrides_and_refuses_unknown_commands():
    cfg = phasetune.compose_config("train", ["threads=3", "optimizer.max_step=0.5"])
    assert (cfg.threads, cfg.optimizer.max_step) == (3, 0.5)
    assert phasetune.compose_config("measure").pair.phases  # the measure tree, not train's
    with pytest.raises(ValueError, match="train, measure or sample"):
        phasetune.compose_config("fit")


def test_the_default_thread_count_is_two_or_phasetune_threads(monkeypatch):
    monkeypatch.delenv("PHASETUNE_THREADS", raising=False)
    assert [phasetune.compose_config(c).threads for c in ("train", "measure", "sample")] == [2] * 3
    monkeypatch.setenv("PHASETUNE_THREADS", "1")  # what scripts/test.sh sets per xdist worker
    assert [phasetune.compose_config(c).threads for c in ("train", "measure", "sample")] == [1] * 3
    assert phasetune.compose_config("measure", ["threads=3"]).threads == 3


def test_sample_state_points_from_python_with_a_string_directory(tmp_path):
    """The same MD as ``phasetune-sample``: a 32-atom LJ fcc crystal held at 40 K."""
    import torch

    cfg = phasetune.compose_config("sample", TINY)  # threads=1
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        frames = phasetune.sample_state_points(cfg, str(tmp_path / "run"))
        assert torch.get_num_threads() == 2  # the run's threads=1 is not left behind
    finally:
        torch.set_num_threads(before)  # nor this test's 2 (xdist workers run on one thread)
    assert (tmp_path / "run" / "frames.h5").is_file()
    t_mean = float(frames.temperature[:, 0].mean())
    assert t_mean == pytest.approx(40.0, rel=0.12)
