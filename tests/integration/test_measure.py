"""phasetune-measure on a tiny configuration: table, JSON and plot written and consistent."""

import csv
import json

import pytest
from hydra import compose, initialize_config_dir

from phasetune.config_check import ConfigError
from phasetune.configs import CONFIG_DIR
from phasetune.measure import measure, preflight_measure
from phasetune.units import EV_PER_A3_PER_GPA

TINY = [
    "pair.structures.fcc.n_atoms=108",
    "pair.structures.fcc.lattice_A=5.38",
    "coexistence.solid_steps=200",
    "coexistence.melt_steps=300",
    "coexistence.quench_steps=50",
    "coexistence.equilibration_steps=100",
    "coexistence.production_steps=600",
    "coexistence.stride=50",
    "coexistence.progress=false",
    "n_replicas=1",
    "window=0.15",
]


#: Pedersen, J. Chem. Phys. 139, 104102 (2013), Table I: LJ truncated and shifted at
#: r_c = 2.5σ (this model) has fcc and liquid coexisting at T* = 0.800, P* = 2.185. There is
#: no published P = 0 melting point for this exact potential (bench/RESULTS.md: 0.617 is the
#: Broughton–Gilmer potential's), so the test measures at Pedersen's pressure.
PEDERSEN_T_STAR, PEDERSEN_P_STAR = 0.800, 2.185


def test_measure_writes_transition_table_json_and_plot(tmp_path, argon):
    p_gpa = PEDERSEN_P_STAR * argon["epsilon_eV"] / argon["sigma_A"] ** 3 / EV_PER_A3_PER_GPA
    t_ref = PEDERSEN_T_STAR * argon["epsilon_K"]  # 95.84 K
    overrides = [*TINY, f"pressures=[{p_gpa:.5f}]", "guesses_K=[96.0]"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="measure", overrides=overrides)
    assert cfg.model.epsilon_eV == pytest.approx(argon["epsilon_eV"], rel=1e-5)
    assert cfg.model.sigma_A == argon["sigma_A"]
    rows = measure(cfg, tmp_path)
    assert (tmp_path / "phase_boundary.png").stat().st_size > 10_000
    with open(tmp_path / "transitions.csv") as handle:
        table = list(csv.DictReader(handle))
    stored = json.loads((tmp_path / "transitions.json").read_text())
    assert len(table) == len(stored) == len(rows) == 1
    assert table[0]["method"] == "coexistence"
    t_m = float(table[0]["transition_temperature_K"])
    assert t_m == pytest.approx(stored[0]["melting_temperature_K"])
    assert stored[0]["pressure_GPa"] == pytest.approx(0.0915, abs=1e-4)
    assert stored[0]["model"]["cutoff_sigma"] == 2.5 and stored[0]["model"]["shift"] is True
    # a tiny run (3 × 3-cell interface, one replica, 6 ps, 3 temperatures ± 15 %): T_m
    # within 3 of its own σ of the literature point plus 3 % for the narrow interface (+1 to
    # +3 % at 4 × 4 cells, bench/RESULTS.md), and within 10 % however large its σ (was:
    # anywhere in 55–95 K). Measured: these settings 98.2 ± 5.2 K; seeds 1–3: 94.7, 101.0,
    # 100.3 K; seeds 0–5 with a 95.8 K guess: 91.9–102.3 K (σ 2.0–10.7 K), all within 2σ.
    error = stored[0]["error_K"]
    assert stored[0]["bracketed"] and 0 < error < 15.0, stored[0]
    assert abs(t_m - t_ref) < min(3 * error + 0.03 * t_ref, 0.10 * t_ref), stored[0]


def test_measure_config_errors_say_what_to_do(tmp_path):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="measure", overrides=["pair=hcp_bcc", "method=coexistence"])
    with pytest.raises(ValueError, match="needs method=free_energy"):
        measure(cfg, tmp_path)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="measure", overrides=["pressures=[0,1]", "guesses_K=[70]"])
    with pytest.raises(ValueError, match="one temperature guess per pressure"):
        measure(cfg, tmp_path)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="measure", overrides=["method=melting"])  # fcc|liquid
    with pytest.raises(ValueError, match=r"method=melting .* is for a solid\|solid pair"):
        measure(cfg, tmp_path)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="measure",
            overrides=["pair=hcp_bcc", "method=both", "~pair.melting_guesses_K"],
        )
    with pytest.raises(ValueError, match="needs pair.structures.liquid and pair.melting_guesses_K"):
        measure(cfg, tmp_path)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="measure", overrides=["method=magic"])
    with pytest.raises(ValueError, match="method must be one of"):
        measure(cfg, tmp_path)


class _Recorded:
    """A stand-in result of a measurement route that remembers how it was asked."""

    def __init__(self, method, **fields):
        self.method, self.fields = method, fields
        self.transition_temperature_K = self.melting_temperature_K = 1000.0
        self.error_K = self.total_error_K = 5.0
        self.bracketed = True

    def describe(self):
        return self.method

    def as_dict(self):
        return {
            "method": self.method,
            "pressure_GPa": self.fields["pressure_GPa"],
            "transition_temperature_K": 1000.0,
            "error_K": 5.0,
        }


def test_measure_and_the_anchor_run_one_routine_with_the_same_settings(tmp_path, monkeypatch):
    """phasetune-measure used to re-implement the routes: its coexistence did not re-centre
    (max_recentre), and the anchor's Gibbs–Helmholtz temperatures were hard-coded at
    guess × (0.9, 1, 1.1) while phasetune-measure's were configurable. Now both call
    free_energy.measurement.measure_transitions with one AnchorSettings."""
    import phasetune.free_energy.measurement as routine
    from phasetune.learn.anchor import AnchorSettings, measure_transitions
    from phasetune.potentials.lennard_jones import LennardJones
    from phasetune.targets import PhaseStructure, TransitionTarget

    calls = []

    def coexistence(model, atoms, **kw):
        calls.append(("coexistence", kw))
        return [_Recorded("coexistence", pressure_GPa=p) for p in kw["pressures_GPa"]]

    def free_energy(model, structures, **kw):
        calls.append(("free_energy", kw))
        return _Recorded("free_energy", pressure_GPa=kw["pressure_GPa"])

    monkeypatch.setattr(routine, "melting_temperatures_bracketed", coexistence)
    monkeypatch.setattr(routine, "transition_from_free_energies", free_energy)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(
            config_name="measure",
            overrides=[
                "method=both",
                "pressures=[0,0.1]",
                "guesses_K=[80,90]",
                "max_recentre=1",
                "free_energy.enthalpy_temperature_factors=[0.8,1.0,1.2]",
                "plot=false",
            ],
        )
    rows = measure(cfg, tmp_path)
    assert [r["method"] for r in rows] == ["coexistence"] * 2 + ["free_energy"] * 2
    (kind, kw), *free = calls
    assert kind == "coexistence" and kw["max_recentre"] == 1 and kw["guesses_K"] == [80.0, 90.0]
    assert [c[1]["enthalpy_temperatures_K"] for c in free] == [
        [64.0, 80.0, 96.0],
        [72.0, 90.0, 108.0],
    ]
    # the anchor's route takes the same settings object and honours the same fields
    calls.clear()
    fcc = PhaseStructure(element="Ar", lattice_A=5.38, n_atoms=108)
    target = TransitionTarget("t", "fcc", "liquid", 80.0, 0.0, 1.0, {"fcc": fcc, "liquid": fcc})
    settings = AnchorSettings(
        method="free_energy", enthalpy_temperature_factors=[0.95, 1.05], max_recentre=0
    )
    measure_transitions(
        LennardJones(epsilon_eV=0.0103, sigma_A=3.4), [target], settings, guesses_K=[100.0]
    )
    assert calls[0][1]["enthalpy_temperatures_K"] == [95.0, 105.0]
    settings = AnchorSettings(method="coexistence", max_recentre=0)
    measure_transitions(
        LennardJones(epsilon_eV=0.0103, sigma_A=3.4), [target], settings, guesses_K=[100.0]
    )
    assert calls[1][1]["max_recentre"] == 0


def test_pressures_measured_as_separate_jobs_merge_into_the_one_runs_table(tmp_path):
    """Two pressures in one run, or each in its own job (as a submitit sweep runs them) and
    the results merged: the same rows to the last bit (every coexistence box draws its
    noise from a stream seeded by its own name). A merge that lost or reordered a pressure,
    or boxes seeded by their place in the batch, fails here."""
    from phasetune.measure import merge_main

    def run(name, pressures, guesses):
        overrides = [
            *TINY,
            f"pressures={pressures}",
            f"guesses_K={guesses}",
            "max_recentre=0",
            "plot=false",
            "coexistence.production_steps=300",
        ]
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="measure", overrides=overrides)
        measure(cfg, tmp_path / name)
        return tmp_path / name

    together = run("together", "[0.09,0.05]", "[96.0,90.0]")
    first, second = run("first", "[0.09]", "[96.0]"), run("second", "[0.05]", "[90.0]")
    assert merge_main([str(tmp_path / "merged"), str(second), str(first)]) == 0
    merged = json.loads((tmp_path / "merged" / "transitions.json").read_text())
    single = json.loads((together / "transitions.json").read_text())
    assert [r["pressure_GPa"] for r in merged] == [0.05, 0.09]
    single.sort(key=lambda r: r["pressure_GPa"])
    assert json.dumps(merged) == json.dumps(single)  # NaN fields too (NaN != NaN in ==)
    assert (tmp_path / "merged" / "phase_boundary.png").stat().st_size > 10_000
    # the same pressure measured twice is refused, in one line
    assert merge_main([str(tmp_path / "twice"), str(first), str(together)]) == 2


def test_boxes_measured_in_shares_fit_to_the_one_runs_result(tmp_path, monkeypatch):
    """One pressure's six boxes (3 temperatures × 2 replicas) in one run, or in two
    ``box_share`` jobs and a run that reads their boxes and fits: the same row to the last
    bit, and the fitting run runs no MD. A box seeded or keyed by its place in the batch, or
    shares that skip or double a box, fail here."""
    import phasetune.free_energy.coexistence as coexistence_module

    overrides = [o for o in TINY if not o.startswith("n_replicas=")] + [
        "n_replicas=2",
        "pressures=[0.09]",
        "guesses_K=[96.0]",
        "max_recentre=0",
        "plot=false",
        "coexistence.production_steps=300",
    ]
    boxes = tmp_path / "boxes"

    def run(name, *extra):
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="measure", overrides=[*overrides, *extra])
        preflight_measure(cfg)
        return measure(cfg, tmp_path / name)

    single = run("single")
    cached = f"coexistence.cache_dir={boxes}"
    assert run("share0", cached, "coexistence.box_share=0/2") == []
    assert len(list((boxes / "boxes").glob("*.json"))) == 3
    assert not (tmp_path / "share0" / "transitions.json").exists()
    assert run("share1", cached, "coexistence.box_share=1/2") == []
    assert len(list((boxes / "boxes").glob("*.json"))) == 6

    def no_md(*args, **kwargs):
        raise AssertionError("the fitting run ran boxes")

    monkeypatch.setattr(coexistence_module, "measure_boxes", no_md)
    merged = run("fit", cached)
    assert json.dumps(merged) == json.dumps(single)  # NaN fields too
    assert len(single[0]["temperatures_K"]) == 6
    # a share that cannot be a share, or one without a place to keep its boxes: refused
    for bad, words in [
        ([cached, "coexistence.box_share=2/2"], "0 <= k < n"),
        ([cached, "coexistence.box_share=half"], "k/n"),
        (["coexistence.box_share=0/2"], "needs coexistence.cache_dir"),
    ]:
        with pytest.raises(ConfigError, match=words):
            run("bad", *bad)
