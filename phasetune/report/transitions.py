"""``phasetune-measure``'s results: ``transitions.json`` (every field of every result),
``transitions.csv`` (one line per pressure and method) and ``phase_boundary.png``.

A row is a result's ``as_dict()``: ``method`` (``coexistence``, ``free_energy``,
``melting``), ``pressure_GPa``, ``transition_temperature_K`` (coexistence:
``melting_temperature_K``), ``error_K`` (statistical), ``systematic_error_K`` and
``total_error_K`` (free energies), ``bracketed``; coexistence rows also carry their runs
(``temperatures_K``, ``velocity_A_per_ps``), melting rows the two solids' (``melting_a``,
``melting_b``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def write_transitions(rows: Sequence[Mapping[str, Any]], output_dir: Path) -> None:
    """transitions.json (everything) and transitions.csv (one line per pressure and method)."""
    with open(output_dir / "transitions.json", "w") as handle:
        json.dump(rows, handle, indent=2, default=float)
    keys = (
        "method",
        "pressure_GPa",
        "transition_temperature_K",
        "error_K",
        "systematic_error_K",
        "bracketed",
    )
    with open(output_dir / "transitions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(keys)
        for row in rows:
            t = row.get("transition_temperature_K", row.get("melting_temperature_K"))
            writer.writerow(
                [
                    row["method"],
                    row["pressure_GPa"],
                    t,
                    row["error_K"],
                    row.get("systematic_error_K", ""),
                    row.get("bracketed", ""),
                ]
            )


def _coexistence_runs(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The coexistence runs among ``rows``: their own, and the two of each melting route."""
    runs = [r for r in rows if r["method"] == "coexistence"]
    for row in rows:
        if row["method"] == "melting":
            runs += [row["melting_a"], row["melting_b"]]
    return runs


def plot_transitions(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Phase boundary T*(P) with error bars per method, and the interface velocities v(T)
    of the coexistence runs with their fitted lines and T_m."""
    from matplotlib.figure import Figure  # no global backend: notebooks keep theirs

    coexistence = _coexistence_runs(rows)
    n_panels = 2 if coexistence else 1
    fig = Figure(figsize=(5.5 * n_panels, 4.2))
    axes = fig.subplots(1, n_panels, squeeze=False)
    ax = axes[0, 0]
    for method, marker in (("coexistence", "o"), ("free_energy", "s"), ("melting", "D")):
        sel = [r for r in rows if r["method"] == method]
        if sel:
            p = [r["pressure_GPa"] for r in sel]
            t = [r.get("transition_temperature_K", r.get("melting_temperature_K")) for r in sel]
            # free energies: statistical and estimated systematic error together
            yerr = [r.get("total_error_K", r["error_K"]) for r in sel]
            ax.errorbar(p, t, yerr=yerr, fmt=marker, capsize=4, label=method)
    ax.set_xlabel("pressure (GPa)")
    ax.set_ylabel("transition temperature (K)")
    ax.set_title("phase boundary")
    ax.legend()
    if coexistence:
        ax = axes[0, 1]
        for run in coexistence:
            temperatures = np.asarray(run["temperatures_K"], dtype=float)
            velocities = np.asarray(run["velocity_A_per_ps"], dtype=float)
            line = ax.plot(temperatures, velocities, "o", alpha=0.7)[0]
            t = np.linspace(temperatures.min(), temperatures.max(), 10)
            b, a = np.polyfit(temperatures, velocities, 1)
            label = f"{run['solid_phase']}|liquid, {run['pressure_GPa']:g} GPa"
            ax.plot(t, a + b * t, "-", color=line.get_color(), label=label)
            ax.axvline(run["melting_temperature_K"], color=line.get_color(), ls=":")
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_xlabel("temperature (K)")
        ax.set_ylabel("interface velocity (Å/ps, > 0: solid grows)")
        ax.set_title("two-phase coexistence")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path
