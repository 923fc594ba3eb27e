"""The run's figures: ``phase_diagram.png`` (targets, model before / reweighted / after),
``ess_history.png`` (effective sample sizes, the re-sampling threshold and events) and
``diffusion.png`` (liquid self-diffusion against experiment).

Figures are built with :class:`matplotlib.figure.Figure` (no global backend), so notebooks
keep theirs; :func:`plot_phase_diagram` also draws into an ``ax`` it is given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from phasetune.report.rows import as_float

#: Series of the phase diagram: column, error column, colour, marker face, label, dodge slot.
_SERIES = {
    "before": ("before_K", "before_error_K", "tab:red", "white", "model before", -1.5),
    "reweighted": ("reweighted_K", "reweighted_error_K", "tab:green", None, "reweighted", -0.5),
    "after": ("after_K", "after_error_K", "tab:blue", None, "after (re-measured)", 0.5),
}
_MARKERS = ("o", "s", "^", "D", "v", "P")
#: Diffusion series: colour and line style per model label.
_DIFFUSION_STYLE = {"before": ("tab:red", ":"), "after": ("tab:blue", "--")}


def _boundaries(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(str(r["phases"]), []).append(r)
    return {k: sorted(v, key=lambda r: float(r["pressure_GPa"])) for k, v in groups.items()}


def plot_phase_diagram(
    rows: Sequence[Mapping[str, Any]],
    ax=None,
    *,
    title: str | None = None,
    show_reweighted: bool = True,
    relative: bool = False,
    dodge_GPa: float | None = None,
):
    """Transition temperature against pressure for every boundary (``phases``): the
    experiment (black star, ± tolerance, drawn on top) and the model before (red, open),
    reweighted (green) and re-measured after (blue), each with its error bar.

    The model series sit side by side around the experiment's pressure (dodged by a few
    per cent of the pressure range, or of ±1 GPa for a single pressure; ``dodge_GPa`` sets
    the step), so no marker hides another. A series that is all NaN (e.g. "after" not
    re-measured) is left out and named in a note. ``relative``: plot T − T_exp. The series
    are in ``ax.containers``, labelled ``"<boundary>: <kind>"``.
    """
    if not rows:
        raise ValueError("no report rows to plot")
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(7, 5)).subplots()
    pressures = [float(r["pressure_GPa"]) for r in rows]
    span = max(pressures) - min(pressures)
    single = span == 0.0
    span = span or 2.0
    dodge = 0.025 * span if dodge_GPa is None else dodge_GPa
    kinds = [k for k in _SERIES if show_reweighted or k != "reweighted"]
    missing = []
    for b, (boundary, group) in enumerate(_boundaries(rows).items()):
        marker = _MARKERS[b % len(_MARKERS)]
        p = np.array([float(r["pressure_GPa"]) for r in group])
        t_exp = np.array([float(r["experiment_K"]) for r in group])
        reference = t_exp if relative else 0.0
        for kind in kinds:
            value, error, color, face, label, slot = _SERIES[kind]
            y = np.array([as_float(r.get(value)) for r in group]) - reference
            if not np.isfinite(y).any():
                missing.append(f"{boundary} {kind}")
                continue
            yerr = np.nan_to_num(np.array([as_float(r.get(error)) for r in group]), nan=0.0)
            ax.errorbar(
                p + slot * dodge,
                y,
                yerr=yerr,
                marker=marker,
                ls="none",
                color=color,
                mfc=face or color,
                capsize=3,
                lw=1.2,
                label=f"{boundary}: {label}",
                zorder=2,
            )
        tolerance = np.array([as_float(r.get("tolerance_K")) for r in group])
        ax.errorbar(
            p + 1.5 * dodge,
            t_exp - reference,
            yerr=np.nan_to_num(tolerance, nan=0.0),
            marker="*",
            ms=13,
            ls="-" if len(p) > 1 else "none",
            color="k",
            capsize=4,
            lw=1.2,
            label=f"{boundary}: experiment ± tolerance",
            zorder=3,
        )
        if not relative:  # name each boundary beside its highest-pressure point
            ax.annotate(
                boundary,
                (p[-1] + 1.5 * dodge, t_exp[-1]),
                textcoords="offset points",
                xytext=(12, 0),
                fontsize=9,
                va="center",
            )
    if missing:
        ax.text(
            0.02,
            0.02,
            "no values (NaN): " + ", ".join(missing),
            transform=ax.transAxes,
            fontsize=8,
            color="0.3",
        )
    if single:
        ax.set_xlim(pressures[0] - 1.0, pressures[0] + 1.0)
    ax.set_xlabel("pressure (GPa)")
    ax.set_ylabel("T − T_exp (K)" if relative else "transition temperature (K)")
    ax.set_title(title or "phase diagram: experiment and model")
    ax.legend(fontsize=7, loc="best")
    return ax


def plot_report(rows: Sequence[Mapping[str, Any]], history: list[dict], path: Path) -> Path:
    """``phase_diagram.png``: the phase diagram and the reweighted T* of each target per
    optimizer step against its experimental value (dotted) and tolerance (band)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 4.6))
    ax, ax2 = fig.subplots(1, 2)
    plot_phase_diagram(rows, ax)
    history = [h for h in history if "loss" in h]  # steps taken (not skipped)
    if history:
        steps = [h["step"] for h in history]
        for r in rows:
            key = f"T_implied_K/{r['target']}"
            (line,) = ax2.plot(
                steps, [h.get(key, math.nan) for h in history], marker=".", label=r["target"]
            )
            t, tol = float(r["experiment_K"]), as_float(r.get("tolerance_K"))
            ax2.axhline(t, color=line.get_color(), ls=":", lw=1.0)
            if math.isfinite(tol):
                ax2.axhspan(t - tol, t + tol, color=line.get_color(), alpha=0.12, lw=0)
        ax2.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax2.set_xlabel("optimizer step")
        ax2.set_ylabel("reweighted T* (K)")
        ax2.set_title("training: T* per step (dotted: experiment, band: tolerance)")
        ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


def plot_ess_history(history: list[dict], path: Path, *, threshold: float | None = None) -> Path:
    """``ess_history.png``: N_eff/N of every state point per optimizer step, the re-sampling
    threshold (dashed) and the steps after which frames were re-sampled (grey lines)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    history = [h for h in history if "loss" in h]
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    if history:
        steps = [h["step"] for h in history]
        for key in sorted({k for h in history for k in h if k.startswith("ess/")}):
            ax.plot(steps, [h.get(key, math.nan) for h in history], marker=".", label=key[4:])
        counts = [h.get("resamplings", math.nan) for h in history]
        events = [s for s, a, b in zip(steps[1:], counts, counts[1:], strict=False) if b > a]
        for k, step in enumerate(events):
            ax.axvline(step, color="0.6", lw=0.8, label="re-sampled" if k == 0 else None)
    if threshold is not None:
        ax.axhline(threshold, color="k", ls="--", lw=1.0, label=f"threshold {threshold:g}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("relative ESS  N_eff/N")
    ax.set_ylim(0, 1.05)
    ax.set_title("effective sample size per state point")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def plot_diffusion(
    experiment: Sequence[Mapping[str, float]],
    model: Sequence[Mapping[str, Any]] = (),
    ax=None,
    *,
    title: str | None = None,
    experiment_label: str = "Horbach et al., PRB 80, 212203 (2009)",
):
    """Liquid self-diffusion D(T) in 10⁻⁹ m²/s: the experimental points and the model's,
    one ``errorbar`` series per model label (``before``, ``after``) with its errors.

    With no model rows only the experiment is drawn and a note on the axes says so. The
    series are in ``ax.containers`` (experiment first, then the labels in order of
    appearance, ``before`` before ``after``).
    """
    if ax is None:
        from matplotlib.figure import Figure

        ax = Figure(figsize=(6.5, 4.5)).subplots()
    unit = 1e-9
    t_exp = np.array([float(e["temperature_K"]) for e in experiment])
    d_exp = np.array([float(e["D_m2_per_s"]) for e in experiment]) / unit
    ax.errorbar(t_exp, d_exp, yerr=None, fmt="k*", ms=10, label=experiment_label)
    labels: list[str] = []
    for r in model:
        if r["label"] not in labels:
            labels.append(str(r["label"]))
    order = {"before": 0, "after": 1}
    labels.sort(key=lambda name: order.get(name, 2))
    for k, name in enumerate(labels):
        points = sorted((r for r in model if r["label"] == name), key=lambda r: r["temperature_K"])
        color, line = _DIFFUSION_STYLE.get(name, (f"C{k + 2}", "-"))
        ax.errorbar(
            [float(r["temperature_K"]) for r in points],
            [float(r["D_m2_per_s"]) / unit for r in points],
            yerr=np.nan_to_num([as_float(r.get("error_m2_per_s")) / unit for r in points]),
            marker="o",
            ls=line,
            color=color,
            mfc="white" if name == "before" else color,
            capsize=3,
            label=f"model {name}",
        )
    if not labels:
        ax.text(
            0.03,
            0.95,
            "no model diffusion data in this run: experiment only",
            transform=ax.transAxes,
            va="top",
            fontsize=9,
            color="0.3",
        )
    ax.set_xlabel("temperature (K)")
    ax.set_ylabel("self-diffusion D (10⁻⁹ m²/s)")
    ax.set_title(title or "liquid self-diffusion")
    ax.legend(fontsize=8, loc="lower right")
    return ax
