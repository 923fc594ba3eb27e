"""Reading a ``phasetune`` run directory and drawing its figures (used by the notebooks).

A run directory (``outputs/train/<date>/``, written by :func:`phasetune.train.train`) holds

- ``report.csv`` / ``report.json``: one row per target — experiment, tolerance, the model
  before (its anchor), the reweighted estimate and the independently re-measured "after"
  value (NaN when it was skipped or failed);
- ``logs/version_*/metrics.csv``: Lightning's CSV log, one row per optimizer step (loss,
  ``dg_meV/<target>``, ``T_implied_K/<target>``, ``ess/<target>/<phase>``, re-samplings …);
- optionally, liquid self-diffusion data for validation, in either form:

  - ``diffusion/<label>/*.h5``: :class:`~phasetune.sampling.frames.Frames` files of liquid
    state points sampled with the model ``<label>`` (``before``, ``after``); D is computed
    here by :func:`phasetune.observables.diffusion_coefficient` (replicas of one state point
    — same phase, T, P — are pooled);
  - ``diffusion.csv``: already computed, columns ``label, temperature_K, pressure_GPa,
    D_m2_per_s, error_m2_per_s``.

The report's reader, table and phase diagram (:func:`load_report`, :func:`report_markdown`,
:func:`plot_phase_diagram`) live in :mod:`phasetune.report` and are re-exported here.

:func:`write_synthetic_ti_run` writes a small, made-up titanium run directory in this layout
(flagged ``"synthetic": true`` in ``summary.json``) so the analysis can be shown and tested
before a real run exists.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "diffusion_from_frames",
    "is_synthetic",
    "load_diffusion_experiment",
    "load_metrics",
    "load_model_diffusion",
    "load_report",
    "metric_series",
    "plot_diffusion",
    "plot_phase_diagram",
    "plot_training",
    "report_markdown",
    "write_synthetic_ti_run",
]

from phasetune.configs import CONFIG_DIR
from phasetune.report.plots import plot_diffusion, plot_phase_diagram
from phasetune.report.rows import COLUMNS, load_report, met_verdict, report_markdown

_CONF = Path(CONFIG_DIR)
_DIFFUSION_FIELDS = ("label", "temperature_K", "pressure_GPa", "D_m2_per_s", "error_m2_per_s")


def _float(value: Any) -> float:
    """A CSV/JSON cell as float: '' / None / 'nan' → NaN."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return math.nan
    return float(value)


def _run_dir(run_dir: str | Path) -> Path:
    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"run directory {path} does not exist (or is not a directory)")
    return path


# ---------------------------------------------------------------------------- metrics


def _metrics_files(run_dir: Path) -> list[Path]:
    if run_dir.is_file():
        return [run_dir]
    files = list((run_dir / "logs").glob("version_*/metrics.csv"))

    def version(p: Path) -> int:
        match = re.fullmatch(r"version_(\d+)", p.parent.name)
        return int(match.group(1)) if match else -1

    return sorted(files, key=version)


def load_metrics(run_dir: str | Path) -> dict[str, np.ndarray]:
    """The per-step training metrics of a run, one float array per column, sorted by step.

    ``run_dir`` is a run directory (every ``logs/version_*/metrics.csv`` is read in version
    order, so a resumed run, which logs into a new version, gives one history; a step logged
    again overrides the earlier value) or a ``metrics.csv`` file. Empty cells are NaN; rows
    with the same ``step`` are merged (the last non-empty value of each column wins).

    Raises:
        FileNotFoundError: no metrics file (the run had no CSV logger: ``~logger`` or wandb).
        ValueError: the file has no ``step`` column or no rows.
    """
    path = Path(run_dir)
    if not path.exists():
        raise FileNotFoundError(f"run directory {path} does not exist")
    files = _metrics_files(path)
    if not files:
        raise FileNotFoundError(
            f"no logs/version_*/metrics.csv under {path}: the run had no CSV logger "
            "(logger=csv is the default; `~logger` and logger=wandb write none)"
        )
    by_step: dict[int, dict[str, float]] = {}
    columns: list[str] = []
    for file in files:
        with open(file, newline="") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None or "step" not in reader.fieldnames:
                raise ValueError(f"{file} has no 'step' column")
            for name in reader.fieldnames:
                if name not in columns:
                    columns.append(name)
            for entry in reader:
                step = int(float(entry["step"]))
                row = by_step.setdefault(step, {})
                for name, value in entry.items():
                    number = _float(value)
                    if not math.isnan(number) or name not in row:
                        row[name] = number
    if not by_step:
        raise ValueError(f"{[str(f) for f in files]} hold no rows")
    steps = sorted(by_step)
    return {
        name: np.array([by_step[s].get(name, math.nan) for s in steps], dtype=float)
        for name in columns
    }


def metric_series(metrics: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The columns ``<prefix>/<name>`` of :func:`load_metrics`'s result, keyed by ``<name>``
    (e.g. ``metric_series(m, "ess")`` → ``{"argon_triple_point/fcc": array, ...}``)."""
    head = prefix.rstrip("/") + "/"
    return {k[len(head) :]: v for k, v in metrics.items() if k.startswith(head)}


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


# ---------------------------------------------------------------------------- diffusion


def load_diffusion_experiment(path: str | Path | None = None) -> list[dict[str, float]]:
    """Experimental liquid self-diffusion points of an experiment config's
    ``validation.diffusion`` list (default: ``phasetune/conf/experiment/ti_phase_diagram.yaml``,
    Horbach et al., PRB 80, 212203 (2009)): dicts with temperature_K, pressure_GPa,
    D_m2_per_s, sorted by temperature."""
    import yaml

    file = Path(path) if path is not None else _CONF / "experiment" / "ti_phase_diagram.yaml"
    data = yaml.safe_load(file.read_text()) or {}
    entries = (data.get("validation") or {}).get("diffusion")
    if not entries:
        raise ValueError(f"{file} has no validation.diffusion list")
    points = [
        {
            "temperature_K": float(e["temperature_K"]),
            "pressure_GPa": float(e.get("pressure_GPa", 0.0)),
            "D_m2_per_s": float(e["D_m2_per_s"]),
        }
        for e in entries
    ]
    return sorted(points, key=lambda e: e["temperature_K"])


def diffusion_from_frames(
    paths: Iterable[str | Path], label: str, *, phase: str = "liquid", **kwargs: Any
) -> list[dict[str, Any]]:
    """Self-diffusion coefficients of the ``phase`` systems in stored frames files.

    Systems of one file at the same (phase, T, P) are replicas and are pooled (the error
    then comes from their spread when there are at least 4, else from trajectory blocks;
    see :func:`phasetune.observables.diffusion_coefficient`, which gets ``kwargs``).

    Returns:
        One dict per state point: label, name, temperature_K, pressure_GPa, D_m2_per_s,
        error_m2_per_s, error_method, log_log_slope, file; sorted by temperature.
    """
    from phasetune.observables import diffusion_coefficient
    from phasetune.sampling.frames import Frames

    results = []
    for path in paths:
        frames = Frames.load(path)
        states = frames.state_points or [{} for _ in range(frames.n_systems)]
        groups: dict[tuple, list[int]] = {}
        for k, sp in enumerate(states):
            if sp and sp.get("phase") != phase:
                continue
            key = (sp.get("temperature_K"), sp.get("pressure_GPa"))
            groups.setdefault(key, []).append(k)
        for (temperature, pressure), systems in groups.items():
            result = diffusion_coefficient(frames, system=systems, **kwargs)
            results.append(
                {
                    "label": label,
                    "name": states[systems[0]].get("name", f"system {systems[0]}"),
                    "temperature_K": float(
                        temperature if temperature is not None else result.temperature_K
                    ),
                    "pressure_GPa": float(pressure) if pressure is not None else math.nan,
                    "D_m2_per_s": result.D_m2_per_s,
                    "error_m2_per_s": result.error_m2_per_s,
                    "error_method": result.error_method,
                    "log_log_slope": result.log_log_slope,
                    "file": str(path),
                }
            )
    return sorted(results, key=lambda r: r["temperature_K"])


def load_model_diffusion(run_dir: str | Path, **kwargs: Any) -> list[dict[str, Any]]:
    """The model's liquid self-diffusion in a run directory, ``[]`` if it holds none.

    Reads ``diffusion.csv`` if present, else computes D from the frames files
    ``diffusion/<label>/*.h5`` (:func:`diffusion_from_frames`, ``kwargs`` passed on), one
    label per sub-directory (``before``, ``after``). Rows as in :func:`diffusion_from_frames`.
    """
    path = _run_dir(run_dir)
    table = path / "diffusion.csv"
    if table.exists():
        with open(table, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = set(_DIFFUSION_FIELDS) - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{table} lacks the column(s) {sorted(missing)}")
            rows = []
            for entry in reader:
                row: dict[str, Any] = dict(entry)
                for name in _DIFFUSION_FIELDS[1:]:
                    row[name] = _float(entry[name])
                rows.append(row)
        return sorted(rows, key=lambda r: (r["label"], r["temperature_K"]))
    rows = []
    folder = path / "diffusion"
    if folder.is_dir():
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            files = sorted(sub.glob("*.h5"))
            if files:
                rows.extend(diffusion_from_frames(files, sub.name, **kwargs))
    return rows


# ---------------------------------------------------------------------------- synthetic run


def is_synthetic(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is a made-up example (``"synthetic": true`` in summary.json)."""
    summary = Path(run_dir) / "summary.json"
    if not summary.exists():
        return False
    return bool(json.loads(summary.read_text()).get("synthetic", False))


def _brownian_frames(
    d_m2_per_s: Sequence[float],
    temperatures_K: Sequence[float],
    *,
    n_atoms: int,
    n_frames: int,
    frame_fs: float,
    seed: int,
):
    """Frames of independent Brownian walkers, one liquid Ti system per temperature, with
    ⟨Δx²⟩ = 2DΔt per axis per frame (a made-up trajectory with a known D)."""
    import torch

    from phasetune.sampling.frames import Frames

    f64 = torch.float64
    n_sys = len(temperatures_K)
    box = (n_atoms / 0.0535) ** (1.0 / 3.0)  # liquid Ti: ≈ 0.0535 atoms/Å³
    g = torch.Generator().manual_seed(seed)
    sigma = torch.tensor([math.sqrt(2.0 * d * 1e5 * frame_fs) for d in d_m2_per_s], dtype=f64)
    sigma = sigma.repeat_interleave(n_atoms)[None, :, None]  # Å per frame and axis
    steps = torch.randn(n_frames - 1, n_sys * n_atoms, 3, generator=g, dtype=f64) * sigma
    start = torch.rand(1, n_sys * n_atoms, 3, generator=g, dtype=f64) * box
    positions = torch.cat([start, start + torch.cumsum(steps, dim=0)])
    cell = torch.eye(3, dtype=f64).mul(box).expand(n_frames, n_sys, 3, 3).clone()
    zeros = torch.zeros(n_frames, n_sys, dtype=f64)
    temperature = torch.tensor(list(temperatures_K), dtype=f64).expand(n_frames, n_sys).clone()
    stride = 125
    return Frames(
        positions=positions,
        cell=cell,
        potential_energy=zeros,
        kinetic_energy=zeros,
        volume=torch.linalg.det(cell),
        temperature=temperature,
        pressure=zeros,
        enthalpy=zeros,
        phase_ok=torch.ones(n_frames, n_sys, dtype=torch.bool),
        phase_fractions=torch.zeros(n_frames, n_sys, 4, dtype=f64),
        step=torch.arange(n_frames) * stride,
        system_idx=torch.arange(n_sys).repeat_interleave(n_atoms),
        atomic_numbers=torch.full((n_sys * n_atoms,), 22),
        masses=torch.full((n_sys * n_atoms,), 47.867, dtype=f64),
        state_points=[
            {
                "name": f"liquid_{t:.0f}K",
                "phase": "liquid",
                "temperature_K": float(t),
                "pressure_GPa": 0.0,
                "cell_mode": "isotropic",
            }
            for t in temperatures_K
        ],
        metadata={"timestep_fs": frame_fs / stride, "synthetic": True},
    )


def write_synthetic_ti_run(
    run_dir: str | Path,
    *,
    with_diffusion: bool = True,
    n_steps: int = 12,
    seed: int = 0,
) -> Path:
    """Write a small, MADE-UP titanium run directory (fake numbers, for demonstration and
    tests only), in the layout of a real ``phasetune experiment=ti_phase_diagram`` run.

    The targets (names, experimental T, P, tolerance) are the real ones of
    ``phasetune/conf/targets/ti_phase_diagram.yaml``; every model number is invented: "before" a
    foundation model too low by ≈ 150 K (hcp|bcc) and ≈ 250 K (bcc|liquid), "after" within a
    few K, a training history converging over ``n_steps`` steps with ESS-triggered re-samplings, and
    (``with_diffusion``) Brownian-walker frames ``diffusion/{before,after}/liquid.h5`` whose D
    is 0.75× and 1.0× Horbach's. ``summary.json`` says ``"synthetic": true``.

    Returns:
        ``run_dir``.
    """
    import yaml

    path = Path(run_dir)
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    targets = yaml.safe_load((_CONF / "targets" / "ti_phase_diagram.yaml").read_text())["targets"]
    rows = []
    start_shift = []
    for t in targets:
        t_exp, p = float(t["temperature_K"]), float(t["pressure_GPa"])
        solid = t["phases"][1] != "liquid"
        shift = (-150.0 + 6.0 * p) if solid else (-250.0 - 10.0 * p)
        start_shift.append(shift)
        after = t_exp + float(rng.normal(0.0, 4.0))
        rows.append(
            {
                "target": t["name"],
                "phases": "|".join(t["phases"]),
                "pressure_GPa": p,
                "experiment_K": t_exp,
                "tolerance_K": float(t["tolerance_K"]),
                "before_K": t_exp + shift + float(rng.normal(0.0, 5.0)),
                "before_error_K": 15.0 if solid else 10.0,
                "reweighted_K": t_exp + float(rng.normal(0.0, 3.0)),
                "reweighted_error_K": 12.0 if solid else 8.0,
                "after_K": after,
                "after_error_K": 15.0 if solid else 10.0,
                "after_method": "free_energy" if solid else "coexistence",
                "met": met_verdict(
                    after_K=after,
                    after_error_K=15.0 if solid else 10.0,
                    experiment_K=t_exp,
                    tolerance_K=float(t["tolerance_K"]),
                ),
                "source": "SYNTHETIC EXAMPLE (made-up model numbers); target: " + t["source"],
            }
        )
    with open(path / "report.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    (path / "report.json").write_text(json.dumps(rows, indent=2))

    # a made-up history: T* relaxes to the target; the ESS decays as the parameters move
    # away from the sampling ones and is reset by a re-sampling once it falls below 0.9
    delta_s_meV_per_K = {True: 0.08, False: 0.11}  # |Δs| per atom, made up
    history = []
    ess_age = 0
    resamplings = 0
    for step in range(n_steps):
        if history and min(v for k, v in history[-1].items() if k.startswith("ess/")) < 0.9:
            resamplings += 1
            ess_age = 0
        entry: dict[str, float] = {"step": float(step), "epoch": 0.0}
        loss = 0.0
        for t, shift in zip(targets, start_shift, strict=True):
            solid = t["phases"][1] != "liquid"
            off = shift * math.exp(-step / (n_steps / 4.0)) + float(rng.normal(0.0, 2.0))
            entry[f"dg_meV/{t['name']}"] = delta_s_meV_per_K[solid] * off  # Δg = Δs (T* − T)
            entry[f"T_shift_K/{t['name']}"] = off
            entry[f"T_implied_K/{t['name']}"] = float(t["temperature_K"]) + off
            loss += (off / float(t["tolerance_K"])) ** 2
            for phase in t["phases"]:
                ess = math.exp(-0.04 * ess_age) - abs(float(rng.normal(0.0, 0.005)))
                entry[f"ess/{t['name']}/{phase}"] = min(1.0, ess)
        entry["loss"] = loss
        entry["resamplings"] = float(resamplings)
        history.append(entry)
        ess_age += 1
    logs = path / "logs" / "version_0"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / "metrics.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=sorted(history[0]))
        writer.writeheader()
        writer.writerows(history)

    if with_diffusion:
        experiment = load_diffusion_experiment()
        temperatures = [e["temperature_K"] for e in experiment]
        for k, (label, factor) in enumerate((("before", 0.75), ("after", 1.0))):
            frames = _brownian_frames(
                [factor * e["D_m2_per_s"] for e in experiment],
                temperatures,
                n_atoms=64,
                n_frames=160,
                frame_fs=100.0,
                seed=seed + 1 + k,
            )
            frames.save(path / "diffusion" / label / "liquid.h5")
    summary = {
        "synthetic": True,
        "note": "SYNTHETIC EXAMPLE: made-up numbers, not a titanium run",
        "rows": rows,
        "steps": n_steps,
        "resamplings": resamplings,
    }
    (path / "summary.json").write_text(json.dumps(summary, indent=2))
    (path / "SYNTHETIC_EXAMPLE.txt").write_text(
        "This directory was written by phasetune.analysis.write_synthetic_ti_run: every model "
        "number in it is made up (a demonstration of the analysis, not a titanium run).\n"
    )
    return path
