"""Reading a run directory: the training metrics and the liquid self-diffusion.

Layout of a run directory: :mod:`phasetune.analysis`. D is in m²/s, T in K, P in GPa.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from phasetune.configs import CONFIG_DIR

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


def is_synthetic(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` is a made-up example (``"synthetic": true`` in summary.json)."""
    summary = Path(run_dir) / "summary.json"
    if not summary.exists():
        return False
    return bool(json.loads(summary.read_text()).get("synthetic", False))
