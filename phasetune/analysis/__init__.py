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

The metrics and diffusion readers are in :mod:`phasetune.analysis.runs`, the training figure
in :mod:`phasetune.analysis.figures`; the report's reader, table and plots
(:func:`load_report`, :func:`report_markdown`, :func:`plot_phase_diagram`,
:func:`plot_diffusion`) live in :mod:`phasetune.report`. All are re-exported here, where the
notebooks import them.

A small, made-up titanium run directory in this layout (flagged ``"synthetic": true`` in
``summary.json``), to show and test the analysis before a real run exists, is a notebook and
test fixture, not library code: ``notebooks/synthetic_ti_run.py``.
"""

from phasetune.analysis.figures import plot_training
from phasetune.analysis.runs import (
    diffusion_from_frames,
    is_synthetic,
    load_diffusion_experiment,
    load_metrics,
    load_model_diffusion,
    metric_series,
)
from phasetune.report.plots import plot_diffusion, plot_phase_diagram
from phasetune.report.rows import load_report, report_markdown

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
]
