"""Checkpoints that survive a crash while they are written.

:class:`AtomicCheckpointIO` writes to a temporary file and renames it into place (a crash
leaves the old checkpoint intact), keeps the previous checkpoint as ``<name>.prev``, and
loads with ``weights_only=True`` (tensors and plain containers only: no code runs). A
truncated or unreadable checkpoint is reported with a warning and the previous one is used.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO

log = logging.getLogger(__name__)


def previous_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".prev")


def save_atomic(obj, path: str | Path) -> Path:
    """torch.save via a temporary file, fsync and rename; the old file becomes ``.prev``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        torch.save(obj, handle)
        handle.flush()
        os.fsync(handle.fileno())
    if path.exists():
        os.replace(path, previous_path(path))
    os.replace(tmp, path)
    return path


def load_with_fallback(path: str | Path, map_location=None) -> dict:
    """Load ``path`` (weights_only); if it is truncated or corrupt, warn and load ``.prev``."""
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, missing file
        previous = previous_path(path)
        if not previous.exists():
            raise RuntimeError(
                f"checkpoint {path} cannot be read ({type(err).__name__}: {err}) and there is "
                f"no previous checkpoint {previous.name} to fall back to"
            ) from err
        warnings.warn(
            f"checkpoint {path} cannot be read ({type(err).__name__}); resuming from the "
            f"previous one, {previous}",
            RuntimeWarning,
            stacklevel=2,
        )
        log.warning("checkpoint %s unreadable (%s); using %s", path, err, previous)
        return torch.load(previous, map_location=map_location, weights_only=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO with atomic writes and a fallback to the previous checkpoint."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        save_atomic(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        return load_with_fallback(path, map_location=map_location)

    def remove_checkpoint(self, path) -> None:
        for p in (Path(path), previous_path(path)):
            p.unlink(missing_ok=True)
