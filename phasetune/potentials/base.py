"""The potential protocol: any torch-sim ``ModelInterface``, used in two roles.

* Sampling: MD runs with a frozen, detached copy (:func:`sampling_copy`), refreshed from the
  trained weights before each sampling round (:func:`refresh_sampling_copy`).
* Reweighting: :func:`frame_energies` evaluates the LIVE module on stored frames, with
  gradients to its parameters, in chunks of frames (each chunk one torch-sim batch).
  DiffTRe's estimates are built on these energies: ΔU_k(θ) = U_θ(x_k) − U_ref(x_k); its FEP
  recomputes them chunk by chunk in the backward pass, so that memory does not grow with the
  number of frames (:func:`phasetune.learn.difftre.reweighted_gibbs_change`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator

import torch
import torch_sim as ts

from phasetune.sampling.frames import Frames
from phasetune.sampling.sampler import reset_neighbor_lists


def sampling_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen, detached deep copy of ``model`` for MD (the live model stays trainable).

    A model with a ``sampling_model()`` method provides its own (MACE: torch-sim's
    ``MaceModel`` around a copy of the weights).
    """
    if hasattr(model, "sampling_model"):
        return model.sampling_model()
    frozen = copy.deepcopy(model)
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen.eval()


def refresh_sampling_copy(frozen: torch.nn.Module, live: torch.nn.Module) -> torch.nn.Module:
    """Load the live model's current weights into its frozen sampling copy (in place)."""
    if hasattr(live, "refresh_sampling_model"):
        return live.refresh_sampling_model(frozen)
    with torch.no_grad():
        for target, source in zip(frozen.parameters(), live.parameters(), strict=True):
            target.copy_(source.detach())
        for target, source in zip(frozen.buffers(), live.buffers(), strict=True):
            target.copy_(source)
    return frozen


class ModelBase(ts.models.interface.ModelInterface):
    """A torch-sim ``ModelInterface`` whose device, dtype and outputs are set in one place.

    torch-sim's base class declares ``_device``, ``_dtype``, ``_compute_forces`` and
    ``_compute_stress`` for its subclasses to set in ``__init__`` (its own models do so);
    phasetune's models call ``super().__init__(device=..., dtype=...)`` instead, with forces
    on and stress on unless ``compute_stress`` says otherwise.
    """

    def __init__(
        self, *, device: torch.device | str, dtype: torch.dtype, compute_stress: bool = True
    ) -> None:
        super().__init__()
        self._device = torch.device(device)
        self._dtype = dtype
        self._compute_forces = True
        self._compute_stress = bool(compute_stress)


class SwitchableOutputs:
    """Mixin for a torch-sim ``ModelInterface`` whose ``compute_forces`` and
    ``compute_stress`` can be switched after construction (torch-sim's base class declares
    the properties but refuses to set them). Put it before ``ModelInterface`` in the bases."""

    @ts.models.interface.ModelInterface.compute_forces.setter
    def compute_forces(self, value: bool) -> None:
        self._compute_forces = bool(value)

    @ts.models.interface.ModelInterface.compute_stress.setter
    def compute_stress(self, value: bool) -> None:
        self._compute_stress = bool(value)


@contextlib.contextmanager
def energies_only(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Switch a torch-sim model's forces and stress off for the block (reweighting needs U
    alone; autograd-force models such as MACE would otherwise free the energy's graph).

    Through the public ``compute_forces``/``compute_stress`` properties where they can be
    set (phasetune's models, :class:`SwitchableOutputs`). torch-sim's own models (e.g. its
    ``MaceModel``) offer no setter; for them the flags torch-sim's ``ModelInterface``
    declares for subclasses, ``_compute_forces``/``_compute_stress``, are switched instead
    (tests/test_potentials.py checks that the installed torch-sim still declares them).
    """
    saved = {}
    for key in ("compute_forces", "compute_stress"):
        if not hasattr(model, key):
            continue
        value = getattr(model, key)
        try:
            setattr(model, key, False)
        except (NotImplementedError, AttributeError):  # torch-sim's default / no setter
            key = f"_{key}"
            setattr(model, key, False)
        saved[key] = value
    try:
        yield model
    finally:
        for key, value in saved.items():
            setattr(model, key, value)


def frame_energies(
    model: torch.nn.Module,
    frames: Frames,
    *,
    frame_indices: torch.Tensor | None = None,
    chunk_frames: int = 16,
) -> torch.Tensor:
    """Potential energies U_θ [n_selected_frames, n_systems] in eV of stored frames.

    Differentiable with respect to the model's parameters. Frames are evaluated
    ``chunk_frames`` at a time (each chunk is one torch-sim batch of chunk × n_systems
    systems). With gradients on, every chunk's graph stays alive until backward (memory
    ∝ frames): for gradients over many frames use the chunked FEP of
    :func:`phasetune.learn.difftre.reweighted_gibbs_change`.
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    device, dtype = model.device, model.dtype
    reset_neighbor_lists(model)
    indices = torch.arange(frames.n_frames) if frame_indices is None else frame_indices
    n_systems = frames.n_systems
    out = []
    for start in range(0, len(indices), chunk_frames):
        chunk = indices[start : start + chunk_frames]
        n_chunk = len(chunk)
        positions = frames.positions[chunk].reshape(-1, 3)
        offsets = (torch.arange(n_chunk) * n_systems).repeat_interleave(len(frames.system_idx))
        system_idx = frames.system_idx.repeat(n_chunk) + offsets
        state = ts.SimState(
            positions=positions.to(device=device, dtype=dtype),
            masses=frames.masses.repeat(n_chunk).to(device=device, dtype=dtype),
            cell=frames.cell[chunk].reshape(-1, 3, 3).transpose(-1, -2).to(device, dtype),
            pbc=True,
            atomic_numbers=frames.atomic_numbers.repeat(n_chunk).to(device),
            system_idx=system_idx.to(device),
        )
        with energies_only(model):
            energy = model(state)["energy"]
        out.append(energy.reshape(n_chunk, n_systems))
    return torch.cat(out)
