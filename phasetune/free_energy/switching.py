"""Nonequilibrium λ-switching between two Hamiltonians (Frenkel–Ladd path), batched.

H(λ) = (1 − λ) U_A + λ U_B, λ switched 0 → 1 (forward) and 1 → 0 (backward) in t_s with
the smooth schedule of Freitas, Asta & de Koning, Comput. Mater. Sci. 112, 333 (2016):

    λ(τ) = τ⁵ (70τ⁴ − 315τ³ + 540τ² − 420τ + 126),   τ = t / t_s.

Work along each path: W = Σ_steps (U_B − U_A) Δλ. Dissipation cancels to first order in

    ΔF = F_B − F_A ≈ (W_fwd − W_bwd) / 2,

and (W_fwd + W_bwd)/2 ≥ 0 is the dissipated work, a check that t_s was long enough.
Each system of the batch follows its own path; replicas give the statistical error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch_sim.integrators.md import initialize_momenta
from torch_sim.models.interface import ModelInterface
from torch_sim.state import SimState
from tqdm.auto import tqdm

from phasetune.potentials.base import ModelBase
from phasetune.units import KB_EV_PER_K, fs_to_internal


def switching_schedule(tau: torch.Tensor | float) -> torch.Tensor:
    """λ(τ) = τ⁵(70τ⁴ − 315τ³ + 540τ² − 420τ + 126): λ(0)=0, λ(1)=1, flat at both ends."""
    tau = torch.as_tensor(tau, dtype=torch.float64)
    return tau**5 * (70 * tau**4 - 315 * tau**3 + 540 * tau**2 - 420 * tau + 126)


def _remove_center_of_mass(vectors, masses, system_idx, n_systems):
    """v_i − (m_i/M) Σ_j v_j per system (momenta or forces): no centre-of-mass component."""
    total = torch.zeros(n_systems, 3, device=vectors.device, dtype=vectors.dtype)
    total = total.index_add(0, system_idx, vectors)
    mass = torch.zeros(n_systems, device=vectors.device, dtype=vectors.dtype)
    mass = mass.index_add(0, system_idx, masses)
    return vectors - (masses / mass[system_idx]).unsqueeze(-1) * total[system_idx]


class LambdaPath(ModelBase):
    """(1 − λ_s) U_A + λ_s U_B per system s; ``delta_u`` holds U_B − U_A per system.

    With ``fix_center_of_mass`` the forces are projected onto the constraint Σ m_i r_i = const
    per system, F_i − (m_i/M) Σ_j F_j, so that a centre of mass at rest stays put: the
    Frenkel–Ladd path from a translation-invariant solid to springs then has no free drift.
    """

    def __init__(
        self, model_a: ModelInterface, model_b: ModelInterface, *, fix_center_of_mass=False
    ) -> None:
        super().__init__(device=model_a.device, dtype=model_a.dtype)
        self.model_a, self.model_b = model_a, model_b
        self.fix_center_of_mass = bool(fix_center_of_mass)
        self.lam: torch.Tensor | None = None
        self.delta_u: torch.Tensor | None = None

    def forward(self, state: SimState, **kwargs) -> dict[str, torch.Tensor]:
        a, b = self.model_a(state), self.model_b(state)
        lam = self.lam if self.lam is not None else torch.zeros(state.n_systems)
        lam = lam.to(self._device, self._dtype)
        lam_atoms = lam[state.system_idx].unsqueeze(-1)
        self.delta_u = (b["energy"] - a["energy"]).detach()
        forces = (1 - lam_atoms) * a["forces"] + lam_atoms * b["forces"]
        if self.fix_center_of_mass:
            masses = state.masses.to(forces.dtype)
            forces = _remove_center_of_mass(forces, masses, state.system_idx, state.n_systems)
        return {
            "energy": (1 - lam) * a["energy"] + lam * b["energy"],
            "forces": forces,
            "stress": (1 - lam)[:, None, None] * a["stress"] + lam[:, None, None] * b["stress"],
        }


@dataclass
class SwitchingResult:
    """Per system, in eV per system: forward and backward work, ΔF = F_B − F_A, dissipation."""

    work_forward: torch.Tensor
    work_backward: torch.Tensor

    @property
    def delta_f(self) -> torch.Tensor:
        return 0.5 * (self.work_forward - self.work_backward)

    @property
    def dissipation(self) -> torch.Tensor:
        return 0.5 * (self.work_forward + self.work_backward)


def nonequilibrium_switching(
    path: LambdaPath,
    state: SimState,
    *,
    temperature_K: torch.Tensor,
    timestep_fs: float,
    equilibration_steps: int,
    switching_steps: int,
    friction_time_fs: float = 100.0,
    seed: int = 0,
    progress: bool = False,
) -> SwitchingResult:
    """Equilibrate at λ=0, switch to 1, equilibrate at λ=1, switch back; fixed cells (NVT).

    Dynamics: Langevin BAOAB with friction 1/``friction_time_fs`` on every atom. A global
    thermostat (velocity rescaling) would not do: in a (nearly) harmonic solid the normal
    modes hardly exchange energy, so only per-atom noise makes the sampling canonical.
    With ``path.fix_center_of_mass`` the noise is projected like the forces, and the centre
    of mass stays where it started.
    """
    if switching_steps < 1 or equilibration_steps < 0:
        raise ValueError("need switching_steps >= 1 and equilibration_steps >= 0")
    n = state.n_systems
    device, dtype = path.device, path.dtype
    kT = KB_EV_PER_K * torch.as_tensor(temperature_K, device=device, dtype=dtype).expand(n)
    dt = fs_to_internal(timestep_fs)
    c1 = math.exp(-dt / fs_to_internal(friction_time_fs))
    generator = torch.Generator(device=device).manual_seed(seed)
    masses = state.masses.to(dtype)
    kT_atoms = kT[state.system_idx].unsqueeze(-1)
    positions = state.positions.to(dtype).clone()
    momenta = initialize_momenta(positions, masses, state.system_idx, kT, generator)
    if path.fix_center_of_mass:
        momenta = _remove_center_of_mass(momenta, masses, state.system_idx, n)
    work_state = state.clone()

    def forces_at(lam: float) -> torch.Tensor:
        path.lam = torch.full((n,), lam, device=device, dtype=dtype)
        work_state.positions = positions
        return path(work_state)["forces"].detach()

    def step(forces: torch.Tensor, lam: float) -> torch.Tensor:
        nonlocal positions, momenta
        momenta = momenta + 0.5 * dt * forces
        positions = positions + 0.5 * dt * momenta / masses.unsqueeze(-1)
        noise = torch.randn(momenta.shape, generator=generator, device=device, dtype=dtype)
        noise = noise * torch.sqrt(masses.unsqueeze(-1) * kT_atoms * (1 - c1 * c1))
        if path.fix_center_of_mass:
            noise = _remove_center_of_mass(noise, masses, state.system_idx, n)
        momenta = c1 * momenta + noise
        positions = positions + 0.5 * dt * momenta / masses.unsqueeze(-1)
        forces = forces_at(lam)
        momenta = momenta + 0.5 * dt * forces
        return forces

    lambdas = switching_schedule(torch.linspace(0, 1, switching_steps + 1)).tolist()
    works = []
    bar = tqdm(
        total=2 * (equilibration_steps + switching_steps), desc="switching", disable=not progress
    )
    for schedule in (lambdas, lambdas[::-1]):
        forces = forces_at(schedule[0])
        for _ in range(equilibration_steps):
            forces = step(forces, schedule[0])
            bar.update()
        work = torch.zeros(n, device=device, dtype=dtype)
        for k in range(switching_steps):
            # work of changing λ at fixed configuration, then dynamics at the new λ
            work = work + path.delta_u * (schedule[k + 1] - schedule[k])
            forces = step(forces, schedule[k + 1])
            bar.update()
        works.append(work)
    bar.close()
    return SwitchingResult(work_forward=works[0], work_backward=works[1])
