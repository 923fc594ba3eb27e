"""Notebooks run end to end (in their FAST / TINY settings, outputs in a temporary directory).

Parameters are injected as papermill does: a code cell is inserted right after the cell
tagged ``parameters`` and overrides its assignments.
"""

import json
import math
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from phasetune.analysis import load_diffusion_experiment, load_model_diffusion
from phasetune.report.rows import load_report

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


@pytest.fixture(autouse=True)
def _kernel_env(monkeypatch):
    """The kernel inherits this environment: no wandb network, one thread (busy 2-core CI)."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")


def _execute(name: str, cwd: Path, **parameters) -> nbformat.NotebookNode:
    """Run notebook ``name`` with ``parameters`` injected after its ``parameters`` cell, the
    kernel working in ``cwd``; returns the executed notebook (the file is not changed)."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [k for k, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{name}: expected one cell tagged 'parameters', found {tagged}"
    assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), (
        f"{name} is saved with outputs: clear them"
    )
    source = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    notebook.cells.insert(tagged[0] + 1, nbformat.v4.new_code_cell(source))
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    return notebook


def _text(notebook) -> str:
    """All printed and displayed text (stdout, text/plain and text/markdown outputs)."""
    parts = []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            data = out.get("data", {})
            parts.extend(data.get(kind, "") for kind in ("text/plain", "text/markdown"))
    return "\n".join(parts)


def _table(text: str) -> dict[str, list[str]]:
    """The rendered report table: target → its cells (report_markdown's layout)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if len(cells) == 9 and cells[0] not in ("target",) and not cells[0].startswith("---"):
            rows[cells[0]] = cells
    return rows


def _shown_value(cell: str) -> float:
    """The central value of a table cell "70.6 ± 0.5" (NaN for "—")."""
    head = cell.split("±")[0].strip()
    return math.nan if head in ("—", "") else float(head)


def _assert_table_shows_report(text: str, run: Path) -> list[dict]:
    """Every report row appears in the rendered table with its numbers (to the 0.1 K the
    table shows) and its verdict: what the notebook shows is what the run measured."""
    rows = load_report(run)
    table = _table(text)
    assert sorted(table) == sorted(r["target"] for r in rows), (sorted(table), rows)
    for r in rows:
        cells = table[r["target"]]
        for column, k in (
            ("experiment_K", 3),
            ("before_K", 4),
            ("reweighted_K", 5),
            ("after_K", 6),
        ):
            shown, value = _shown_value(cells[k]), float(r[column])
            if math.isnan(value):
                assert math.isnan(shown), (r["target"], column, cells[k])
            else:
                assert shown == pytest.approx(value, abs=0.051), (r["target"], column, cells[k])
        assert cells[8] == r["met"], (r["target"], cells[8], r["met"])
    return rows


def _images(notebook) -> int:
    return sum(
        "image/png" in out.get("data", {})
        for cell in notebook.cells
        for out in cell.get("outputs", [])
    )


def test_sampling_quickstart_runs():
    notebook = nbformat.read(NOTEBOOKS / "sampling_quickstart.ipynb", as_version=4)
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute()
    outputs = "".join(
        out.get("text", "") for cell in notebook.cells for out in cell.get("outputs", [])
    )
    assert "N_eff/N" in outputs


def test_argon_quickstart_runs_tiny(tmp_path):
    """TINY argon demo: trains 2 steps into tmp_path, plots the curves, the report table and
    the run's phase_diagram.png."""
    notebook = _execute("argon_quickstart.ipynb", tmp_path, TINY=True, OUT_DIR=str(tmp_path))
    runs = [p for p in tmp_path.iterdir() if (p / "report.csv").exists()]
    assert len(runs) == 1, list(tmp_path.iterdir())
    run = runs[0]
    for name in ("report.json", "summary.json", "phase_diagram.png", "trained_model.pt"):
        assert (run / name).exists(), name
    assert (run / "logs" / "version_0" / "metrics.csv").exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2
    text = _text(notebook)
    assert "steps: 2" in text
    assert "| argon_triple_point | fcc\\|liquid |" in text  # the report table, rendered
    assert "| skipped |" in text  # remeasure=false: the after column is skipped, shown as —
    (row,) = _assert_table_shows_report(text, run)
    assert row["before_K"] == pytest.approx(75.0)  # the model's T* given in TINY
    assert row["met"] == "not measured"
    assert _images(notebook) >= 2  # the training curves and phase_diagram.png


def test_titanium_analysis_runs_on_synthetic_example(tmp_path):
    """RUN_DIR=None: the synthetic example (labelled as such) with diffusion frames gives the
    phase diagram, the training curves and the model-vs-Horbach diffusion plot."""
    run = tmp_path / "synthetic"
    notebook = _execute("titanium_analysis.ipynb", tmp_path, RUN_DIR=None, SYNTHETIC_DIR=str(run))
    assert (run / "report.csv").exists() and (run / "diffusion" / "after" / "liquid.h5").exists()
    text = _text(notebook)
    assert "SYNTHETIC EXAMPLE" in text
    assert text.count("| ti_hcp_bcc_") == 6 and text.count("| ti_bcc_liquid_") == 6
    for t in (1952, 1999, 2059, 2109):  # D of both models at Horbach's temperatures
        assert text.count(f"{t}.0 K: D =") == 2, t
    rows = _assert_table_shows_report(text, run)
    verdicts = [r["met"] for r in rows]
    assert (
        f"{verdicts.count('yes')} of 12 targets met after fine-tuning, "
        f"{verdicts.count('no')} missed, {verdicts.count('unresolved')} unresolved" in text
    ), text[-2000:]
    # the printed D are the Einstein slopes of the run's stored frames: the walkers' D that
    # the synthetic run put in, 0.75x (before) and 1.0x (after) Horbach's at each T
    horbach = {round(e["temperature_K"]): e["D_m2_per_s"] for e in load_diffusion_experiment()}
    for r in load_model_diffusion(run):
        shown = f"{r['label']:>7} {r['temperature_K']:7.1f} K: D = {r['D_m2_per_s'] * 1e9:.2f} "
        assert shown in text, shown
        put_in = {"before": 0.75, "after": 1.0}[r["label"]] * horbach[round(r["temperature_K"])]
        assert abs(r["D_m2_per_s"] - put_in) < 3 * r["error_m2_per_s"] + 0.05 * put_in, (r, put_in)
    assert "experimental points only" not in text
    assert _images(notebook) == 3  # phase diagram, training curves, diffusion


def test_titanium_analysis_without_diffusion_shows_experiment_only(tmp_path):
    run = tmp_path / "synthetic"
    notebook = _execute(
        "titanium_analysis.ipynb",
        tmp_path,
        RUN_DIR=None,
        SYNTHETIC_DIR=str(run),
        SYNTHETIC_DIFFUSION=False,
    )
    assert not (run / "diffusion").exists()
    text = _text(notebook)
    assert "showing the experimental points only" in text
    assert "K: D =" not in text
    assert _images(notebook) == 3
