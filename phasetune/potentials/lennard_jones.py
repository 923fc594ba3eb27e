"""Trainable Lennard-Jones potential, batched, with analytic forces and stress.

    u(r) = 4ε[(σ/r)¹² − (σ/r)⁶] − u_shift   for r < r_c, else 0,

with u_shift = 4ε[(σ/r_c)¹² − (σ/r_c)⁶] when ``shift=True`` (truncated and shifted) and 0
otherwise (truncated). The cutoff follows σ, r_c = ``cutoff_sigma``·σ, so the potential is
ε·f(r/σ) for every (ε, σ): reduced-unit scaling holds exactly while σ is trained.

ε (eV) and σ (Å) are ``torch.nn.Parameter``s: the energy is differentiable with respect to
them (for reweighting), while forces and stress are computed in closed form (fast
sampling, no autograd):

    F_i = −∂U/∂x_i,    stress_ab = (1/V) Σ_pairs u'(r) r_a r_b / r   (= (1/V) ∂U/∂ε_ab).

Optional analytic long-range corrections (``tail_correction=True``) for the truncated
potential, g(r) = 1 beyond r_c (Allen & Tildesley):

    E_tail = (8/3)π N ρ ε σ³ [(1/3)(σ/r_c)⁹ − (σ/r_c)³],
    P_tail = (16/3)π ρ² ε σ³ [(2/3)(σ/r_c)⁹ − (σ/r_c)³],

the convention of the NIST Lennard-Jones benchmark tables (truncated at r_c with analytic
long-range corrections). P_tail enters the stress as −P_tail·δ_ab.
"""

from __future__ import annotations

import math

import torch
from torch_sim.state import SimState

from phasetune.potentials.base import ModelBase, SwitchableOutputs
from phasetune.potentials.neighbors import VerletList


class LennardJones(SwitchableOutputs, ModelBase):
    """Single-component Lennard-Jones model meeting torch-sim's ``ModelInterface``.

    Args:
        epsilon_eV: well depth ε in eV.
        sigma_A: length scale σ in Å.
        cutoff_sigma: cutoff r_c in units of σ (r_c = cutoff_sigma·σ, following σ).
        shift: shift the energy to zero at r_c.
        tail_correction: add the analytic long-range energy and pressure corrections.
        skin_A: Verlet-list skin in Å (default 0.2σ: fewest rebuilds per force cost, measured).
        device, dtype: where and in which precision to compute.
    """

    def __init__(
        self,
        *,
        epsilon_eV: float,
        sigma_A: float,
        cutoff_sigma: float = 2.5,
        shift: bool = True,
        tail_correction: bool = False,
        skin_A: float | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(device=device, dtype=dtype)
        if epsilon_eV <= 0 or sigma_A <= 0 or cutoff_sigma <= 1.0:
            raise ValueError(
                f"need epsilon_eV > 0, sigma_A > 0 and cutoff_sigma > 1, got "
                f"{epsilon_eV=}, {sigma_A=}, {cutoff_sigma=}"
            )
        self.epsilon = torch.nn.Parameter(torch.tensor(epsilon_eV, device=device, dtype=dtype))
        self.sigma = torch.nn.Parameter(torch.tensor(sigma_A, device=device, dtype=dtype))
        self.cutoff_sigma = float(cutoff_sigma)
        self.shift = bool(shift)
        self.tail_correction = bool(tail_correction)
        self._skin = 0.2 * sigma_A if skin_A is None else skin_A
        self.neighbors = VerletList(self.cutoff, self._skin)

    @property
    def cutoff(self) -> float:
        """r_c = cutoff_sigma·σ in Å, for the current σ."""
        return self.cutoff_sigma * float(self.sigma.detach())

    def extra_repr(self) -> str:
        return (
            f"epsilon={self.epsilon.item():.6g} eV, sigma={self.sigma.item():.6g} Å, "
            f"cutoff={self.cutoff:.4g} Å, shift={self.shift}, tail={self.tail_correction}"
        )

    def forward(self, state: SimState, **kwargs) -> dict[str, torch.Tensor]:
        """Energy [n_systems] (eV), forces [n_atoms, 3] (eV/Å), stress [n_systems, 3, 3] (eV/Å³)."""
        positions = state.positions.to(self._dtype)
        row_cell = state.row_vector_cell.to(self._dtype)
        system_idx = state.system_idx
        n_systems = row_cell.shape[0]
        cutoff = self.cutoff
        if cutoff != self.neighbors.cutoff:  # σ changed: a list for the new cutoff
            self.neighbors = VerletList(cutoff, self._skin)
        pairs = self.neighbors.pair_vectors(positions, row_cell, system_idx)
        d = pairs.vectors
        r2 = (d * d).sum(-1)
        inside = r2 < cutoff**2
        eps, sig = self.epsilon, self.sigma
        sr2 = torch.where(inside, sig * sig / r2, torch.zeros_like(r2))
        sr6 = sr2 * sr2 * sr2
        sr12 = sr6 * sr6
        pair_energy = 4.0 * eps * (sr12 - sr6)
        if self.shift:
            src6 = self.cutoff_sigma**-6  # (σ/r_c)⁶, constant as r_c follows σ
            pair_energy = pair_energy - torch.where(
                inside, 4.0 * eps * (src6 * src6 - src6), torch.zeros_like(r2)
            )
        energy = torch.zeros(n_systems, device=d.device, dtype=pair_energy.dtype)
        energy = energy.index_add(0, pairs.system, pair_energy)

        # u'(r)/r, so that ∂u/∂r_ij = f_over_r · r_ij
        with torch.no_grad():
            f_over_r = -24.0 * eps.detach() * (2.0 * sr12 - sr6) / r2
            pair_force = f_over_r.unsqueeze(-1) * d.detach()  # = ∂u/∂r_ij
            forces = torch.zeros_like(positions)
            forces.index_add_(0, pairs.i, pair_force)
            forces.index_add_(0, pairs.j, -pair_force)
            volume = torch.linalg.det(row_cell.detach()).abs()
            virial = torch.zeros(n_systems, 3, 3, device=d.device, dtype=d.dtype)
            virial.index_add_(0, pairs.system, pair_force.unsqueeze(-1) * d.detach().unsqueeze(-2))
            stress = virial / volume[:, None, None]

        if self.tail_correction:
            n_atoms = torch.bincount(system_idx, minlength=n_systems).to(d.dtype)
            volume_live = torch.linalg.det(row_cell).abs()
            rho = n_atoms / volume_live
            x3 = self.cutoff_sigma**-3.0  # (σ/r_c)³
            x9 = x3**3
            energy = energy + (8.0 / 3.0) * math.pi * n_atoms * rho * eps * sig**3 * (x9 / 3.0 - x3)
            with torch.no_grad():
                p_tail = (16.0 / 3.0) * math.pi * rho**2 * eps * sig**3 * (2.0 * x9 / 3.0 - x3)
                eye = torch.eye(3, device=d.device, dtype=d.dtype)
                stress = stress - p_tail.detach()[:, None, None] * eye

        return {"energy": energy, "forces": forces, "stress": stress}
