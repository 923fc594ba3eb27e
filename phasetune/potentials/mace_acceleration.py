"""Accelerated MACE: cuEquivariance kernels through mace's own conversion.

``model.enable_cueq=true`` rebuilds the loaded e3nn MACE module with mace's
``cueq_config`` and copies its weights (``mace.cli.convert_e3nn_cueq.run``, what
``mace_run_train --enable_cueq`` and mace's calculators use). The energies are the same
function of the positions: on a GPU with ``cuequivariance-ops-torch-cu13`` (or ``-cu12``,
as torch's CUDA build) the tensor products run in NVIDIA's fused kernels; without the ops
package (a CPU, or no wheels)
cuequivariance-torch runs its plain PyTorch path, which is how the CPU test checks the
energies and forces against the e3nn module. Exported models are converted back
(``convert_cueq_e3nn``), so a ``.model`` file from phasetune is always a plain e3nn MACE.

mace's converters call ``torch.set_default_dtype`` with the model's dtype; the process
default is put back after each call.
"""

from __future__ import annotations

import importlib.util
import logging
import warnings

import torch

from phasetune.third_party import mace_import

CUEQ_HINT = (
    "model.enable_cueq=true needs cuEquivariance: pip install 'phasetune[cueq]' "
    "(cuequivariance-torch; on an NVIDIA GPU also cuequivariance-ops-torch-cu13 or -cu12, as "
    "torch's CUDA, for the fast kernels), or set model.enable_cueq=false"
)


log = logging.getLogger(__name__)


def cueq_available() -> bool:
    """Whether cuequivariance-torch can be imported here."""
    return importlib.util.find_spec("cuequivariance_torch") is not None


def cueq_kernels_available() -> bool:
    """Whether NVIDIA's fused kernels (cuequivariance-ops-torch) can be imported here."""
    return importlib.util.find_spec("cuequivariance_ops_torch") is not None


def _converted(module: torch.nn.Module, converter: str) -> torch.nn.Module:
    parameter = next(module.parameters())
    device, dtype = parameter.device, parameter.dtype
    default = torch.get_default_dtype()
    # mace fuses the convolution (a kernel of the ops package) when told "cuda": only then
    where = device.type if device.type == "cuda" and cueq_kernels_available() else "cpu"
    try:
        with mace_import():
            run = importlib.import_module(f"mace.cli.{converter}").run
        converted = run(module, device=where, return_model=True)
    finally:
        torch.set_default_dtype(default)
    return converted.to(device=device, dtype=dtype)


def to_cueq(module: torch.nn.Module) -> torch.nn.Module:
    """The MACE ``module`` rebuilt with cuEquivariance tensor products, same weights.

    Raises:
        ValueError: cuequivariance-torch is not installed (one line, with the install).
    """
    if not cueq_available():
        raise ValueError(CUEQ_HINT)
    if not cueq_kernels_available():
        # said once here; cuequivariance's own warning would repeat for every block
        log.warning(
            "cuequivariance-ops-torch is not installed: cuEquivariance runs its plain "
            "PyTorch path (same energies, no speed-up)"
        )
        warnings.filterwarnings("ignore", message="cuequivariance_ops_torch is not available")
    return _converted(module, "convert_e3nn_cueq")


def to_e3nn(module: torch.nn.Module) -> torch.nn.Module:
    """A cuEquivariance MACE ``module`` converted back to plain e3nn (for export)."""
    return _converted(module, "convert_cueq_e3nn")
