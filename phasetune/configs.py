"""Where the shipped Hydra configs live, and the dtype names the commands accept.

The configs are package data (``phasetune/conf/``), so the console scripts and a
non-editable install find them from any working directory. Torch-free, so that
``phasetune --help`` answers without importing the heavy stack.
"""

from __future__ import annotations

from pathlib import Path

#: Absolute path of the shipped config tree (``train.yaml``, ``measure.yaml``, groups).
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")

#: The ``dtype=`` values of the commands.
DTYPE_NAMES = ("float64", "float32")


def torch_dtype(name: str):
    """The torch dtype of a ``dtype=`` value (ValueError naming the allowed ones)."""
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype must be one of {', '.join(sorted(DTYPE_NAMES))}, got {name!r}")
    import torch

    return getattr(torch, name)
