"""The rows of a run's report: columns, the ``met`` rule, tables, reading and writing.

One row per target. Temperatures in K, pressures in GPa, as the column names say:

========================  =====================================================
``target``, ``phases``    the target's name and its pair (``fcc|liquid``)
``pressure_GPa``          the target's pressure
``experiment_K``          the experimental transition temperature
``tolerance_K``           how close the model has to come
``before_K`` (± error)    the pretrained model's transition (the anchor)
``reweighted_K`` (± err)  the fine-tuned model's, estimated by reweighting
``after_K`` (± error)     the fine-tuned model's, re-measured independently
``after_method``          how "after" was measured (``skipped``: not re-measured)
``met``                   ``yes`` / ``no`` / ``unresolved`` / ``not measured``
``source``                where the experimental number comes from
========================  =====================================================

``met`` accounts for the re-measurement's error σ: with d = |after − experiment|,
``yes`` when d + 2σ ≤ tolerance (met even at the edge of the error), ``no`` when
d − 2σ > tolerance (missed even at the edge), ``unresolved`` in between: the measurement
is too noisy to tell, re-measure with longer runs.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

COLUMNS = (
    "target",
    "phases",
    "pressure_GPa",
    "experiment_K",
    "tolerance_K",
    "before_K",
    "before_error_K",
    "reweighted_K",
    "reweighted_error_K",
    "after_K",
    "after_error_K",
    "after_method",
    "met",
    "source",
)
#: Numeric columns (``nan`` or empty → NaN when read).
FLOAT_COLUMNS = tuple(c for c in COLUMNS if c.endswith(("_K", "_GPa")))
#: ``met`` values; only ``yes`` counts as met.
VERDICTS = ("yes", "no", "unresolved", "not measured")
#: Decimals written to report.csv per unit (report.json keeps full precision).
_DECIMALS = {"_K": 2, "_GPa": 4}
#: σ multiple of the ``met`` rule.
MET_SIGMAS = 2.0


def met_verdict(
    *, after_K: float, after_error_K: float, experiment_K: float, tolerance_K: float
) -> str:
    """``yes`` if |after − exp| + 2σ ≤ tol, ``no`` if |after − exp| − 2σ > tol, else
    ``unresolved``; ``not measured`` when ``after_K`` is NaN (σ NaN counts as 0)."""
    if not math.isfinite(after_K):
        return "not measured"
    miss = abs(after_K - experiment_K)
    sigma = after_error_K if math.isfinite(after_error_K) else 0.0
    if miss + MET_SIGMAS * sigma <= tolerance_K:
        return "yes"
    if miss - MET_SIGMAS * sigma > tolerance_K:
        return "no"
    return "unresolved"


def as_float(value: Any) -> float:
    """A CSV/JSON cell as float: '' / None / 'nan' → NaN."""
    if value is None or (isinstance(value, str) and value.strip() == ""):
        return math.nan
    return float(value)


def _rounded(column: str, value: Any) -> Any:
    for suffix, decimals in _DECIMALS.items():
        if column.endswith(suffix) and isinstance(value, float) and math.isfinite(value):
            return round(value, decimals)
    return value


def write_report(rows: Sequence[Mapping[str, Any]], output_dir: Path) -> None:
    """``report.json`` (full precision) and ``report.csv`` (K to 0.01, GPa to 1e-4)."""
    output_dir = Path(output_dir)
    with open(output_dir / "report.json", "w") as handle:
        json.dump([dict(r) for r in rows], handle, indent=2, default=float)
    with open(output_dir / "report.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows({c: _rounded(c, r.get(c)) for c in COLUMNS} for r in rows)


def _verdict(value: Any) -> str:
    """``met`` as written, or from an older report's boolean."""
    text = str(value).strip().lower()
    if text in VERDICTS:
        return text
    return "yes" if text in ("true", "1") else "no"


def load_report(run_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of a run's ``report.csv`` (or ``report.json`` if there is no CSV).

    Numeric columns (:data:`FLOAT_COLUMNS`) become floats (a skipped or failed
    re-measurement is NaN), ``met`` one of :data:`VERDICTS`; other columns stay strings.

    Raises:
        FileNotFoundError: ``run_dir`` is not a directory, or holds neither report file
            (the message names the directory and what it does contain).
        ValueError: the report has no rows or lacks a required column.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise FileNotFoundError(f"run directory {path} does not exist (or is not a directory)")
    if (path / "report.csv").exists():
        with open(path / "report.csv", newline="") as handle:
            raw = list(csv.DictReader(handle))
        source = path / "report.csv"
    elif (path / "report.json").exists():
        raw = json.loads((path / "report.json").read_text())
        source = path / "report.json"
    else:
        contents = sorted(p.name for p in path.iterdir())[:12]
        raise FileNotFoundError(
            f"{path} has no report.csv (nor report.json): not a finished phasetune train run? "
            f"It contains {contents or 'nothing'}"
        )
    if not raw:
        raise ValueError(f"{source} has no rows")
    required = {"target", "phases", "pressure_GPa", "experiment_K", "before_K", "after_K"}
    missing = required - set(raw[0])
    if missing:
        raise ValueError(f"{source} lacks the column(s) {sorted(missing)}")
    rows = []
    for entry in raw:
        row = dict(entry)
        for name in FLOAT_COLUMNS:
            if name in row:
                row[name] = as_float(row[name])
        if "met" in row:
            row["met"] = _verdict(row["met"])
        rows.append(row)
    return rows


def _pm(value: float, error: float | None, digits: int) -> str:
    if not math.isfinite(value):
        return "—"
    text = f"{value:.{digits}f}"
    if error is not None and math.isfinite(error) and error > 0:
        text += f" ± {error:.{digits}f}"
    return text


def format_table(rows: Sequence[Mapping[str, Any]], digits: int = 2) -> str:
    """The report for the terminal and the log, with the ``met`` rule under it."""
    columns = (
        ("target", 24),
        ("P (GPa)", 8),
        ("exp ± tol (K)", 16),
        ("before (K)", 16),
        ("reweighted (K)", 16),
        ("after (K)", 16),
    )
    head = (
        " ".join(
            f"{name:<{w}}" if i == 0 else f"{name:>{w}}" for i, (name, w) in enumerate(columns)
        )
        + "  met"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = (
            _pm(r["experiment_K"], r.get("tolerance_K"), digits),
            _pm(r["before_K"], r.get("before_error_K"), digits),
            _pm(r.get("reweighted_K", math.nan), r.get("reweighted_error_K"), digits),
            _pm(r["after_K"], r.get("after_error_K"), digits),
        )
        lines.append(
            f"{r['target']:<24} {r['pressure_GPa']:>8.3g} "
            + " ".join(f"{c:>16}" for c in cells)
            + f"  {r.get('met', '')}"
        )
    lines.append(
        "met: yes if |after − exp| + 2σ ≤ tol, no if |after − exp| − 2σ > tol, else "
        "unresolved (σ: the re-measurement's error)"
    )
    return "\n".join(lines)


def report_markdown(rows: Sequence[Mapping[str, Any]], digits: int = 1) -> str:
    """The report as a Markdown table: experiment ± tolerance, before ± error, reweighted,
    after ± error (— where NaN), the re-measurement method and the ``met`` verdict."""
    head = (
        "| target | phases | P (GPa) | experiment (K) | before (K) | reweighted (K) "
        "| after (K) | after method | met |"
    )
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        lines.append(
            f"| {r['target']} | {str(r['phases']).replace('|', chr(92) + '|')} "
            f"| {r['pressure_GPa']:g} "
            f"| {_pm(r['experiment_K'], r.get('tolerance_K'), digits)} "
            f"| {_pm(r['before_K'], r.get('before_error_K'), digits)} "
            f"| {_pm(r.get('reweighted_K', math.nan), r.get('reweighted_error_K'), digits)} "
            f"| {_pm(r['after_K'], r.get('after_error_K'), digits)} "
            f"| {r.get('after_method', '')} | {r.get('met', '')} |"
        )
    return "\n".join(lines)
