"""Batched Verlet neighbour list with a skin, robust to atoms wrapping and cells deforming.

The list holds each pair once (i < j, or a self-image pair counted once) within
``cutoff + skin`` together with its integer image shift S, so that

    r_ij = x_j − x_i + (S + n_j − n_i) · H

where H is the current row-vector cell and n_i counts how often atom i was wrapped back
into the cell since the list was built. A system's pairs are rebuilt only when a pair that
was outside ``cutoff + skin`` could have come inside ``cutoff``:

    (cutoff + skin) · s_min(H₀⁻¹H) − 2 · max_i |Δx_i| < cutoff,

with s_min the smallest singular value of the system's cell deformation since its build and
Δx_i the displacement of its atom i relative to the affinely deformed reference positions.
Each system is judged and rebuilt on its own, so that its pairs, and the order in which its
forces are summed, do not depend on the other systems of the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch_sim.neighbors import VESIN_AVAILABLE, torch_nl_linked_cell, vesin_nl

try:
    import vesin  # noqa: F401

    _VESIN_HALF = True
except ImportError:  # pragma: no cover - vesin is a dependency
    _VESIN_HALF = False


def _sorted(system_idx: torch.Tensor) -> bool:
    """Atoms grouped by system in ascending order (as torch-sim batches them)."""
    return bool((system_idx[1:] >= system_idx[:-1]).all()) if len(system_idx) > 1 else True


def _build_pairs(
    positions: torch.Tensor,
    row_cell: torch.Tensor,
    system_idx: torch.Tensor,
    cutoff: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All pairs (i, j, S) within ``cutoff`` (full list), using vesin when available."""
    pbc = torch.ones(3, dtype=torch.bool, device=positions.device)
    cutoff_t = torch.tensor(cutoff, dtype=positions.dtype, device=positions.device)
    on_cpu = positions.device.type == "cpu"
    builder = vesin_nl if VESIN_AVAILABLE and on_cpu else torch_nl_linked_cell
    # torch-sim's neighbour lists take the row-vector cell
    mapping, _, shifts = builder(positions, row_cell, pbc, cutoff_t, system_idx)
    return mapping[0].long(), mapping[1].long(), shifts.round().to(torch.long)


def _vesin_half_pairs(
    positions: torch.Tensor,
    row_cell: torch.Tensor,
    system_idx: torch.Tensor,
    cutoff: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The half list (each pair once) straight from vesin, one call per system (CPU).

    Positions are wrapped first, x' = x − n·H with n = ⌊x H⁻¹⌋; vesin's shift S' for
    r_ij = x'_j − x'_i + S'·H then becomes S = S' + n_i − n_j for the unwrapped positions.
    """
    from vesin import NeighborList

    x = positions.detach().to(torch.float64).cpu().numpy()
    cells = row_cell.detach().to(torch.float64).cpu().numpy()
    systems = system_idx.cpu().numpy()
    starts = np.searchsorted(systems, np.arange(cells.shape[0]))
    ends = np.searchsorted(systems, np.arange(cells.shape[0]), side="right")
    builder = NeighborList(cutoff=float(cutoff), full_list=False)
    out_i, out_j, out_s = [], [], []
    for s, (start, end) in enumerate(zip(starts, ends, strict=True)):
        cell = cells[s]
        n = np.floor(x[start:end] @ np.linalg.inv(cell))
        wrapped = x[start:end] - n @ cell
        i, j, shift = builder.compute(wrapped, cell, True, quantities="ijS")
        out_i.append(i.astype(np.int64) + start)
        out_j.append(j.astype(np.int64) + start)
        out_s.append(shift.astype(np.int64) + (n[i] - n[j]).astype(np.int64))
    return (
        torch.from_numpy(np.concatenate(out_i)).to(positions.device),
        torch.from_numpy(np.concatenate(out_j)).to(positions.device),
        torch.from_numpy(np.concatenate(out_s)).to(positions.device),
    )


def _half_list(
    i: torch.Tensor, j: torch.Tensor, shifts: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep each unordered pair once: i < j, or i == j with a lexicographically positive shift."""
    weights = torch.tensor([9, 3, 1], device=shifts.device)
    positive_shift = (shifts.sign() * weights).sum(-1) > 0
    keep = (i < j) | ((i == j) & positive_shift)
    return i[keep], j[keep], shifts[keep]


@dataclass
class NeighborPairs:
    """Pairs of the half list and their current separation vectors."""

    i: torch.Tensor  # [n_pairs]
    j: torch.Tensor  # [n_pairs]
    vectors: torch.Tensor  # [n_pairs, 3], r_ij = x_j - x_i + image shift
    system: torch.Tensor  # [n_pairs]


class VerletList:
    """Stateful half neighbour list for a batch of periodic systems.

    Each system's pairs are rebuilt on its own criterion (module docstring), so what a system
    computes depends on its own history only, not on the other systems of the batch: a state
    point gets the same forces, bit for bit, alone or in any batch (on the CPU).

    Args:
        cutoff: interaction cutoff in Å.
        skin: extra shell in Å; the list is valid until atoms move about skin/2.
    """

    def __init__(self, cutoff: float, skin: float = 0.5) -> None:
        if cutoff <= 0 or skin < 0:
            raise ValueError(f"cutoff must be > 0 and skin >= 0, got {cutoff=}, {skin=}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        #: rebuilds of the list (of one system or more)
        self.n_builds = 0
        self._key: tuple | None = None

    def reset(self) -> None:
        """Forget the list: the next call rebuilds it (results then depend only on the
        positions, not on the history of calls: needed for bit-identical resumes)."""
        self._key = None

    def _stale_systems(self, frac, row_cell, system_idx) -> torch.Tensor:
        """[n_systems] bool: systems whose list may miss a pair inside the cutoff."""
        n_systems = row_cell.shape[0]
        key = (frac.shape[0], frac.device, frac.dtype, n_systems)
        if self._key != key or not torch.equal(system_idx, self._system_idx):
            return torch.ones(n_systems, dtype=torch.bool, device=frac.device)
        wraps = torch.round(frac - self._frac0)
        drift = torch.einsum("nk,nkl->nl", frac - wraps - self._frac0, row_cell[system_idx])
        max_disp = torch.zeros(n_systems, dtype=frac.dtype, device=frac.device).scatter_reduce(
            0, system_idx, drift.norm(dim=-1), reduce="amax"
        )
        deformation = torch.linalg.solve(self._cell0, row_cell)
        s_min = torch.linalg.svdvals(deformation).min(dim=-1).values
        return (self.cutoff + self.skin) * s_min - 2.0 * max_disp < self.cutoff

    def _build(self, positions, row_cell, system_idx, stale: torch.Tensor) -> None:
        """New pairs (global atom indices) for the ``stale`` systems; the others keep theirs."""
        reach = self.cutoff + self.skin
        systems = torch.nonzero(stale).flatten()
        atoms = torch.nonzero(stale[system_idx]).flatten()
        sub_idx = torch.searchsorted(systems, system_idx[atoms])  # 0..m-1
        sub_x, sub_cell = positions[atoms], row_cell[systems]
        if _VESIN_HALF and positions.device.type == "cpu" and _sorted(system_idx):
            i, j, shifts = _vesin_half_pairs(sub_x, sub_cell, sub_idx, reach)
        else:
            i, j, shifts = _half_list(*_build_pairs(sub_x, sub_cell, sub_idx, reach))
        i, j = atoms[i], atoms[j]
        pair_system = system_idx[i]
        for s in systems.tolist():
            mine = pair_system == s
            self._blocks[s] = (i[mine], j[mine], shifts[mine])
        self._i, self._j, self._shifts = (torch.cat([b[k] for b in self._blocks]) for k in range(3))
        self._pair_system = system_idx[self._i]

    def pair_vectors(
        self, positions: torch.Tensor, row_cell: torch.Tensor, system_idx: torch.Tensor
    ) -> NeighborPairs:
        """Pairs within cutoff + skin and their r_ij (differentiable in positions and cell).

        Rebuilds the pairs of each system whose skin criterion says they may be stale.
        """
        positions_d = positions.detach()
        row_cell_d = row_cell.detach()
        inverse = torch.linalg.inv(row_cell_d)
        frac = torch.einsum("nk,nkl->nl", positions_d, inverse[system_idx])
        stale = self._stale_systems(frac, row_cell_d, system_idx)
        if bool(stale.any()):
            if bool(stale.all()):  # first build, or a new batch: start afresh
                self._blocks = [None] * row_cell.shape[0]
                self._frac0 = frac
                self._cell0 = row_cell_d.clone()
            else:
                self._frac0 = torch.where(stale[system_idx].unsqueeze(-1), frac, self._frac0)
                self._cell0 = torch.where(stale.view(-1, 1, 1), row_cell_d, self._cell0)
            self._build(positions_d, row_cell_d, system_idx, stale)
            self._system_idx = system_idx.clone()
            self._key = (frac.shape[0], frac.device, frac.dtype, row_cell.shape[0])
            self.n_builds += 1
        wraps = torch.round(frac - self._frac0).to(torch.long)
        image = (self._shifts - wraps[self._j] + wraps[self._i]).to(row_cell.dtype)
        vectors = (
            positions[self._j]
            - positions[self._i]
            + torch.einsum("pk,pkl->pl", image, row_cell[self._pair_system])
        )
        return NeighborPairs(i=self._i, j=self._j, vectors=vectors, system=self._pair_system)
