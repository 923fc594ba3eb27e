"""The melting point bracketed: coexistence re-centred until its root lies inside the window.

:func:`melting_temperatures_coexistence` measures T_m(P) from boxes at guess·(1 ± window);
a root outside that window is an extrapolation, not a result. :func:`melting_temperatures_bracketed`
measures again on a window centred where the last run pointed (:func:`recentred_guess`) and
keeps finished results in a cache directory when the settings name one
(:mod:`~phasetune.free_energy.coexistence_cache`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from ase import Atoms
from torch_sim.models.interface import ModelInterface

from phasetune.free_energy import coexistence
from phasetune.free_energy.coexistence import CoexistenceResult, CoexistenceSettings
from phasetune.free_energy.coexistence_cache import coexistence_keys, load_result, store_result

log = logging.getLogger(__name__)


def recentred_guess(result: CoexistenceResult, guess_K: float, window: float) -> float:
    """The next window's centre for a run that did not bracket its T_m.

    The extrapolated root where there is one, else a step of two windows in the direction
    the interfaces moved (solids grew: T_m lies above); never more than three windows away.
    """
    t_m = result.melting_temperature_K
    if not (math.isfinite(t_m) and t_m > 0):
        grew = float(np.mean(result.velocity_A_per_ps)) > 0
        t_m = guess_K * (1 + 2 * window if grew else 1 - 2 * window)
    return float(np.clip(t_m, guess_K * (1 - 3 * window), guess_K * (1 + 3 * window)))


def melting_temperatures_bracketed(
    model: ModelInterface,
    solid_atoms: Atoms,
    *,
    solid_phase: str,
    pressures_GPa: Sequence[float],
    guesses_K: Sequence[float],
    window: float = 0.05,
    max_recentre: int = 2,
    n_temperatures: int = 3,
    n_replicas: int = 2,
    settings: CoexistenceSettings | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> list[CoexistenceResult]:
    """:func:`~phasetune.free_energy.coexistence.melting_temperatures_coexistence`, re-run on
    a new window where a T_m was not bracketed (:func:`recentred_guess`), up to
    ``max_recentre`` times.

    An extrapolated root is not a result: a run still unbracketed after the last re-centring
    keeps ``bracketed=False`` and says so in :meth:`CoexistenceResult.describe`. With
    ``settings.cache_dir`` a pressure whose result is stored there is read, not measured, and
    every newly measured one is stored (:mod:`~phasetune.free_energy.coexistence_cache`).
    """
    settings = settings or CoexistenceSettings()
    pressures = [float(p) for p in pressures_GPa]
    guesses = [float(t) for t in guesses_K]
    results: list[CoexistenceResult | None] = [None] * len(pressures)
    keys: list[str] = []
    if settings.cache_dir is not None:
        keys = coexistence_keys(
            model,
            solid_atoms,
            solid_phase=solid_phase,
            pressures_GPa=pressures,
            guesses_K=guesses,
            window=window,
            max_recentre=max_recentre,
            n_temperatures=n_temperatures,
            n_replicas=n_replicas,
            settings=settings,
            dtype=dtype,
            device=device if device is not None else model.device,
        )
        results = [load_result(settings.cache_dir, key, CoexistenceResult) for key in keys]
    pending = [k for k, r in enumerate(results) if r is None]
    for attempt in range(max_recentre + 1):
        if not pending:
            break
        batch = coexistence.melting_temperatures_coexistence(
            model,
            solid_atoms,
            solid_phase=solid_phase,
            pressures_GPa=[pressures[k] for k in pending],
            guesses_K=[guesses[k] for k in pending],
            window=window,
            n_temperatures=n_temperatures,
            n_replicas=n_replicas,
            settings=settings,
            device=device,
            dtype=dtype,
        )
        still = []
        for k, result in zip(pending, batch, strict=True):
            results[k] = result
            # where every box transformed, another window cannot help
            hopeless = result.transformed is not None and bool(result.transformed.all())
            if not result.bracketed and not hopeless and attempt < max_recentre:
                guesses[k] = recentred_guess(result, guesses[k], window)
                still.append(k)
            elif keys:
                store_result(settings.cache_dir, keys[k], result)
        if still:
            log.warning(
                "re-centring %d coexistence run(s) on %s K", len(still), [guesses[k] for k in still]
            )
        pending = still
    return [r for r in results if r is not None]
