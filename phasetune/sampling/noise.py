"""Where the MD noise comes from: one stream for the whole batch, or one per state point.

Every random number of a C-rescale run (initial momenta, the thermostat's draws, the
barostat's) is drawn through a noise source:

* :class:`BatchNoise` draws from the batch's ``state.rng`` (torch-sim's convention; one
  generator for all systems). What system k receives then depends on which other systems
  share the batch and in what order.
* :class:`StatePointNoise` gives each system a generator of its own, seeded from the run's
  seed and the state point's name (:func:`state_point_seed`). On the CPU the forces of one
  system do not depend on the others, bit for bit (Lennard-Jones and EAM; ti_small's MACE
  in float32 and float64 for a bcc box alone and behind an hcp box), so a state point
  sampled alone, in another batch, on another rank or in another job gets the same frames as
  in one batch with everything else: measurements can be split across devices and jobs and
  merged exactly, and DDP ranks sample their share of a training run's state points. A
  GPU's atomic additions may differ in the last bit with the batch (not checked here);
  chaotic MD then gives statistically equivalent, not identical, frames.

Why not torch-sim's: its integrators take one ``torch.Generator`` per state; a batch of
independent streams is not among its options. The per-system draws are made on the CPU (a
few small tensors per step) and moved to the batch's device at once.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import torch

from phasetune.settings import RANDOM_STREAMS

__all__ = [
    "RANDOM_STREAMS",
    "BatchNoise",
    "StatePointNoise",
    "maxwell_boltzmann_momenta",
    "noise_for",
    "state_point_seed",
]


def state_point_seed(seed: int, name: str) -> int:
    """The seed of one state point's stream: a function of the run's seed and the name only,
    s = (seed · 1,000,003 + CRC-32(name)) mod 2⁶³."""
    return (int(seed) * 1_000_003 + zlib.crc32(name.encode())) % (2**63)


def _counts(system_idx: torch.Tensor, n_systems: int) -> list[int]:
    return torch.bincount(system_idx.cpu(), minlength=n_systems).tolist()


class BatchNoise:
    """All draws from the batch generator ``state.rng`` (the order torch-sim uses)."""

    def normal_systems(self, state, *shape: int, dtype=None) -> torch.Tensor:
        """Standard normals [n_systems, *shape]."""
        dtype = dtype or state.dtype
        return torch.randn(
            state.n_systems, *shape, generator=state.rng, dtype=dtype, device=state.device
        )

    def normal_atoms(self, state, dtype=None) -> torch.Tensor:
        """Standard normals [n_atoms, 3]."""
        dtype = dtype or state.dtype
        return torch.randn(
            state.positions.shape, generator=state.rng, dtype=dtype, device=state.device
        )

    def chi_squared(self, state, dof: torch.Tensor) -> torch.Tensor:
        """χ²(dof) per system [n_systems] (2·Gamma(dof/2), torch's ``_standard_gamma``, the one
        gamma sampler that takes a generator)."""
        return torch._standard_gamma(dof / 2, generator=state.rng) * 2  # noqa: SLF001


class StatePointNoise:
    """One CPU generator per system (module docstring); ``seeds``: one per system, in batch
    order (:func:`state_point_seed`)."""

    def __init__(self, seeds: Sequence[int]) -> None:
        self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

    def _check(self, state) -> None:
        if state.n_systems != len(self.generators):
            raise ValueError(
                f"{len(self.generators)} noise streams for a batch of {state.n_systems} systems"
            )

    def normal_systems(self, state, *shape: int, dtype=None) -> torch.Tensor:
        self._check(state)
        draws = [torch.randn(shape, generator=g, dtype=torch.float64) for g in self.generators]
        return torch.stack(draws).to(device=state.device, dtype=dtype or state.dtype)

    def normal_atoms(self, state, dtype=None) -> torch.Tensor:
        self._check(state)
        counts = _counts(state.system_idx, state.n_systems)
        draws = [
            torch.randn(n, 3, generator=g, dtype=torch.float64)
            for n, g in zip(counts, self.generators, strict=True)
        ]
        return torch.cat(draws).to(device=state.device, dtype=dtype or state.dtype)

    def chi_squared(self, state, dof: torch.Tensor) -> torch.Tensor:
        self._check(state)
        alpha = (dof.detach().cpu().double() / 2).tolist()
        draws = [
            torch._standard_gamma(torch.tensor([a], dtype=torch.float64), generator=g)  # noqa: SLF001
            for a, g in zip(alpha, self.generators, strict=True)
        ]
        return (torch.cat(draws) * 2).to(device=dof.device, dtype=dof.dtype)


def maxwell_boltzmann_momenta(state, kT: torch.Tensor, noise) -> torch.Tensor:
    """Momenta p = √(m k_BT) ξ with each system's centre-of-mass momentum removed [n_atoms, 3]
    (``kT``: [n_systems], eV). With :class:`BatchNoise` this is torch-sim's
    ``initialize_momenta`` draw for draw."""
    if isinstance(noise, BatchNoise):
        from torch_sim.integrators.md import initialize_momenta

        return initialize_momenta(state.positions, state.masses, state.system_idx, kT, state.rng)
    idx = state.system_idx
    momenta = noise.normal_atoms(state) * torch.sqrt(state.masses * kT[idx]).unsqueeze(-1)
    total = torch.zeros(state.n_systems, 3, dtype=momenta.dtype, device=momenta.device)
    total = total.index_add(0, idx, momenta)
    counts = torch.bincount(idx, minlength=state.n_systems).to(momenta.dtype)
    # the mean momentum per atom removed, as torch-sim does (a one-atom system keeps its own)
    centred = momenta - (total / counts.unsqueeze(-1))[idx]
    return torch.where(counts[idx].unsqueeze(-1) > 1, centred, momenta)


def noise_for(
    random_streams: str,
    seed: int,
    names: Sequence[str],
    *,
    seeds: Sequence[int | None] | None = None,
):
    """The noise source a run's settings ask for: :class:`StatePointNoise` seeded per name
    (from ``seeds[k]`` where given, else ``seed``), or :class:`BatchNoise` (then seed
    ``state.rng`` with ``seed``)."""
    if random_streams == "state_point":
        own = seeds or [None] * len(names)
        return StatePointNoise(
            [state_point_seed(seed if s is None else s, n) for n, s in zip(names, own, strict=True)]
        )
    if random_streams == "batch":
        return BatchNoise()
    raise ValueError(f"unknown random_streams {random_streams!r}; choose one of {RANDOM_STREAMS}")
