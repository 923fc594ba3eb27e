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

import copy

import torch
import torch_sim as ts


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
