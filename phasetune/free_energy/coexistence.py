"""Melting temperature by two-phase coexistence: NPT bracketing of the interface velocity.

A solid supercell is elongated along z and its upper half melted while the lower half is
held fixed; the resulting solid|liquid box (two interfaces through the periodic boundary)
then runs in NPT at several temperatures T_i around a guess, each with independent replicas,
all in ONE batch. The cell axes relax independently (anisotropic C-rescale), so the solid
sets the cross-section and the pressure is hydrostatic.

Below T_m the solid grows, above it melts. The solid fraction x_s(t) of each box comes from
the per-atom phase classification (``phase_check``); its slope gives the interface velocity

    v = (L_z / 2) dx_s/dt        (two interfaces; v > 0: the solid grows),

which is linear in T near T_m: v(T) = a + b T, and T_m = −a/b. Each replica's temperatures
give one T_m; the error is the larger of the replicas' spread, σ = std / √R, and the
line fit's own error through every box (delta method on −a/b).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms
from torch_sim.models.interface import ModelInterface

from phasetune.free_energy.coexistence_boxes import measure_boxes
from phasetune.free_energy.coexistence_cache import box_key, coexistence_keys, load_box, store_box
from phasetune.free_energy.interface_velocity import (
    TRANSFORMED_FRACTION,
    converted_fraction,
    fit_untransformed,
)
from phasetune.free_energy.two_phase_box import (
    CoexistenceSettings,
    static_compressibility_per_GPa,
)
from phasetune.structures import PHASES

__all__ = [
    "TRANSFORMED_FRACTION",
    "BoxesPendingError",
    "CoexistenceResult",
    "CoexistenceSettings",
    "converted_fraction",
    "fit_untransformed",
    "melting_temperatures_coexistence",
]

log = logging.getLogger(__name__)

SOLID_PHASES = tuple(p for p in PHASES if p != "liquid")


@dataclass
class CoexistenceResult:
    """Interface velocities and the melting temperature at one pressure.

    ``temperatures_K``, ``replica``, ``velocity_A_per_ps`` have one entry per box;
    ``solid_fraction`` is [n_frames, n_boxes], ``time_ps`` [n_frames].
    """

    solid_phase: str
    pressure_GPa: float
    temperatures_K: np.ndarray
    replica: np.ndarray
    velocity_A_per_ps: np.ndarray
    time_ps: np.ndarray
    solid_fraction: np.ndarray
    melting_temperature_K: float
    error_K: float
    replica_melting_temperatures_K: np.ndarray
    bracketed: bool
    n_atoms: int
    #: production averages per box: a check that each box sat at its (T, P)
    mean_temperature_K: np.ndarray | None = None
    mean_pressure_GPa: np.ndarray | None = None
    #: temperatures where some replicas' solids grew and others melted, and whether that
    #: is more than chance (:mod:`~phasetune.free_energy.interface_velocity`)
    disagreement_K: list[float] = field(default_factory=list)
    replicas_disagree: bool = False
    #: per box: fraction of atoms the solid lost to another crystal (:func:`converted_fraction`)
    #: and whether that makes it a transformed box, left out of the fit
    converted_fraction: np.ndarray | None = None
    transformed: np.ndarray | None = None
    #: per box σ(v) from time blocks, and the σ(T_m) it gives (one of the error's candidates)
    velocity_error_A_per_ps: np.ndarray | None = None
    velocity_noise_K: float = math.nan
    extra: dict = field(default_factory=dict)

    @property
    def transformed_K(self) -> list[float]:
        """Temperatures with a transformed box."""
        if self.transformed is None:
            return []
        return sorted({float(t) for t in self.temperatures_K[self.transformed]})

    def describe(self) -> str:
        status = "bracketed" if self.bracketed else "EXTRAPOLATED: not a result (re-centre)"
        text = (
            f"{self.solid_phase}|liquid at {self.pressure_GPa:g} GPa: T_m = "
            f"{self.melting_temperature_K:.1f} ± {self.error_K:.1f} K ({status}; "
            f"{len(set(self.replica.tolist()))} replicas × "
            f"{len(set(self.temperatures_K.tolist()))} temperatures, {self.n_atoms} atoms/box)"
        )
        if self.replicas_disagree:
            text += (
                "; REPLICAS DISAGREE (solid grows in one, melts in another) at "
                + ", ".join(f"{t:.0f}" for t in self.disagreement_K)
                + " K: the boxes are too small along z or in cross-section for a bulk T_m"
            )
        if self.transformed_K:
            text += (
                f"; the {self.solid_phase} SOLID TRANSFORMED into another crystal (up to "
                f"{float(np.max(self.converted_fraction)):.0%} of the atoms) at "
                + ", ".join(f"{t:.0f}" for t in self.transformed_K)
                + " K: those boxes are left out of the fit (they measure that crystal's growth)"
            )
        return text

    def as_dict(self) -> dict:
        return {
            "method": "coexistence",
            "solid_phase": self.solid_phase,
            "pressure_GPa": self.pressure_GPa,
            "melting_temperature_K": self.melting_temperature_K,
            "error_K": self.error_K,
            "bracketed": self.bracketed,
            "n_atoms": self.n_atoms,
            "temperatures_K": self.temperatures_K.tolist(),
            "velocity_A_per_ps": self.velocity_A_per_ps.tolist(),
            "velocity_error_A_per_ps": (
                None
                if self.velocity_error_A_per_ps is None
                else self.velocity_error_A_per_ps.tolist()
            ),
            "velocity_noise_K": self.velocity_noise_K,
            "replica": self.replica.tolist(),
            "replica_melting_temperatures_K": self.replica_melting_temperatures_K.tolist(),
            "disagreement_K": list(self.disagreement_K),
            "replicas_disagree": self.replicas_disagree,
            "transformed_K": self.transformed_K,
            "converted_fraction": (
                None if self.converted_fraction is None else self.converted_fraction.tolist()
            ),
        }


def _with_compressibility(
    settings: CoexistenceSettings, model: ModelInterface, atoms: Atoms
) -> CoexistenceSettings:
    if settings.compressibility_per_GPa is not None:
        return settings
    beta = 2.0 * static_compressibility_per_GPa(model, atoms)
    log.info("barostat coupling β_T = %.3g /GPa (twice the static lattice value)", beta)
    return dataclasses.replace(settings, compressibility_per_GPa=beta)


class BoxesPendingError(RuntimeError):
    """A ``box_share`` job stored its boxes; the fit waits for the other shares' boxes."""


def melting_temperatures_coexistence(
    model: ModelInterface,
    solid_atoms: Atoms,
    *,
    solid_phase: str,
    pressures_GPa: Sequence[float],
    guesses_K: Sequence[float],
    window: float = 0.05,
    n_temperatures: int = 3,
    n_replicas: int = 2,
    settings: CoexistenceSettings | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> list[CoexistenceResult]:
    """T_m(P) for each pressure by NPT bracketing, every box of every pressure in one batch.

    With ``settings.cache_dir`` each box's numbers are stored when its batch ends and a stored
    box is read instead of run; with ``settings.box_share = "k/n"`` only the boxes i ≡ k
    (mod n) are run and stored, and :class:`BoxesPendingError` says so instead of a result: a
    run without a share reads every box and fits
    (:mod:`~phasetune.free_energy.coexistence_cache`).

    Args:
        model: the potential (a torch-sim model; pass a sampling copy of a trainable one).
        solid_atoms: the solid's orthogonal supercell (e.g. ``build_structure``); its
            lattice is rescaled to the solid's NPT average at each (guess, P).
        solid_phase: ``fcc``, ``bcc`` or ``hcp``.
        pressures_GPa, guesses_K: one T_m guess per pressure.
        window: temperatures span guess·(1 ± window).
        n_temperatures, n_replicas: boxes per pressure = n_temperatures × n_replicas.
    """
    settings = settings or CoexistenceSettings()
    if solid_phase not in SOLID_PHASES:
        raise ValueError(f"solid_phase must be one of {', '.join(SOLID_PHASES)}")
    pressures = [float(p) for p in pressures_GPa]
    guesses = [float(t) for t in guesses_K]
    if not pressures or len(pressures) != len(guesses):
        raise ValueError("give one melting-temperature guess per pressure")
    if min(guesses) <= 0:
        raise ValueError(f"temperature guesses must be > 0 K, got {guesses}")
    if not 0 < window < 0.5:
        raise ValueError(f"window must lie in (0, 0.5), got {window}")
    if n_temperatures < 2 or n_replicas < 1:
        raise ValueError("need n_temperatures >= 2 and n_replicas >= 1")
    device = torch.device(device) if device is not None else model.device

    # every box: (pressure index, T, replica, name); a box's name seeds its noise, so its
    # numbers do not depend on the other boxes of its batch
    specs = [
        (k, float(t), r, f"{solid_phase}|liquid at {p:g} GPa, {float(t):.8g} K, replica {r}")
        for k, (p, guess) in enumerate(zip(pressures, guesses, strict=True))
        for t in np.linspace(guess * (1 - window), guess * (1 + window), n_temperatures)
        for r in range(n_replicas)
    ]
    records: list[dict | None] = [None] * len(specs)
    keys: list[str] = []
    if settings.cache_dir is not None:
        pressure_keys = coexistence_keys(
            model,
            solid_atoms,
            solid_phase=solid_phase,
            pressures_GPa=pressures,
            guesses_K=guesses,
            window=window,
            max_recentre=0,  # the boxes of a window do not depend on later re-centring
            n_temperatures=n_temperatures,
            n_replicas=n_replicas,
            settings=settings,
            dtype=dtype,
            device=device,
        )
        keys = [box_key(pressure_keys[k], name) for k, _, _, name in specs]
        records = [load_box(settings.cache_dir, key) for key in keys]
    share = settings.share()
    todo = [
        i
        for i, record in enumerate(records)
        if record is None and (share is None or i % share[1] == share[0])
    ]
    if todo:
        measured = measure_boxes(
            model,
            solid_atoms,
            solid_phase,
            [specs[i] for i in todo],
            pressures,
            guesses,
            _with_compressibility(settings, model, solid_atoms),
            device,
            dtype,
        )
        for i, record in zip(todo, measured, strict=True):
            records[i] = record
            if keys:
                store_box(settings.cache_dir, keys[i], record)
    if share is not None:  # a share job stores its boxes and stops, whoever finishes last
        missing = sum(record is None for record in records)
        raise BoxesPendingError(
            f"share {settings.box_share}: {len(todo)} coexistence box(es) measured and stored "
            f"in {settings.cache_dir}, {missing} of {len(specs)} still missing. When every "
            "share has run, run the same command without coexistence.box_share: it reads the "
            "boxes and fits"
        )
    return [
        _fit_pressure(
            solid_phase,
            p,
            [specs[i] for i in range(len(specs)) if specs[i][0] == k],
            [records[i] for i in range(len(specs)) if specs[i][0] == k],
        )
        for k, p in enumerate(pressures)
    ]


def _fit_pressure(solid_phase: str, pressure_GPa: float, specs, records) -> CoexistenceResult:
    """T_m at one pressure from its boxes' records (:func:`fit_untransformed`)."""
    t_k = np.array([t for _, t, _, _ in specs])
    r_k = np.array([r for _, _, r, _ in specs])

    def column(name):
        return np.concatenate([record[name] for record in records])

    v_k, errors_k, transformed = (
        column("velocity_A_per_ps"),
        column("velocity_error_A_per_ps"),
        column("transformed"),
    )
    fit = fit_untransformed(t_k, r_k, v_k, transformed, errors_k)
    result = CoexistenceResult(
        solid_phase=solid_phase,
        pressure_GPa=pressure_GPa,
        temperatures_K=t_k,
        replica=r_k,
        velocity_A_per_ps=v_k,
        velocity_error_A_per_ps=errors_k,
        velocity_noise_K=fit.velocity_noise_K if fit else math.nan,
        time_ps=records[0]["time_ps"],
        solid_fraction=np.stack([record["solid_fraction"] for record in records], axis=1),
        melting_temperature_K=fit.melting_temperature_K if fit else math.nan,
        error_K=fit.error_K if fit else math.nan,
        replica_melting_temperatures_K=(
            fit.replica_melting_temperatures_K if fit else np.full(len(set(r_k)), math.nan)
        ),
        bracketed=fit.bracketed if fit else False,
        n_atoms=int(records[0]["n_atoms"]),
        disagreement_K=fit.disagreement_K if fit else [],
        replicas_disagree=fit.replicas_disagree if fit else False,
        mean_temperature_K=column("mean_temperature_K"),
        mean_pressure_GPa=column("mean_pressure_GPa"),
        converted_fraction=column("converted_fraction"),
        transformed=transformed,
    )
    if not result.bracketed or result.replicas_disagree or result.transformed_K:
        log.warning("%s", result.describe())
    return result
