"""phasetune.analysis: run-directory loaders and the notebook figures, on small synthetic
inputs (the report as train writes it, Lightning-style metrics, Brownian diffusion frames)."""

import csv
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from synthetic_ti_run import write_synthetic_ti_run  # noqa: E402  (notebooks/, a fixture)

from phasetune import analysis  # noqa: E402
from phasetune.configs import CONFIG_DIR  # noqa: E402
from phasetune.report import met_verdict, write_report  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _row(target, phases, p, exp, before, after, *, err=5.0, after_err=4.0, method="coexistence"):
    return {
        "target": target,
        "phases": phases,
        "pressure_GPa": p,
        "experiment_K": exp,
        "tolerance_K": 10.0,
        "before_K": before,
        "before_error_K": err,
        "reweighted_K": exp + 1.0,
        "after_K": after,
        "after_error_K": after_err,
        "after_method": method,
        "met": met_verdict(
            after_K=after, after_error_K=after_err, experiment_K=exp, tolerance_K=10.0
        ),
        "source": "test",
    }


def _ti_rows():
    rows = []
    for p in (0.0, 2.0, 5.0):
        rows.append(
            _row(f"hcp_bcc_{p:g}", "hcp|bcc", p, 1150 - 30 * p, 1000 - 30 * p, 1152 - 30 * p)
        )
        rows.append(
            _row(f"bcc_liq_{p:g}", "bcc|liquid", p, 1940 + 30 * p, 1700 + 30 * p, 1938 + 30 * p)
        )
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _series(container):
    """(x, y, yerr) of an ErrorbarContainer (yerr: half the bar length, None without bars)."""
    data_line, _, bars = container.lines
    x, y = np.asarray(data_line.get_xdata(), float), np.asarray(data_line.get_ydata(), float)
    if not bars:
        return x, y, None
    segments = bars[0].get_segments()
    return x, y, np.array([(s[1][1] - s[0][1]) / 2 for s in segments])


# ---------------------------------------------------------------------------- report


def test_load_report_reads_what_train_writes_and_parses_nan_after(tmp_path):
    rows = [
        _row("a", "fcc|liquid", 0.0, 83.8, 72.5, math.nan, after_err=math.nan, method="skipped"),
        _row("b", "fcc|liquid", 0.05, 85.0, 74.0, 84.5),
    ]
    write_report(rows, tmp_path)
    got = analysis.load_report(tmp_path)
    assert [r["target"] for r in got] == ["a", "b"]
    assert math.isnan(got[0]["after_K"]) and math.isnan(got[0]["after_error_K"])
    assert got[0]["after_method"] == "skipped" and got[0]["met"] == "not measured"
    assert got[1]["after_K"] == 84.5 and got[1]["met"] == "yes"
    assert isinstance(got[1]["pressure_GPa"], float) and got[1]["pressure_GPa"] == 0.05
    # the CSV rounds K to 0.01 and GPa to 1e-4; the JSON keeps every digit
    rows[1]["before_K"], rows[1]["pressure_GPa"] = 74.123456, 0.0512345
    write_report(rows, tmp_path)
    assert analysis.load_report(tmp_path)[1]["before_K"] == 74.12
    assert analysis.load_report(tmp_path)[1]["pressure_GPa"] == 0.0512
    (tmp_path / "report.csv").unlink()  # report.json alone gives the same rows
    from_json = analysis.load_report(tmp_path)
    assert math.isnan(from_json[0]["after_K"]) and from_json[1]["before_K"] == 74.123456
    # an older report's boolean ``met`` reads as a verdict
    _write_csv(tmp_path / "report.csv", [{**rows[1], "met": "True"}, {**rows[0], "met": "False"}])
    assert [r["met"] for r in analysis.load_report(tmp_path)] == ["yes", "no"]


def test_met_accounts_for_the_re_measurements_error():
    """|after − exp| ± 2σ against the tolerance: met, missed, or too noisy to tell."""
    assert met_verdict(after_K=83.9, after_error_K=0.2, experiment_K=83.8, tolerance_K=1.0) == "yes"
    # the argon demo's 83.66 ± 0.90 K against 83.8 ± 1 K: inside, but its 2σ is not
    unresolved = met_verdict(after_K=83.66, after_error_K=0.9, experiment_K=83.8, tolerance_K=1.0)
    assert unresolved == "unresolved"
    assert met_verdict(after_K=90.0, after_error_K=1.0, experiment_K=83.8, tolerance_K=1.0) == "no"
    # a miss within 2σ of the tolerance edge is not called a miss
    assert met_verdict(after_K=86.0, after_error_K=1.0, experiment_K=83.8, tolerance_K=1.0) == (
        "unresolved"
    )
    nan = math.nan
    assert met_verdict(after_K=nan, after_error_K=nan, experiment_K=83.8, tolerance_K=1.0) == (
        "not measured"
    )


def test_load_report_errors_name_the_problem(tmp_path):
    (tmp_path / "frames").mkdir()
    with pytest.raises(FileNotFoundError, match=r"has no report\.csv.*frames"):
        analysis.load_report(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        analysis.load_report(tmp_path / "missing")
    _write_csv(tmp_path / "report.csv", [{"target": "a", "phases": "fcc|liquid"}])
    with pytest.raises(ValueError, match="lacks the column"):
        analysis.load_report(tmp_path)


def test_report_markdown_escapes_the_boundary_and_dashes_nan():
    rows = [_row("a", "fcc|liquid", 0.0, 83.8, 72.5, math.nan, after_err=math.nan)]
    table = analysis.report_markdown(rows).splitlines()
    assert len(table) == 3 and table[0].count("|") == table[2].count("|") - 1 == 10
    assert "fcc\\|liquid" in table[2] and "| 83.8 ± 10.0 |" in table[2]
    assert "| — |" in table[2]  # after = NaN


# ---------------------------------------------------------------------------- metrics


def test_load_metrics_merges_versions_steps_and_empty_cells(tmp_path):
    logs = tmp_path / "logs"
    _write_csv(
        logs / "version_0" / "metrics.csv",
        [
            {"step": 0, "loss": 4.0, "dg_meV/a": -0.5, "ess/a/fcc": 1.0},
            {"step": 1, "loss": 2.0, "dg_meV/a": "", "ess/a/fcc": 0.95},
            {"step": 1, "loss": "", "dg_meV/a": -0.3, "ess/a/fcc": ""},  # same step: merged
        ],
    )
    # a resumed run logs into a new version; version_10 sorts after version_2 (numerically)
    _write_csv(logs / "version_2" / "metrics.csv", [{"step": 2, "loss": 1.5, "dg_meV/a": -0.2}])
    _write_csv(logs / "version_10" / "metrics.csv", [{"step": 2, "loss": 1.0, "dg_meV/a": ""}])
    m = analysis.load_metrics(tmp_path)
    np.testing.assert_array_equal(m["step"], [0, 1, 2])
    np.testing.assert_array_equal(m["loss"], [4.0, 2.0, 1.0])  # the later version wins
    np.testing.assert_array_equal(m["dg_meV/a"], [-0.5, -0.3, -0.2])  # empty: not an override
    assert m["ess/a/fcc"][1] == 0.95 and math.isnan(m["ess/a/fcc"][2])
    assert analysis.metric_series(m, "ess") == {"a/fcc": m["ess/a/fcc"]}
    direct = analysis.load_metrics(logs / "version_0" / "metrics.csv")
    np.testing.assert_array_equal(direct["step"], [0, 1])


def test_load_metrics_without_a_csv_logger_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no CSV logger"):
        analysis.load_metrics(tmp_path)


def test_plot_training_draws_every_series_and_marks_resamplings():
    metrics = {
        "step": np.arange(5.0),
        "loss": np.array([9.0, 4.0, 2.0, 1.0, 0.5]),
        "dg_meV/a": np.linspace(-0.5, 0.0, 5),
        "dg_meV/b": np.linspace(-0.3, 0.0, 5),
        "T_implied_K/a": np.linspace(80.0, 83.8, 5),
        "T_implied_K/b": np.linspace(90.0, 95.0, 5),
        "ess/a/fcc": np.array([1.0, 0.95, 0.88, 1.0, 0.96]),
        "ess/a/liquid": np.ones(5),
        "resamplings": np.array([0.0, 0.0, 0.0, 1.0, 1.0]),
    }
    rows = [_row("a", "fcc|liquid", 0.0, 83.8, 80, 83.7), _row("b", "fcc|liquid", 1, 95, 90, 95)]
    fig = analysis.plot_training(metrics, rows, ess_threshold=0.9)
    loss, dg, temperature, ess = fig.axes
    assert loss.get_yscale() == "log" and len(loss.get_lines()) == 1
    assert len(dg.get_lines()) == 3  # two targets and the zero line
    labelled = [ln for ln in temperature.get_lines() if not ln.get_label().startswith("_")]
    assert [ln.get_label() for ln in labelled] == ["a", "b"]
    assert {ln.get_ydata()[0] for ln in temperature.get_lines()} >= {83.8, 95.0}  # experiment
    # two ESS series, the threshold and one re-sampling marker (at step 3)
    assert len(ess.get_lines()) == 4
    assert [list(ln.get_xdata()) for ln in ess.get_lines()[-1:]] == [[3.0, 3.0]]
    fig = analysis.plot_training(metrics, rows, relative=True)
    np.testing.assert_allclose(fig.axes[2].get_lines()[0].get_ydata()[-1], 0.0, atol=1e-12)
    with pytest.raises(ValueError, match="needs the report rows"):
        analysis.plot_training(metrics, relative=True)


# ---------------------------------------------------------------------------- phase diagram


def test_phase_diagram_shows_every_series_with_its_error_bars_and_the_experiment_on_top():
    rows = _ti_rows()
    ax = analysis.plot_phase_diagram(rows, dodge_GPa=0.0)
    labels = [c.get_label() for c in ax.containers]
    kinds = ["model before", "reweighted", "after (re-measured)", "experiment ± tolerance"]
    assert labels == [f"{b}: {k}" for b in ("hcp|bcc", "bcc|liquid") for k in kinds]
    x, y, err = _series(ax.containers[4])  # bcc|liquid before
    np.testing.assert_allclose(x, [0.0, 2.0, 5.0])
    np.testing.assert_allclose(y, [1700.0, 1760.0, 1850.0])
    np.testing.assert_allclose(err, [5.0, 5.0, 5.0])
    np.testing.assert_allclose(_series(ax.containers[3])[2], [10.0] * 3)  # tolerance
    np.testing.assert_allclose(_series(ax.containers[2])[1], [1152.0, 1092.0, 1002.0])
    # the experiment is drawn above the model series, so no model marker hides it
    lines = {c.get_label(): c.lines[0] for c in ax.containers}
    top = lines["hcp|bcc: experiment ± tolerance"].get_zorder()
    assert all(line.get_zorder() < top for k, line in lines.items() if "experiment" not in k)
    # dodged: the four series of a boundary sit at four different pressures
    ax = analysis.plot_phase_diagram(rows, dodge_GPa=0.1)
    xs = [_series(c)[0][0] for c in ax.containers[:4]]
    assert len(set(np.round(xs, 9))) == 4 and max(xs) - min(xs) == pytest.approx(0.3)
    # relative: T − T_exp
    ax = analysis.plot_phase_diagram(rows, relative=True, dodge_GPa=0.0)
    np.testing.assert_allclose(_series(ax.containers[3])[1], [0.0] * 3)
    np.testing.assert_allclose(_series(ax.containers[6])[1], [-2.0] * 3)


def test_phase_diagram_at_a_single_pressure_has_a_readable_axis():
    rows = [_row("argon", "fcc|liquid", 0.0, 83.8, 70.6, 83.7, after_err=0.9)]
    ax = analysis.plot_phase_diagram(rows)
    assert ax.get_xlim() == (-1.0, 1.0)
    xs = [_series(c)[0][0] for c in ax.containers]
    assert len(set(xs)) == 4 and all(abs(x) < 0.2 for x in xs)


def test_phase_diagram_leaves_out_unmeasured_series_and_nan_errors():
    rows = _ti_rows()
    for r in rows:  # remeasure=false: every "after" is NaN
        r["after_K"] = r["after_error_K"] = math.nan
    rows[0]["before_error_K"] = math.nan  # a point without an error estimate
    ax = analysis.plot_phase_diagram(rows, dodge_GPa=0.0)
    assert len(ax.containers) == 6
    assert not any("after" in c.get_label() for c in ax.containers)
    assert any("no values (NaN)" in t.get_text() for t in ax.texts)
    np.testing.assert_allclose(_series(ax.containers[0])[2], [0.0, 5.0, 5.0])
    with pytest.raises(ValueError, match="no report rows"):
        analysis.plot_phase_diagram([])


# ---------------------------------------------------------------------------- diffusion


def test_diffusion_experiment_is_horbach_from_the_config():
    points = analysis.load_diffusion_experiment()
    assert [p["temperature_K"] for p in points] == [1952.0, 1999.0, 2059.0, 2109.0]
    np.testing.assert_allclose(
        [p["D_m2_per_s"] for p in points], [4.99e-9, 5.29e-9, 5.69e-9, 5.99e-9]
    )
    config = yaml.safe_load((Path(CONFIG_DIR) / "experiment" / "ti_phase_diagram.yaml").open())
    assert len(points) == len(config["validation"]["diffusion"])


def test_plot_diffusion_model_series_and_experiment_only():
    experiment = analysis.load_diffusion_experiment()
    model = [
        {
            "label": label,
            "temperature_K": e["temperature_K"],
            "D_m2_per_s": f * e["D_m2_per_s"],
            "error_m2_per_s": 0.2e-9,
        }
        for label, f in (("after", 1.0), ("before", 0.7))  # order in the plot: before, after
        for e in experiment
    ]
    ax = analysis.plot_diffusion(experiment, model)
    assert [c.get_label() for c in ax.containers] == [
        "Horbach et al., PRB 80, 212203 (2009)",
        "model before",
        "model after",
    ]
    x, y, err = _series(ax.containers[0])
    np.testing.assert_allclose(y, [4.99, 5.29, 5.69, 5.99])  # in 1e-9 m²/s
    assert err is None and len(x) == 4
    x, y, err = _series(ax.containers[1])
    np.testing.assert_allclose(y, 0.7 * np.array([4.99, 5.29, 5.69, 5.99]))
    np.testing.assert_allclose(err, [0.2] * 4)
    ax = analysis.plot_diffusion(experiment, [])
    assert len(ax.containers) == 1
    assert any("experiment only" in t.get_text() for t in ax.texts)


def test_synthetic_ti_run_round_trip_and_diffusion_from_frames(tmp_path):
    run = write_synthetic_ti_run(tmp_path / "run")
    assert analysis.is_synthetic(run) and not analysis.is_synthetic(tmp_path)
    rows = analysis.load_report(run)
    config = yaml.safe_load((Path(CONFIG_DIR) / "targets" / "ti_phase_diagram.yaml").open())
    assert [r["target"] for r in rows] == [t["name"] for t in config["targets"]]
    assert {r["phases"] for r in rows} == {"hcp|bcc", "bcc|liquid"}
    assert all("SYNTHETIC" in r["source"] for r in rows)
    metrics = analysis.load_metrics(run)
    assert len(analysis.metric_series(metrics, "ess")) == 24
    assert metrics["resamplings"][-1] >= 1  # the made-up ESS crosses 0.9
    # D from the Brownian frames recovers the D they were made with (0.75x / 1.0x Horbach)
    model = analysis.load_model_diffusion(run)
    experiment = {e["temperature_K"]: e["D_m2_per_s"] for e in analysis.load_diffusion_experiment()}
    assert sorted((r["label"], r["temperature_K"]) for r in model) == sorted(
        (label, t) for label in ("before", "after") for t in experiment
    )
    for r in model:
        true = {"before": 0.75, "after": 1.0}[r["label"]] * experiment[r["temperature_K"]]
        assert r["error_method"] == "blocks" and r["error_m2_per_s"] > 0
        assert abs(r["D_m2_per_s"] - true) < max(5 * r["error_m2_per_s"], 0.1 * true), r
        assert 0.8 < r["log_log_slope"] < 1.2  # diffusive
    # a precomputed diffusion.csv takes precedence over the frames
    _write_csv(
        run / "diffusion.csv",
        [{"label": "after", "temperature_K": 2000, "pressure_GPa": 0, "D_m2_per_s": 5e-9,
          "error_m2_per_s": ""}],
    )  # fmt: skip
    (only,) = analysis.load_model_diffusion(run)
    assert only["D_m2_per_s"] == 5e-9 and math.isnan(only["error_m2_per_s"])


def test_run_without_diffusion_data_has_none(tmp_path):
    run = write_synthetic_ti_run(tmp_path / "run", with_diffusion=False, n_steps=3)
    assert analysis.load_model_diffusion(run) == []
    assert json.loads((run / "summary.json").read_text())["steps"] == 3


def test_ess_history_marks_the_threshold_and_each_re_sampling(tmp_path, monkeypatch):
    import matplotlib.figure
    from matplotlib.image import imread

    from phasetune.report.plots import plot_ess_history

    history = [
        {"step": s, "loss": 1.0, "ess/a/fcc": e, "resamplings": r}
        for s, e, r in [(0, 1.0, 0), (1, 0.92, 0), (2, 0.85, 0), (3, 1.0, 1), (4, 0.95, 1)]
    ]
    history.append({"step": 5, "skipped": 1.0})  # a skipped step draws nothing
    captured = {}
    original = matplotlib.figure.Figure.savefig

    def keep(fig, *args, **kwargs):
        captured["ax"] = fig.axes[0]
        return original(fig, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    path = plot_ess_history(history, tmp_path / "ess.png", threshold=0.9)
    assert imread(path).shape[0] > 100
    lines = {line.get_label(): line for line in captured["ax"].get_lines()}
    assert list(lines["threshold 0.9"].get_ydata()) == [0.9, 0.9]
    assert list(lines["re-sampled"].get_xdata()) == [3, 3]  # after step 2, before step 3
    assert list(lines["a/fcc"].get_xdata()) == [0, 1, 2, 3, 4]
