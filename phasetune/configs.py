"""Where the shipped Hydra configs live, and the dtype names the commands accept.

The configs are package data (``phasetune/conf/``), so the console scripts and a
non-editable install find them from any working directory. Torch-free, so that
``phasetune --help`` answers without importing the heavy stack.
"""

from __future__ import annotations

import functools
from pathlib import Path

#: Absolute path of the shipped config tree (``train.yaml``, ``measure.yaml``, groups).
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")

#: The ``dtype=`` values of the commands.
DTYPE_NAMES = ("float64", "float32")


def compose_config(command: str = "train", overrides: list[str] | tuple[str, ...] = ()):
    """The config a command would run with, composed from the shipped tree (no run dir).

    ``command`` is ``"train"``, ``"measure"`` or ``"sample"``; ``overrides`` are the
    command-line overrides, e.g. ``["experiment=ti_phase_diagram", "threads=4"]``. The
    result goes to :func:`phasetune.fine_tune`, :func:`phasetune.measure_transitions` or
    :func:`phasetune.sample_state_points` with an output directory.
    """
    from hydra import compose, initialize_config_dir

    if command not in ("train", "measure", "sample"):
        raise ValueError(f"command must be train, measure or sample, got {command!r}")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=command, overrides=list(overrides))


def torch_dtype(name: str):
    """The torch dtype of a ``dtype=`` value (ValueError naming the allowed ones)."""
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype must be one of {', '.join(sorted(DTYPE_NAMES))}, got {name!r}")
    import torch

    return getattr(torch, name)


def restores_torch_threads(function):
    """Decorate a run function that sets torch's thread count from ``cfg.threads``: the
    process's count is put back when it returns or raises (a library call leaves no trace)."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        import torch

        previous = torch.get_num_threads()
        try:
            return function(*args, **kwargs)
        finally:
            torch.set_num_threads(previous)

    return call
