"""Where the shipped Hydra configs live, and the dtype names the commands accept.

The configs are package data (``phasetune/conf/``), so the console scripts and a
non-editable install find them from any working directory. Layered below ``cli``,
``train``, ``measure`` and ``analysis``, which all read these two constants.
"""

from __future__ import annotations

from pathlib import Path

import torch

#: Absolute path of the shipped config tree (``train.yaml``, ``measure.yaml``, groups).
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")

#: ``dtype=`` names of the commands → torch dtypes.
DTYPES = {"float64": torch.float64, "float32": torch.float32}
