"""Notebooks run end to end (in their FAST / TINY settings, outputs in a temporary directory).

Parameters are injected as papermill does: a code cell is inserted right after the cell
tagged ``parameters`` and overrides its assignments.
"""

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


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
    return "".join(parts)


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
