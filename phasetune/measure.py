"""``phasetune-measure``: transition temperatures of a potential at several pressures.

    phasetune-measure model=lj_argon pair=fcc_liquid pressures=[0,0.05]
    phasetune-measure pair=fcc_liquid method=both          # coexistence and free energies

Methods: ``coexistence`` (solid–liquid pairs: NPT bracketing of the interface velocity),
``free_energy`` (any pair: Frenkel–Ladd / liquid TI at T₀ plus Gibbs–Helmholtz),
``melting`` (solid–solid pairs: the melting points of both solids by coexistence, linked by
Gibbs–Helmholtz, :mod:`phasetune.free_energy.competing_melting`), ``both`` (the two routes
of the pair side by side: coexistence and free energies for solid|liquid, free energies and
melting for solid|solid).
Writes ``transitions.csv``, ``transitions.json`` and ``phase_boundary.png`` (T*(P) with
error bars; plus the interface velocities of the coexistence runs) to the run directory.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from phasetune.config_check import ConfigError
from phasetune.configs import restores_torch_threads, torch_dtype
from phasetune.free_energy.coexistence import SOLID_PHASES, melting_temperatures_bracketed
from phasetune.free_energy.competing_melting import transition_from_melting
from phasetune.free_energy.transition import transition_from_free_energies
from phasetune.potentials.base import sampling_copy
from phasetune.preflight import build_settings, check_common
from phasetune.structures import PHASES, build_structure

log = logging.getLogger(__name__)
METHODS = ("coexistence", "free_energy", "melting", "both")


def _structure(pair: DictConfig, phase: str):
    spec = pair.structures[phase]
    return build_structure(
        phase,
        element=pair.element,
        lattice_A=float(spec.lattice_A),
        n_atoms=int(spec.n_atoms),
        c_over_a=spec.get("c_over_a"),
    )


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


def write_transitions(rows: list[dict], output_dir: Path) -> None:
    """transitions.json (everything) and transitions.csv (one line per pressure and method)."""
    with open(output_dir / "transitions.json", "w") as handle:
        json.dump(rows, handle, indent=2, default=float)
    keys = (
        "method",
        "pressure_GPa",
        "transition_temperature_K",
        "error_K",
        "systematic_error_K",
        "bracketed",
    )
    with open(output_dir / "transitions.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(keys)
        for row in rows:
            t = row.get("transition_temperature_K", row.get("melting_temperature_K"))
            writer.writerow(
                [
                    row["method"],
                    row["pressure_GPa"],
                    t,
                    row["error_K"],
                    row.get("systematic_error_K", ""),
                    row.get("bracketed", ""),
                ]
            )


def plot_transitions(rows: list[dict], coexistence: list, path: Path) -> Path:
    """Phase boundary T*(P) with error bars per method, and interface velocities v(T)."""
    from matplotlib.figure import Figure  # no global backend: notebooks keep theirs

    n_panels = 2 if coexistence else 1
    fig = Figure(figsize=(5.5 * n_panels, 4.2))
    axes = fig.subplots(1, n_panels, squeeze=False)
    ax = axes[0, 0]
    for method, marker in (("coexistence", "o"), ("free_energy", "s"), ("melting", "D")):
        sel = [r for r in rows if r["method"] == method]
        if sel:
            p = [r["pressure_GPa"] for r in sel]
            t = [r.get("transition_temperature_K", r.get("melting_temperature_K")) for r in sel]
            # free energies: statistical and estimated systematic error together
            yerr = [r.get("total_error_K", r["error_K"]) for r in sel]
            ax.errorbar(p, t, yerr=yerr, fmt=marker, capsize=4, label=method)
    ax.set_xlabel("pressure (GPa)")
    ax.set_ylabel("transition temperature (K)")
    ax.set_title("phase boundary")
    ax.legend()
    if coexistence:
        ax = axes[0, 1]
        for result in coexistence:
            line = ax.plot(result.temperatures_K, result.velocity_A_per_ps, "o", alpha=0.7)[0]
            t = np.linspace(result.temperatures_K.min(), result.temperatures_K.max(), 10)
            b, a = np.polyfit(result.temperatures_K, result.velocity_A_per_ps, 1)
            label = f"{result.solid_phase}|liquid, {result.pressure_GPa:g} GPa"
            ax.plot(t, a + b * t, "-", color=line.get_color(), label=label)
            ax.axvline(result.melting_temperature_K, color=line.get_color(), ls=":")
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_xlabel("temperature (K)")
        ax.set_ylabel("interface velocity (Å/ps, > 0: solid grows)")
        ax.set_title("two-phase coexistence")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return path


@restores_torch_threads
def measure(cfg: DictConfig, output_dir: str | Path) -> list[dict]:
    """Run the configured method(s) at every pressure; write table, JSON and plot."""
    output_dir = Path(output_dir)
    torch.set_num_threads(int(cfg.threads))
    dtype = torch_dtype(cfg.dtype)
    pressures, guesses = _check(cfg)
    model = sampling_copy(instantiate(cfg.model, device=cfg.device, dtype=dtype))
    output_dir.mkdir(parents=True, exist_ok=True)
    phase_a, phase_b = cfg.pair.phases
    rows: list[dict] = []
    coexistence = []
    solid_solid = "liquid" not in (phase_a, phase_b)
    if cfg.method == "coexistence" or (cfg.method == "both" and not solid_solid):
        coexistence = melting_temperatures_bracketed(
            model,
            _structure(cfg.pair, phase_a),
            solid_phase=phase_a,
            pressures_GPa=pressures,
            guesses_K=guesses,
            window=float(cfg.window),
            n_temperatures=int(cfg.n_temperatures),
            n_replicas=int(cfg.n_replicas),
            settings=instantiate(cfg.coexistence),
            device=cfg.device,
            dtype=dtype,
        )
        for result in coexistence:
            print(result.describe())
            rows.append(result.as_dict())
    if cfg.method in ("free_energy", "both"):
        fe = cfg.free_energy
        for p, guess in zip(pressures, guesses, strict=True):
            result = transition_from_free_energies(
                model,
                {phase_a: _structure(cfg.pair, phase_a), phase_b: _structure(cfg.pair, phase_b)},
                pressure_GPa=p,
                reference_temperature_K=guess,
                enthalpy_temperatures_K=[guess * f for f in fe.enthalpy_temperature_factors],
                solid_settings=instantiate(fe.solid),
                liquid_settings=instantiate(fe.liquid),
                enthalpy_settings=instantiate(fe.enthalpy),
                liquid_reference_temperature_K=fe.liquid_reference_temperature_K,
                systematic_tolerance_K=float(fe.systematic_tolerance_K),
                device=cfg.device,
                dtype=dtype,
            )
            print(result.describe())
            rows.append(result.as_dict())
    if cfg.method == "melting" or (cfg.method == "both" and solid_solid):
        for p, guess in zip(pressures, guesses, strict=True):
            result = transition_from_melting(
                model,
                {phase_a: _structure(cfg.pair, phase_a), phase_b: _structure(cfg.pair, phase_b)},
                _structure(cfg.pair, "liquid"),
                pressure_GPa=p,
                transition_guess_K=guess,
                melting_guesses_K=[float(t) for t in cfg.pair.melting_guesses_K],
                coexistence_settings=instantiate(cfg.coexistence),
                enthalpy_settings=instantiate(cfg.free_energy.enthalpy),
                window=float(cfg.window),
                n_temperatures=int(cfg.n_temperatures),
                n_replicas=int(cfg.n_replicas),
                device=cfg.device,
                dtype=dtype,
            )
            print(result.describe())
            coexistence += [result.melting_a, result.melting_b]
            rows.append(result.as_dict())
    for row in rows:
        row["model"] = OmegaConf.to_container(cfg.model, resolve=True)
    write_transitions(rows, output_dir)
    if cfg.plot:
        plot_transitions(rows, coexistence, output_dir / "phase_boundary.png")
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
