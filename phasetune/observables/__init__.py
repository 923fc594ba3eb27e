"""Observables computed from stored frames (transport properties of the sampled phases)."""

from phasetune.observables import diffusion
from phasetune.observables.diffusion import *  # noqa: F403  (its __all__ is this package's)

__all__ = list(diffusion.__all__)
