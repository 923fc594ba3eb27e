"""``metrics.csv`` with counters as integers.

Lightning logs every metric as a float tensor, so ``md_steps`` reads 29200.0 and
``resamplings`` 3.0 in the CSV. This logger writes the counters of
:data:`COUNTER_METRICS` as integers and everything else as Lightning does.
"""

from __future__ import annotations

import math

import torch
from pytorch_lightning.loggers import CSVLogger as _LightningCSVLogger

#: Metrics that count things (steps, events, frames): written as integers.
COUNTER_METRICS = frozenset(
    {"epoch", "md_steps", "md_restarts", "resamplings", "skipped_targets", "fresh_frames"}
)


def _counter(value):
    number = float(value.item() if isinstance(value, torch.Tensor) else value)
    return int(number) if math.isfinite(number) and number.is_integer() else number


class CSVLogger(_LightningCSVLogger):
    """Lightning's CSV logger; counters (:data:`COUNTER_METRICS`) as integers."""

    def log_metrics(self, metrics, step=None) -> None:
        metrics = {k: _counter(v) if k in COUNTER_METRICS else v for k, v in metrics.items()}
        super().log_metrics(metrics, step)
