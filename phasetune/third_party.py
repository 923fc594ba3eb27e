"""Side effects of third-party packages, contained in one place.

* :func:`quiet_warp_init`: torch-sim's GPU neighbour lists (nvalchemiops) initialise NVIDIA
  Warp at import, and Warp's C library prints "Could not find or load the NVIDIA CUDA
  driver" to the process's stderr on every machine without a GPU driver, where nothing is
  wrong (torch-sim falls back to its torch neighbour lists). A Python warning filter cannot
  reach a C ``fprintf``, so Warp is initialised once here first, with file descriptor 2
  pointed at ``/dev/null`` for that call only, and only where no CUDA driver can be loaded;
  on a GPU machine Warp says whatever it says.
* :func:`quiet_lightning`: Lightning's info lines ("GPU available: False", "TPU available",
  a litlogger advertisement, "`Trainer.fit` stopped") and its note on torch's pytree API,
  silenced for a block and restored after it; Lightning's warnings stay visible.
* :func:`mace_import`: mace sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` in ``os.environ``
  when ``mace`` or ``mace.calculators`` is imported, which turns every later ``torch.load``
  in the process that does not pass ``weights_only`` (Lightning's, any library's) into a
  full unpickling load. Imports of mace go through this block, which puts the variable back
  as it was; phasetune's own loads pass ``weights_only`` explicitly. (mace's own
  ``MACECalculator`` relies on the variable: a user opts in for a trusted file,
  docs/configuration.md.) The same import prints
  "cuequivariance … is not available" on every machine without cuEquivariance (a CPU, where
  it is not expected): that line is dropped, and ``model.enable_cueq`` says itself when the
  package is missing; so is torch's warning that the variable forced e3nn's constants load
  at import (the variable is contained here). e3nn's TorchScript warnings are filtered in
  ``phasetune/__init__.py``.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import warnings
from contextlib import contextmanager

_warp_initialised = False


def cuda_driver_loadable() -> bool:
    """Whether the NVIDIA driver library (``libcuda``) can be loaded in this process."""
    for name in ("libcuda.so.1", "libcuda.so", "nvcuda.dll"):
        try:
            ctypes.CDLL(name)
            return True
        except OSError:
            continue
    return False


def quiet_warp_init() -> None:
    """Initialise Warp without its no-driver line on GPU-less machines (idempotent)."""
    global _warp_initialised
    if _warp_initialised:
        return
    _warp_initialised = True
    try:
        import warp
    except ImportError:  # torch-sim without its GPU extras
        return
    if cuda_driver_loadable():
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    log_level = warp.config.log_level
    try:
        os.dup2(devnull, 2)
        warp.config.log_level = max(log_level, warp.LOG_WARNING)  # no "initialized" banner
        warp.init()
    finally:
        warp.config.log_level = log_level
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


_LIGHTNING_INFO_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
)


@contextmanager
def quiet_lightning():
    """Lightning's info-level chatter off inside the block (logger levels and warning filters
    restored on exit)."""
    loggers = [logging.getLogger(name) for name in _LIGHTNING_INFO_LOGGERS]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
        # the checkpoint after a step holds the state after its update, which is what a
        # resume continues from (tests/integration/test_resume.py): Lightning's note does not apply
        warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
        for logger in loggers:
            logger.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for logger, level in zip(loggers, levels, strict=True):
                logger.setLevel(level)


_MACE_ENV = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


@contextmanager
def mace_import():
    """Import mace (or torch-sim's MACE wrapper) inside this block: ``os.environ`` keeps its
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` as before, and mace's cuequivariance line is dropped."""
    import io
    from contextlib import redirect_stdout

    before = os.environ.get(_MACE_ENV)
    printed = io.StringIO()
    try:
        with redirect_stdout(printed), warnings.catch_warnings():
            # e3nn (imported by mace) loads its constants while mace's variable is set, and
            # torch warns that the variable forced that load: the variable is contained here
            warnings.filterwarnings("ignore", message=f"Environment variable {_MACE_ENV} detected")
            yield
    finally:
        if before is None:
            os.environ.pop(_MACE_ENV, None)
        else:
            os.environ[_MACE_ENV] = before
        kept = [
            line
            for line in printed.getvalue().splitlines(keepends=True)
            if "cuequivariance" not in line.lower()
        ]
        sys.stdout.write("".join(kept))
