"""The fine-tuning progress bar: DiffTRe steps out of ``trainer.max_steps``.

Lightning's bars count epochs of the (endless) step loader ("Epoch 0/-2") and show the
logger's version as a metric; a DiffTRe run is a number of optimizer steps that may stop
early on convergence, which is what this bar says.
"""

from __future__ import annotations

from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar


class _StepsDescription:
    def _get_train_description(self, current_epoch: int) -> str:  # Rich
        return f"DiffTRe steps (≤ {self.trainer.max_steps}, stops when converged)"

    def get_metrics(self, trainer, pl_module) -> dict:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


class RichStepsBar(_StepsDescription, RichProgressBar):
    """Rich bar with the DiffTRe step count."""


class TQDMStepsBar(_StepsDescription, TQDMProgressBar):
    """tqdm bar with the DiffTRe step count (where rich is not installed)."""

    def on_train_epoch_start(self, trainer, *_) -> None:
        super().on_train_epoch_start(trainer, *_)
        self.train_progress_bar.set_description(self._get_train_description(0))


def steps_progress_bar():
    """The rich bar where rich is installed, else tqdm."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return TQDMStepsBar()
    return RichStepsBar()
