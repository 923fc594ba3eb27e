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


def diffusion_table(rows: list[dict]) -> list[dict]:
    """One row per (model, state point): label, temperature_K, pressure_GPa, D_m2_per_s,
    error_m2_per_s, experiment_m2_per_s (the layout :mod:`phasetune.analysis` reads)."""
    table = []
    for row in rows:
        for label in ("before", "after"):
            if f"{label}_m2_per_s" in row:
                table.append(
                    {
                        "label": label,
                        "temperature_K": row["temperature_K"],
                        "pressure_GPa": row["pressure_GPa"],
                        "D_m2_per_s": row[f"{label}_m2_per_s"],
                        "error_m2_per_s": row[f"{label}_error_m2_per_s"],
                        "experiment_m2_per_s": row["experiment_m2_per_s"],
                    }
                )
    return table


def write_diffusion(rows: list[dict], output_dir: Path) -> Path:
    """``diffusion.csv`` in the layout of :func:`diffusion_table`."""
    path = output_dir / "diffusion.csv"
    table = diffusion_table(rows)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    return path


def plot_diffusion(rows: list[dict], path: Path) -> Path:
    """D(T): experiment against the model before and after fine-tuning (10⁻⁹ m²/s), drawn
    by :func:`phasetune.report.plots.plot_diffusion` on a figure of its own."""
    from matplotlib.figure import Figure  # no global backend: notebooks keep theirs

    from phasetune.report.plots import plot_diffusion as draw

    experiment = [
        {"temperature_K": r["temperature_K"], "D_m2_per_s": r["experiment_m2_per_s"]} for r in rows
    ]
    fig = Figure(figsize=(5.5, 4))
    draw(experiment, diffusion_table(rows), ax=fig.subplots(), experiment_label="experiment")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
