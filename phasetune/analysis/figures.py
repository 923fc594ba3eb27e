"""The training history of a run drawn against the optimizer step (for the notebooks).

Δg in meV/atom, temperatures in K; the report's phase diagram and the diffusion plot are in
:mod:`phasetune.report.plots`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from phasetune.analysis.runs import metric_series

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_training(
    metrics: Mapping[str, np.ndarray],
    rows: Sequence[Mapping[str, Any]] | None = None,
    *,
    ess_threshold: float | None = None,
    relative: bool = False,
    title: str | None = None,
    max_legend: int = 8,
) -> Figure:
    """Four panels against the optimizer step: the loss, Δg_k (meV/atom), the implied T*_k
    and the effective sample size N_eff/N of every state point.

    Args:
        metrics: :func:`load_metrics`'s result.
        rows: the report (:func:`load_report`): draws each target's experimental T as a dotted
            line in the T* panel (needed for ``relative``).
        ess_threshold: the re-sampling threshold (``resampling.ess_threshold``), drawn as a line.
            Steps where the ``resamplings`` counter grows are marked in the ESS panel.
        relative: plot T*_k − T_k^exp instead of T*_k (readable when targets span 1000 K).
        title: figure title. max_legend: panels with more series get no legend.

    Returns:
        The figure; ``fig.axes`` are [loss, Δg, T*, ESS].
    """
    import matplotlib.pyplot as plt

    if "step" not in metrics:
        raise ValueError("metrics have no 'step' column")
    steps = np.asarray(metrics["step"])
    experiment = {r["target"]: float(r["experiment_K"]) for r in rows or []}
    if relative and not experiment:
        raise ValueError("relative=True needs the report rows (their experiment_K)")
    fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
    ax_loss, ax_dg, ax_t, ax_ess = axes.flat
    if "loss" in metrics:
        loss = np.asarray(metrics["loss"])
        ax_loss.plot(steps, loss, "k.-")
        if np.all(loss[np.isfinite(loss)] > 0) and np.isfinite(loss).any():
            ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss Σ (Δg_k / tol_k)²")
    ax_loss.set_title("loss")

    dg = metric_series(metrics, "dg_meV")
    for name, values in dg.items():
        ax_dg.plot(steps, values, ".-", label=name)
    ax_dg.axhline(0.0, color="k", lw=0.8)
    ax_dg.set_ylabel("Δg = g_B − g_A (meV/atom)")
    ax_dg.set_title("Δg at the experimental T_k (0 = on target)")

    implied = metric_series(metrics, "T_implied_K")
    for k, (name, values) in enumerate(implied.items()):
        color = f"C{k % 10}"
        shift = experiment.get(name, 0.0) if relative else 0.0
        ax_t.plot(steps, values - shift, ".-", color=color, label=name)
        if name in experiment:
            ax_t.axhline(0.0 if relative else experiment[name], color=color, ls=":", lw=0.9)
    ax_t.set_ylabel("T*_k − T_k^exp (K)" if relative else "implied T*_k (K)")
    ax_t.set_title("implied transition temperature (dotted: experiment)")

    ess = metric_series(metrics, "ess")
    for name, values in ess.items():
        ax_ess.plot(steps, values, ".-", label=name)
    if ess_threshold is not None:
        ax_ess.axhline(ess_threshold, color="k", ls="--", lw=0.9, label="re-sampling threshold")
    if "resamplings" in metrics:
        counts = np.nan_to_num(np.asarray(metrics["resamplings"]), nan=0.0)
        for step in steps[1:][np.diff(counts) > 0]:
            ax_ess.axvline(step, color="0.6", lw=0.8)
    ax_ess.set_ylabel("N_eff / N")
    ax_ess.set_title("effective sample size (grey: re-sampled)")

    for ax in axes.flat:
        n_series = len([line for line in ax.get_lines() if not line.get_label().startswith("_")])
        if 0 < n_series <= max_legend:
            ax.legend(fontsize=7)
    for ax in axes[1]:
        ax.set_xlabel("optimizer step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
