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

from dataclasses import dataclass

import torch
from torch_sim.integrators.md import MDState
from torch_sim.integrators.npt import NPTCRescaleState
from torch_sim.models.interface import ModelInterface
from torch_sim.state import SimState

from phasetune.sampling.integrator import (
    CELL_MODES,
    EnsembleTargets,
    crescale_init,
    crescale_step,
)
from phasetune.units import KB_EV_PER_K, fs_to_internal


def switching_schedule(tau: torch.Tensor | float) -> torch.Tensor:
    """λ(τ) = τ⁵(70τ⁴ − 315τ³ + 540τ² − 420τ + 126): λ(0)=0, λ(1)=1, flat at both ends."""
    tau = torch.as_tensor(tau, dtype=torch.float64)
    return tau**5 * (70 * tau**4 - 315 * tau**3 + 540 * tau**2 - 420 * tau + 126)


class LambdaPath(ModelInterface):
    """(1 − λ_s) U_A + λ_s U_B per system s; ``delta_u`` holds U_B − U_A per system."""

    def __init__(self, model_a: ModelInterface, model_b: ModelInterface) -> None:
        super().__init__()
        self.model_a, self.model_b = model_a, model_b
        self._device, self._dtype = model_a.device, model_a.dtype
        self._compute_forces = True
        self._compute_stress = True
        self.lam: torch.Tensor | None = None
        self.delta_u: torch.Tensor | None = None

    def forward(self, state: SimState, **kwargs) -> dict[str, torch.Tensor]:
        a, b = self.model_a(state), self.model_b(state)
        lam = self.lam if self.lam is not None else torch.zeros(state.n_systems)
        lam = lam.to(self._device, self._dtype)
        lam_atoms = lam[state.system_idx].unsqueeze(-1)
        self.delta_u = (b["energy"] - a["energy"]).detach()
        return {
            "energy": (1 - lam) * a["energy"] + lam * b["energy"],
            "forces": (1 - lam_atoms) * a["forces"] + lam_atoms * b["forces"],
            "stress": (1 - lam)[:, None, None] * a["stress"] + lam[:, None, None] * b["stress"],
        }


class _AllDegreesOfFreedom(NPTCRescaleState):
    """MD state counting all 3N momenta: springs tie atoms to sites, so the centre of mass is
    not conserved and must be thermalised like every other degree of freedom."""

    def get_number_of_degrees_of_freedom(self) -> torch.Tensor:
        return MDState.get_number_of_degrees_of_freedom(self)


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
    thermostat_tau_fs: float = 100.0,
    seed: int = 0,
) -> SwitchingResult:
    """Equilibrate at λ=0, switch to 1, equilibrate at λ=1, switch back; fixed cells (NVT)."""
    if switching_steps < 1 or equilibration_steps < 0:
        raise ValueError("need switching_steps >= 1 and equilibration_steps >= 0")
    n = state.n_systems
    device, dtype = path.device, path.dtype
    temperature_K = torch.as_tensor(temperature_K, device=device, dtype=dtype).expand(n)
    targets = EnsembleTargets(
        kT=KB_EV_PER_K * temperature_K,
        pressure=torch.zeros(n, device=device, dtype=dtype),
        cell_mode=torch.full((n,), CELL_MODES["fixed"], device=device),
        tau_thermostat=torch.full(
            (n,), fs_to_internal(thermostat_tau_fs), device=device, dtype=dtype
        ),
        tau_barostat=torch.ones(n, device=device, dtype=dtype),
        compressibility=torch.ones(n, device=device, dtype=dtype),
    )
    dt = torch.tensor(fs_to_internal(timestep_fs), device=device, dtype=dtype)
    state.rng = seed
    path.lam = torch.zeros(n, device=device, dtype=dtype)
    md = crescale_init(state, path, targets=targets)
    md = _AllDegreesOfFreedom.from_state(md)
    lambdas = switching_schedule(torch.linspace(0, 1, switching_steps + 1)).to(device, dtype)
    works = []
    for schedule in (lambdas, lambdas.flip(0)):
        path.lam = torch.full((n,), float(schedule[0]), device=device, dtype=dtype)
        for _ in range(equilibration_steps):
            md = crescale_step(md, path, dt=dt, targets=targets)
        path(md)  # ΔU at the starting λ
        work = torch.zeros(n, device=device, dtype=dtype)
        for k in range(switching_steps):
            # work of changing λ at fixed configuration, then dynamics at the new λ
            work = work + path.delta_u * (schedule[k + 1] - schedule[k])
            path.lam = torch.full((n,), float(schedule[k + 1]), device=device, dtype=dtype)
            md = crescale_step(md, path, dt=dt, targets=targets)
        works.append(work)
    return SwitchingResult(work_forward=works[0], work_backward=works[1])
