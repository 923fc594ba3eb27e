"""Finished coexistence results on disk, so that one melting point is measured once.

A coexistence run is fixed by its inputs: the model (:func:`model_fingerprint`), the solid's
supercell, the pressure, the guess, the window, the boxes per pressure and every MD setting;
its boxes are seeded by their names, so the same inputs give the same boxes whatever else is
in the batch. With ``CoexistenceSettings.cache_dir`` set, each finished T_m(P) is written
there as ``coexistence_<key>.json`` (``key``: a hash of those inputs), and a later run with
the same inputs reads it instead of measuring. Uses: the melting route of a solid|solid pair
(:mod:`phasetune.free_energy.competing_melting`) reuses the solid|liquid run of the same
crystal; a ``phasetune-measure`` run stopped after its coexistence stage picks up there.

Single boxes are stored too (``boxes/<key>.json`` in the same directory, :func:`store_box`): a box's
numbers depend on its name and the run's inputs only, so a pressure's boxes can be measured
by separate jobs (``CoexistenceSettings.box_share``) and fitted by a run that reads them all,
as if one run had measured them.

Not part of the key: ``progress``, ``cache_dir``, ``box_share`` and the CPU thread count (another
thread count gives another trajectory of the same ensemble: a valid measurement, not the
same bits). Another seed (``coexistence.seed``) is another key, so an independent repeat is
one override away. JSON is written through a temporary file, so a crash never leaves half
a result.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ase import Atoms

from phasetune.potentials.fingerprint import model_fingerprint

log = logging.getLogger(__name__)

#: bumped when a cached result's content changes meaning, so that older files are not read
CACHE_FORMAT = 1
#: settings that do not change what a run measures
NOT_PHYSICS = ("progress", "cache_dir", "box_share")


def coexistence_key(
    model: torch.nn.Module,
    solid_atoms: Atoms,
    *,
    pressure_GPa: float,
    guess_K: float,
    **inputs,
) -> str:
    """24 hex digits of sha256 over everything that fixes one pressure's coexistence result
    (``inputs``: as for :func:`coexistence_keys`)."""
    return coexistence_keys(
        model, solid_atoms, pressures_GPa=[pressure_GPa], guesses_K=[guess_K], **inputs
    )[0]


def coexistence_keys(
    model: torch.nn.Module,
    solid_atoms: Atoms,
    *,
    solid_phase: str,
    pressures_GPa: Sequence[float],
    guesses_K: Sequence[float],
    window: float,
    max_recentre: int,
    n_temperatures: int,
    n_replicas: int,
    settings,
    dtype: torch.dtype,
    device: torch.device | str,
) -> list[str]:
    """:func:`coexistence_key` of each (pressure, guess), the model fingerprinted once."""
    physics = {k: v for k, v in dataclasses.asdict(settings).items() if k not in NOT_PHYSICS}
    solid = {
        "numbers": solid_atoms.numbers.tolist(),
        "positions": solid_atoms.positions.tolist(),
        "cell": solid_atoms.cell.array.tolist(),
        "pbc": solid_atoms.pbc.tolist(),
        "masses": solid_atoms.get_masses().tolist(),
    }
    fingerprint = model_fingerprint(model)
    keys = []
    for pressure, guess in zip(pressures_GPa, guesses_K, strict=True):
        payload = [
            CACHE_FORMAT,
            fingerprint,
            solid_phase,
            solid,
            float(pressure),
            float(guess),
            float(window),
            int(max_recentre),
            int(n_temperatures),
            int(n_replicas),
            physics,
            str(dtype),
            torch.device(device).type,
        ]
        keys.append(hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24])
    return keys


def _path(cache_dir: str | os.PathLike, key: str) -> Path:
    return Path(cache_dir) / f"coexistence_{key}.json"


def _to_json(value):
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_to_json(v) for v in value]
    return value


def _from_json(value):
    if isinstance(value, dict) and "__array__" in value:
        return np.asarray(value["__array__"], dtype=value["dtype"])
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def store_result(cache_dir: str | os.PathLike, key: str, result) -> Path:
    """Write the dataclass ``result`` (numpy arrays kept exactly, NaN as NaN) under ``key``."""
    path = _path(cache_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = {f.name: _to_json(getattr(result, f.name)) for f in dataclasses.fields(result)}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"format": CACHE_FORMAT, "result": fields}))
    tmp.replace(path)
    return path


def load_result(cache_dir: str | os.PathLike, key: str, cls: type):
    """The ``cls`` instance stored under ``key``, or None (none stored, or an older format)."""
    path = _path(cache_dir, key)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("format") != CACHE_FORMAT:
        log.info("%s: an older cache format, measured again", path)
        return None
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: _from_json(v) for k, v in data["result"].items() if k in names}
    log.info("coexistence result from the cache %s", path)
    return cls(**values)


def box_key(pressure_key: str, name: str) -> str:
    """Key of one coexistence box: its pressure's key and its name (T, replica)."""
    return hashlib.sha256(f"{pressure_key}|{name}".encode()).hexdigest()[:24]


def _box_path(cache_dir: str | os.PathLike, key: str) -> Path:
    return Path(cache_dir) / "boxes" / f"{key}.json"


def store_box(cache_dir: str | os.PathLike, key: str, record: dict) -> Path:
    """Write one box's record (arrays kept exactly) under ``key``, through a temporary file."""
    path = _box_path(cache_dir, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"format": CACHE_FORMAT, "box": _to_json(record)}))
    tmp.replace(path)
    return path


def load_box(cache_dir: str | os.PathLike, key: str) -> dict | None:
    """The box record stored under ``key``, or None."""
    path = _box_path(cache_dir, key)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    if data.get("format") != CACHE_FORMAT:
        return None
    return _from_json(data["box"])
