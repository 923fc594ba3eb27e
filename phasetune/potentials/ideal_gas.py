"""The ideal gas: zero energy, forces and stress. The exact reference for ensemble tests.

In the isothermal–isobaric ensemble with the centre of mass held fixed, N ideal-gas atoms
have P(V) ∝ V^(N−1) exp(−βPV): ⟨V⟩ = N·k_BT/P and Var(V) = N·(k_BT/P)².
"""

from __future__ import annotations

import torch
from torch_sim.state import SimState

from phasetune.potentials.base import ModelBase


class IdealGas(ModelBase):
    """A model with no interactions (meets torch-sim's ``ModelInterface``)."""

    def __init__(self, *, device: torch.device | str = "cpu", dtype=torch.float64) -> None:
        super().__init__(device=device, dtype=dtype)

    def forward(self, state: SimState, **kwargs) -> dict[str, torch.Tensor]:
        n = state.n_systems
        zeros = torch.zeros(n, device=self._device, dtype=self._dtype)
        return {
            "energy": zeros,
            "forces": torch.zeros_like(state.positions),
            "stress": torch.zeros(n, 3, 3, device=self._device, dtype=self._dtype),
        }
