"""Observables computed from stored frames (transport properties of the sampled phases)."""

from phasetune.observables.diffusion import (
    A2_PER_FS_IN_M2_PER_S,
    YEH_HUMMER_XI_CUBIC,
    DiffusionResult,
    diffusion_coefficient,
    mean_square_displacement,
    multiple_origin_msd,
    unwrapped_displacements,
    yeh_hummer_correction,
)

__all__ = [
    "A2_PER_FS_IN_M2_PER_S",
    "YEH_HUMMER_XI_CUBIC",
    "DiffusionResult",
    "diffusion_coefficient",
    "mean_square_displacement",
    "multiple_origin_msd",
    "unwrapped_displacements",
    "yeh_hummer_correction",
]
