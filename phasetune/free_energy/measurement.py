"""A model's transition temperatures at given pressures, by the route the settings name.

One routine for the anchor (:mod:`phasetune.learn.anchor`), the re-measurement after
training and ``phasetune-measure``: :func:`measure_transitions` takes transition targets
(phases, structures, pressure) and :class:`~phasetune.settings.AnchorSettings` and runs

* ``coexistence`` (solid|liquid): two-phase boxes at guess·(1 ± window), one torch-sim batch
  per solid structure, re-centred on the extrapolated T_m and measured again when it falls
  outside the window (at most ``max_recentre`` times);
* ``free_energy`` (any pair): Frenkel–Ladd / liquid TI at the guess, Gibbs–Helmholtz with
  the enthalpies at guess × ``enthalpy_temperature_factors``; its error is the statistical
  and the estimated systematic error together;
* ``melting`` (solid|solid): the melting points of both solids by coexistence, linked by
  Gibbs–Helmholtz (Mendelev's route);
* ``auto``: coexistence for solid|liquid targets, free energies for the others.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from phasetune.free_energy.bracketing import melting_temperatures_bracketed
from phasetune.free_energy.competing_melting import transition_from_melting
from phasetune.free_energy.transition import transition_from_free_energies
from phasetune.potentials.base import sampling_copy
from phasetune.settings import AnchorSettings
from phasetune.targets import TransitionTarget

log = logging.getLogger(__name__)


@dataclass
class TransitionMeasurement:
    """A model's transition temperature at one pressure, with the enthalpies around it."""

    target: str
    pressure_GPa: float
    transition_temperature_K: float
    error_K: float
    method: str
    bracketed: bool = True
    details: dict = field(default_factory=dict)


def measure_transitions(
    model: torch.nn.Module,
    targets: Sequence[TransitionTarget],
    settings: AnchorSettings,
    *,
    guesses_K: Sequence[float] | None = None,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> list[TransitionMeasurement]:
    """The model's T* at each target's pressure, measured independently (no reweighting).

    Solid|liquid targets with ``method="coexistence"`` sharing a structure run in one batch;
    a result outside its window is re-centred on the extrapolated T* and measured again.
    """
    frozen = sampling_copy(model)
    guesses = list(guesses_K) if guesses_K is not None else [t.temperature_K for t in targets]
    out: list[TransitionMeasurement | None] = [None] * len(targets)
    by_coexistence, by_free_energy, by_melting = [], [], []
    for k, target in enumerate(targets):
        if settings.method == "melting" and not target.is_melting:
            if target.melting_guesses_K is None or "liquid" not in target.structures:
                raise ValueError(
                    f"target {target.name}: anchor method=melting needs structures.liquid "
                    "and melting_guesses_K in the target"
                )
            by_melting.append(k)
        elif settings.method == "free_energy" or (
            settings.method == "auto" and not target.is_melting
        ):
            by_free_energy.append(k)
        elif target.is_melting:
            by_coexistence.append(k)
        else:
            raise ValueError(
                f"target {target.name}: {target.phase_a}|{target.phase_b} is not a "
                "solid|liquid pair; use anchor method=free_energy (or auto)"
            )
    _measure_by_coexistence(frozen, targets, by_coexistence, guesses, out, settings, device, dtype)
    for k in by_free_energy:
        target = targets[k]
        structures = {phase: target.atoms(phase) for phase in target.phases}
        guess = guesses[k]
        result = transition_from_free_energies(
            frozen,
            structures,
            pressure_GPa=target.pressure_GPa,
            reference_temperature_K=guess,
            enthalpy_temperatures_K=[f * guess for f in settings.enthalpy_temperature_factors],
            solid_settings=settings.solid,
            liquid_settings=settings.liquid,
            enthalpy_settings=settings.enthalpy,
            liquid_reference_temperature_K=settings.liquid_reference_temperature_K,
            systematic_tolerance_K=settings.systematic_tolerance_K,
            device=device,
            dtype=dtype,
        )
        # statistical and estimated systematic error together (dissipation, box size)
        out[k] = _measurement(
            target, result, result.total_error_K, math.isfinite(result.transition_temperature_K)
        )
    for k in by_melting:
        target = targets[k]
        result = transition_from_melting(
            frozen,
            {phase: target.atoms(phase) for phase in target.phases},
            target.atoms("liquid"),
            pressure_GPa=target.pressure_GPa,
            transition_guess_K=guesses[k],
            melting_guesses_K=list(target.melting_guesses_K),
            coexistence_settings=settings.coexistence,
            enthalpy_settings=settings.enthalpy,
            window=settings.window,
            max_recentre=settings.max_recentre,
            n_temperatures=settings.n_temperatures,
            n_replicas=settings.n_replicas,
            device=device,
            dtype=dtype,
        )
        bracketed = bool(result.melting_a.bracketed and result.melting_b.bracketed)
        out[k] = _measurement(target, result, result.error_K, bracketed)
    return [m for m in out if m is not None]


def _measurement(target, result, error_K: float, bracketed: bool) -> TransitionMeasurement:
    """A free-energy or melting-route result as the anchor's measurement (and its log line)."""
    log.info("%s: %s", target.name, result.describe())
    row = result.as_dict()
    return TransitionMeasurement(
        target=target.name,
        pressure_GPa=target.pressure_GPa,
        transition_temperature_K=result.transition_temperature_K,
        error_K=error_K,
        method=row["method"],
        bracketed=bracketed,
        details={row["method"]: row},
    )


def _measure_by_coexistence(
    frozen, targets, indices, guesses, out, settings: AnchorSettings, device, dtype
) -> None:
    """Coexistence T_m of the melting targets ``indices`` (one batch per solid structure)."""
    groups: dict[str, list[int]] = {}
    for k in indices:
        target = targets[k]
        key = json.dumps(target.as_dict()["structures"][target.phase_a], sort_keys=True)
        groups.setdefault(target.phase_a + key, []).append(k)
    for members in groups.values():
        solid = targets[members[0]]
        results = melting_temperatures_bracketed(
            frozen,
            solid.atoms(solid.phase_a),
            solid_phase=solid.phase_a,
            pressures_GPa=[targets[k].pressure_GPa for k in members],
            guesses_K=[guesses[k] for k in members],
            window=settings.window,
            max_recentre=settings.max_recentre,
            n_temperatures=settings.n_temperatures,
            n_replicas=settings.n_replicas,
            settings=settings.coexistence,
            device=device,
            dtype=dtype,
        )
        for k, result in zip(members, results, strict=True):
            log.info("%s: %s", targets[k].name, result.describe())
            out[k] = TransitionMeasurement(
                target=targets[k].name,
                pressure_GPa=targets[k].pressure_GPa,
                transition_temperature_K=result.melting_temperature_K,
                error_K=result.error_K,
                method="coexistence",
                bracketed=result.bracketed,
                details={"coexistence": result.as_dict()},
            )
