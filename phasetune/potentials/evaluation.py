"""A model evaluated on stored frames: U_θ of every frame and system, differentiable in θ.

The reweighting's one contact with a potential (DiffTRe, the model-change free energies):
:func:`frame_energies` rebuilds torch-sim states from :class:`~phasetune.sampling.frames.Frames`
chunk by chunk and calls the model with its forces and stress off (:func:`energies_only`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch_sim as ts

from phasetune.sampling.frames import Frames
from phasetune.sampling.sampler import reset_neighbor_lists


@contextlib.contextmanager
def energies_only(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Switch a torch-sim model's forces and stress off for the block (reweighting needs U
    alone; autograd-force models such as MACE would otherwise free the energy's graph).

    Through the public ``compute_forces``/``compute_stress`` properties where they can be
    set (phasetune's models, :class:`SwitchableOutputs`). torch-sim's own models (e.g. its
    ``MaceModel``) offer no setter; for them the flags torch-sim's ``ModelInterface``
    declares for subclasses, ``_compute_forces``/``_compute_stress``, are switched instead
    (tests/unit/potentials/test_potentials.py checks that the installed torch-sim still
    declares them).
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
