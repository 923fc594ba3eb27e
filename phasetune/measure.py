"""``phasetune-measure``: transition temperatures of a potential at several pressures.

    phasetune-measure model=lj_argon pair=fcc_liquid pressures=[0,0.05]
    phasetune-measure pair=fcc_liquid method=both          # coexistence and free energies

Methods: ``coexistence`` (solid–liquid pairs: NPT bracketing of the interface velocity),
``free_energy`` (any pair: Frenkel–Ladd / liquid TI at T₀ plus Gibbs–Helmholtz),
``melting`` (solid–solid pairs: the melting points of both solids by coexistence, linked by
Gibbs–Helmholtz, :mod:`phasetune.free_energy.competing_melting`), ``both`` (the two routes
of the pair side by side: coexistence and free energies for solid|liquid, free energies and
melting for solid|solid). The routes are those of the anchor and of the re-measurement
after training, one routine for all three
(:func:`phasetune.free_energy.measurement.measure_transitions`): a coexistence T_m outside
its window is re-centred and measured again (``max_recentre``).
Writes ``transitions.csv``, ``transitions.json`` and ``phase_boundary.png`` (T*(P) with
error bars; plus the interface velocities of the coexistence runs) to the run directory.

Pressures split into separate jobs (``phasetune-measure -m 'pressures=[0],[5]'``, with the
submitit launcher one job each) give the rows one run over all pressures gives: every
box's noise is seeded from its own name (pressure, temperature, replica), not from its
place in the batch. ``phasetune-measure merge OUT RUN_DIR...`` joins such runs' rows into
one table and plot. Within a pressure, ``coexistence.box_share=k/n`` (with a shared
``coexistence.cache_dir``) runs every n-th coexistence box and stores it; a run without the
share then reads all boxes and fits, to the same numbers one run gives.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from phasetune.config_check import ConfigError
from phasetune.configs import restores_process_state, torch_dtype
from phasetune.free_energy.coexistence import BoxesPendingError
from phasetune.free_energy.measurement import measure_transitions
from phasetune.preflight import build_settings, check_common
from phasetune.report.transitions import plot_transitions, write_transitions
from phasetune.settings import AnchorSettings
from phasetune.structures import PHASES
from phasetune.targets import SOLID_PHASES, PhaseStructure, TransitionTarget

log = logging.getLogger(__name__)
METHODS = ("coexistence", "free_energy", "melting", "both")


def _check(cfg: DictConfig) -> tuple[list[float], list[float]]:
    if cfg.method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {cfg.method!r}")
    phases = list(cfg.pair.phases)
    if len(phases) != 2 or any(p not in PHASES for p in phases) or phases[0] == phases[1]:
        raise ValueError(f"pair.phases must be two different phases of {PHASES}, got {phases}")
    solid_liquid = phases[1] == "liquid" and phases[0] in SOLID_PHASES
    solid_solid = "liquid" not in phases
    if cfg.method == "coexistence" and not solid_liquid:
        raise ValueError(
            f"two-phase coexistence needs a solid|liquid pair (phases: [solid, liquid]); "
            f"{phases[0]}|{phases[1]} needs method=free_energy, melting or both"
        )
    if cfg.method == "melting" and not solid_solid:
        raise ValueError(
            "method=melting (melting of the competing solids) is for a solid|solid pair; "
            f"{phases[0]}|{phases[1]} needs method=coexistence, free_energy or both"
        )
    needs_liquid = "liquid" not in cfg.pair.structures or cfg.pair.get("melting_guesses_K") is None
    if cfg.method in ("melting", "both") and solid_solid and needs_liquid:
        raise ValueError(
            "method=melting needs pair.structures.liquid and pair.melting_guesses_K "
            "(one melting-point guess per solid, K)"
        )
    pressures = [float(p) for p in cfg.pressures]
    if not pressures:
        raise ValueError("pressures must list at least one pressure in GPa, e.g. pressures=[0]")
    guesses = cfg.guesses_K if cfg.guesses_K is not None else [cfg.pair.guess_K] * len(pressures)
    guesses = [float(t) for t in guesses]
    if not pressures or len(guesses) != len(pressures):
        raise ValueError(
            f"give one temperature guess per pressure: pressures={pressures}, guesses_K={guesses}"
        )
    return pressures, guesses


def _targets(cfg: DictConfig, pressures: list[float], guesses: list[float]):
    """One transition target of ``cfg.pair`` per pressure (its temperature: the guess)."""
    pair = cfg.pair
    structures = {
        phase: PhaseStructure(
            element=str(pair.element),
            lattice_A=float(spec.lattice_A),
            n_atoms=int(spec.n_atoms),
            c_over_a=spec.get("c_over_a"),
        )
        for phase, spec in pair.structures.items()
    }
    melting = pair.get("melting_guesses_K")
    phase_a, phase_b = pair.phases
    return [
        TransitionTarget(
            name=f"{phase_a}|{phase_b} at {p:g} GPa",
            phase_a=phase_a,
            phase_b=phase_b,
            temperature_K=guess,
            pressure_GPa=p,
            tolerance_K=float(cfg.free_energy.systematic_tolerance_K),
            structures=structures,
            melting_guesses_K=tuple(float(t) for t in melting) if melting else None,
        )
        for p, guess in zip(pressures, guesses, strict=True)
    ]


def measurement_settings(cfg: DictConfig, method: str) -> AnchorSettings:
    """The measurement settings of a ``measure`` config for one route: the same object
    (and the same routine, :func:`phasetune.free_energy.measurement.measure_transitions`)
    as the anchor's."""
    fe = cfg.free_energy
    return AnchorSettings(
        method=method,
        coexistence=instantiate(cfg.coexistence),
        enthalpy=instantiate(fe.enthalpy),
        solid=instantiate(fe.solid),
        liquid=instantiate(fe.liquid),
        liquid_reference_temperature_K=fe.liquid_reference_temperature_K,
        **_scalar_settings(cfg),
    )


def _scalar_settings(cfg: DictConfig) -> dict:
    """The bracketing and Gibbs–Helmholtz numbers of a ``measure`` config (AnchorSettings
    fields), shared by the run and its preflight check."""
    return {
        "window": float(cfg.window),
        "n_temperatures": int(cfg.n_temperatures),
        "n_replicas": int(cfg.n_replicas),
        "max_recentre": int(cfg.max_recentre),
        "enthalpy_temperature_factors": [
            float(f) for f in cfg.free_energy.enthalpy_temperature_factors
        ],
        "systematic_tolerance_K": float(cfg.free_energy.systematic_tolerance_K),
    }


def _routes(cfg: DictConfig) -> list[str]:
    """The measurement routes ``cfg.method`` asks for, in the order they run."""
    if cfg.method != "both":
        return [str(cfg.method)]
    return (
        ["free_energy", "melting"]
        if "liquid" not in cfg.pair.phases
        else ["coexistence", "free_energy"]
    )


@restores_process_state
def measure(cfg: DictConfig, output_dir: str | Path) -> list[dict]:
    """Run the configured route(s) at every pressure; write table, JSON and plot."""
    output_dir = Path(output_dir)
    torch.set_num_threads(int(cfg.threads))
    dtype = torch_dtype(cfg.dtype)
    pressures, guesses = _check(cfg)
    model = instantiate(cfg.model, device=cfg.device, dtype=dtype)
    output_dir.mkdir(parents=True, exist_ok=True)
    targets = _targets(cfg, pressures, guesses)
    rows: list[dict] = []
    for route in _routes(cfg):
        try:
            measured = measure_transitions(
                model,
                targets,
                measurement_settings(cfg, route),
                guesses_K=guesses,
                device=cfg.device,
                dtype=dtype,
            )
        except BoxesPendingError as pending:  # a box_share job: its boxes are stored
            print(pending)
            return []
        rows += [m.details[m.method] for m in measured]
    for row in rows:
        row["model"] = OmegaConf.to_container(cfg.model, resolve=True)
    write_transitions(rows, output_dir)
    if cfg.plot:
        plot_transitions(rows, output_dir / "phase_boundary.png")
    print(f"transitions.csv, transitions.json and phase_boundary.png written to {output_dir}")
    return rows


def preflight_measure(cfg: DictConfig) -> None:
    """Every value of a ``measure`` config checked without running anything (ConfigError)."""
    check_common(cfg)
    try:
        _check(cfg)
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err)) from None
    if cfg.method in ("coexistence", "melting", "both"):
        build_settings("coexistence", cfg.coexistence)
    if cfg.method in ("free_energy", "melting", "both"):
        for part in ("solid", "liquid", "enthalpy"):
            build_settings(f"free_energy.{part}", cfg.free_energy[part])
    try:
        AnchorSettings(method="coexistence", **_scalar_settings(cfg))
    except (ValueError, TypeError) as err:
        raise ConfigError(str(err).replace("anchor ", "")) from None


def merge_runs(run_dirs: list[str | Path], output_dir: str | Path) -> list[dict]:
    """The rows of several runs of one model (``transitions.json``), in one table and plot,
    ordered by method and pressure; a (method, pressure) measured twice is refused."""
    rows: list[dict] = []
    for run in map(Path, run_dirs):
        path = run / "transitions.json"
        if not path.is_file():
            raise FileNotFoundError(f"{run}: no transitions.json (not a finished measure run?)")
        rows += json.loads(path.read_text())
    if not rows:
        raise ValueError("the runs hold no results")
    models = {json.dumps(r.get("model"), sort_keys=True) for r in rows}
    if len(models) > 1:
        raise ValueError("the runs measured different models; merge runs of one model only")
    seen = [(r["method"], r["pressure_GPa"]) for r in rows]
    twice = sorted({k for k in seen if seen.count(k) > 1})
    if twice:
        raise ValueError(f"measured in more than one run: {twice}")
    rows.sort(key=lambda r: (METHODS.index(r["method"]), r["pressure_GPa"]))
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_transitions(rows, output_dir)
    plot_transitions(rows, output_dir / "phase_boundary.png")
    return rows


def merge_main(argv: list[str] | None = None) -> int:
    """``phasetune-measure merge OUT RUN_DIR...``."""
    parser = argparse.ArgumentParser(
        prog="phasetune-measure merge",
        description="join the results of measure runs split by pressure into one table and plot",
    )
    parser.add_argument("out", help="directory to write transitions.csv/.json and the plot to")
    parser.add_argument("runs", nargs="+", help="run directories of phasetune-measure")
    args = parser.parse_args(argv)
    try:
        rows = merge_runs(args.runs, args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"phasetune-measure merge: {err}", file=sys.stderr)
        return 2
    print(f"{len(rows)} results from {len(args.runs)} runs written to {args.out}")
    return 0
