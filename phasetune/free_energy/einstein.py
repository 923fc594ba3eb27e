"""Einstein crystal: the analytic reference of Frenkel–Ladd free-energy calculations.

Each atom is tied to its lattice site by an isotropic spring,

    U_E = Σ_i ½ k (r_i − r_i⁰)²,

with the classical Helmholtz free energy (3N vibrational degrees of freedom, de Broglie
wavelength Λ = h / √(2π m k_BT)):

    F_E = 3N k_BT ln(ħω / k_BT),   ω = √(k/m).

The spring constant is usually chosen so that the Einstein crystal's mean-square displacement
matches the real solid's: k = 3 k_BT / ⟨Δr²⟩.
"""

from __future__ import annotations

import math

import torch
from torch_sim.state import SimState

from phasetune.potentials.base import ModelBase
from phasetune.units import AMU_IN_KG, EV_IN_J, HBAR_EV_S, KB_EV_PER_K


def einstein_free_energy_per_atom_eV(
    *, spring_eV_A2: float, mass_amu: float, temperature_K: float
) -> float:
    """Classical F_E/N = 3 k_BT ln(ħω/k_BT), with ω = √(k/m), in eV per atom."""
    if spring_eV_A2 <= 0 or mass_amu <= 0 or temperature_K <= 0:
        raise ValueError(
            f"need positive spring, mass and temperature, got {spring_eV_A2=}, {mass_amu=}, "
            f"{temperature_K=}"
        )
    omega = math.sqrt(spring_eV_A2 * EV_IN_J / (mass_amu * (AMU_IN_KG * 1e-20)))  # rad/s
    kT = KB_EV_PER_K * temperature_K
    return 3.0 * kT * math.log(HBAR_EV_S * omega / kT)


def spring_constant_from_msd(*, msd_A2: float, temperature_K: float) -> float:
    """k = 3 k_BT / ⟨Δr²⟩ in eV/Å² (equipartition for an isotropic harmonic well)."""
    if msd_A2 <= 0:
        raise ValueError(f"mean-square displacement must be > 0, got {msd_A2}")
    return 3.0 * KB_EV_PER_K * temperature_K / msd_A2


class EinsteinCrystal(ModelBase):
    """Springs tying each atom to its site: a torch-sim model (fixed cell, no stress).

    Args:
        sites: reference positions [n_atoms, 3] in Å (the batch's concatenated atoms).
        spring_eV_A2: spring constant per atom [n_atoms] (or a scalar) in eV/Å².
    """

    def __init__(
        self,
        *,
        sites: torch.Tensor,
        spring_eV_A2: torch.Tensor | float,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(device=device, dtype=dtype)
        self.register_buffer("sites", sites.detach().to(self._device, dtype).clone())
        spring = torch.as_tensor(spring_eV_A2, device=self._device, dtype=dtype)
        self.register_buffer("spring", spring.expand(sites.shape[0]).clone())

    def forward(self, state: SimState, **kwargs) -> dict[str, torch.Tensor]:
        displacement = state.positions - self.sites  # positions are not wrapped by the sampler
        energy_per_atom = 0.5 * self.spring * (displacement**2).sum(-1)
        energy = torch.zeros(state.n_systems, device=self._device, dtype=self._dtype)
        energy = energy.index_add(0, state.system_idx, energy_per_atom)
        return {
            "energy": energy,
            "forces": -self.spring.unsqueeze(-1) * displacement,
            "stress": torch.zeros(state.n_systems, 3, 3, device=self._device, dtype=self._dtype),
        }
