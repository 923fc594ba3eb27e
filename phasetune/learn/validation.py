"""Validation observables before and after fine-tuning: liquid self-diffusion.

The experiment's ``validation.diffusion`` lists liquid state points with a measured D
(e.g. titanium, Horbach et al., PRB 80, 212203 (2009)). Each is sampled in NPT with the
pretrained and with the fine-tuned model, all in one batch, and D comes from the mean-square
displacement of the stored frames (:func:`phasetune.observables.diffusion_coefficient`).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from ase import Atoms

from phasetune.observables import diffusion_coefficient
from phasetune.potentials.base import sampling_copy
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points

log = logging.getLogger(__name__)


def diffusion_before_after(
    models: Mapping[str, torch.nn.Module],
    entries: Sequence[Mapping],
    liquid: Atoms,
    settings: SamplerSettings,
    *,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> list[dict]:
    """D (m²/s) of every entry {temperature_K, pressure_GPa, D_m2_per_s} for every model.

    ``models``: e.g. {"before": θ₀ model, "after": trained model}; the liquid structure is
    melted first (``settings.melt_steps``). Returns one row per entry with D and its error
    per model, the experimental value and the relative deviation.
    """
    if not entries:
        return []
    for k, entry in enumerate(entries):
        missing = [key for key in ("temperature_K", "D_m2_per_s") if key not in entry]
        if missing:
            raise ValueError(f"validation.diffusion[{k}] is missing {', '.join(missing)}")
    if settings.melt_steps == 0:
        settings = dataclasses.replace(settings, melt_steps=min(300, settings.equilibration_steps))
    rows = [
        {
            "temperature_K": float(e["temperature_K"]),
            "pressure_GPa": float(e.get("pressure_GPa", 0.0)),
            "experiment_m2_per_s": float(e["D_m2_per_s"]),
        }
        for e in entries
    ]
    for label, model in models.items():
        points = [
            StatePoint(
                name=f"{label}_{k}",
                phase="liquid",
                atoms=liquid,
                temperature_K=row["temperature_K"],
                pressure_GPa=row["pressure_GPa"],
            )
            for k, row in enumerate(rows)
        ]
        frames, _ = sample_state_points(
            sampling_copy(model), points, settings, device=device, dtype=dtype
        )
        for k, row in enumerate(rows):
            try:
                result = diffusion_coefficient(frames, system=k)
                row[f"{label}_m2_per_s"] = result.D_m2_per_s
                row[f"{label}_error_m2_per_s"] = result.error_m2_per_s
            except ValueError as err:  # e.g. the liquid froze: say so, keep the others
                log.warning("diffusion %s at %g K: %s", label, row["temperature_K"], err)
                row[f"{label}_m2_per_s"] = row[f"{label}_error_m2_per_s"] = math.nan
            row[f"{label}_deviation"] = row[f"{label}_m2_per_s"] / row["experiment_m2_per_s"] - 1
    return rows


def write_diffusion(rows: list[dict], output_dir: Path) -> Path:
    """``diffusion.csv``, one line per (model, state point): label, temperature_K,
    pressure_GPa, D_m2_per_s, error_m2_per_s, experiment_m2_per_s (the layout
    :func:`phasetune.analysis.load_model_diffusion` reads)."""
    path = output_dir / "diffusion.csv"
    fields = ["label", "temperature_K", "pressure_GPa", "D_m2_per_s", "error_m2_per_s"]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[*fields, "experiment_m2_per_s"])
        writer.writeheader()
        for row in rows:
            for label in ("before", "after"):
                if f"{label}_m2_per_s" in row:
                    writer.writerow(
                        {
                            "label": label,
                            "temperature_K": row["temperature_K"],
                            "pressure_GPa": row["pressure_GPa"],
                            "D_m2_per_s": row[f"{label}_m2_per_s"],
                            "error_m2_per_s": row[f"{label}_error_m2_per_s"],
                            "experiment_m2_per_s": row["experiment_m2_per_s"],
                        }
                    )
    return path


def plot_diffusion(rows: list[dict], path: Path) -> Path:
    """D(T): experiment against the model before and after fine-tuning (10⁻⁹ m²/s)."""
    from matplotlib.figure import Figure  # no global backend: notebooks keep theirs

    fig = Figure(figsize=(5.5, 4))
    ax = fig.subplots()
    t = [r["temperature_K"] for r in rows]
    ax.plot(t, [1e9 * r["experiment_m2_per_s"] for r in rows], "k*", ms=9, label="experiment")
    for label, fmt, color in (("before", "o", "tab:red"), ("after", "s", "tab:blue")):
        if f"{label}_m2_per_s" in rows[0]:
            ax.errorbar(
                t,
                [1e9 * r[f"{label}_m2_per_s"] for r in rows],
                yerr=[1e9 * r[f"{label}_error_m2_per_s"] for r in rows],
                fmt=fmt,
                color=color,
                capsize=3,
                label=f"model {label}",
            )
    ax.set_xlabel("temperature (K)")
    ax.set_ylabel("self-diffusion D (10⁻⁹ m²/s)")
    ax.set_title("liquid self-diffusion")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
