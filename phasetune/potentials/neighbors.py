"""Batched Verlet neighbour list with a skin, robust to atoms wrapping and cells deforming.

The list holds each pair once (i < j, or a self-image pair counted once) within
``cutoff + skin`` together with its integer image shift S, so that

    r_ij = x_j − x_i + (S + n_j − n_i) · H

where H is the current row-vector cell and n_i counts how often atom i was wrapped back
into the cell since the list was built. The list is rebuilt only when a pair that was
outside ``cutoff + skin`` could have come inside ``cutoff``:

    (cutoff + skin) · s_min(H₀⁻¹H) − 2 · max_i |Δx_i| < cutoff,

with s_min the smallest singular value of the cell deformation since the build and Δx_i the
displacement of atom i relative to the affinely deformed reference positions.
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

    Args:
        cutoff: interaction cutoff in Å.
        skin: extra shell in Å; the list is valid until atoms move about skin/2.
    """

    def __init__(self, cutoff: float, skin: float = 0.5) -> None:
        if cutoff <= 0 or skin < 0:
            raise ValueError(f"cutoff must be > 0 and skin >= 0, got {cutoff=}, {skin=}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.n_builds = 0
        self._key: tuple | None = None

    def reset(self) -> None:
        """Forget the list: the next call rebuilds it (results then depend only on the
        positions, not on the history of calls: needed for bit-identical resumes)."""
        self._key = None

    def _needs_rebuild(self, frac, row_cell, system_idx) -> bool:
        key = (frac.shape[0], frac.device, frac.dtype, row_cell.shape[0])
        if self._key != key or not torch.equal(system_idx, self._system_idx):
            return True
        wraps = torch.round(frac - self._frac0)
        drift = torch.einsum("nk,nkl->nl", frac - wraps - self._frac0, row_cell[system_idx])
        max_disp = drift.norm(dim=-1).max()
        deformation = torch.linalg.solve(self._cell0, row_cell)
        s_min = torch.linalg.svdvals(deformation).min()
        reach = (self.cutoff + self.skin) * s_min - 2.0 * max_disp
        return bool(reach < self.cutoff)

    def pair_vectors(
        self, positions: torch.Tensor, row_cell: torch.Tensor, system_idx: torch.Tensor
    ) -> NeighborPairs:
        """Pairs within cutoff + skin and their r_ij (differentiable in positions and cell).

        Rebuilds the list first when the skin criterion says it may be stale.
        """
        positions_d = positions.detach()
        row_cell_d = row_cell.detach()
        inverse = torch.linalg.inv(row_cell_d)
        frac = torch.einsum("nk,nkl->nl", positions_d, inverse[system_idx])
        if self._needs_rebuild(frac, row_cell_d, system_idx):
            reach = self.cutoff + self.skin
            if _VESIN_HALF and positions_d.device.type == "cpu" and _sorted(system_idx):
                self._i, self._j, self._shifts = _vesin_half_pairs(
                    positions_d, row_cell_d, system_idx, reach
                )
            else:
                i, j, shifts = _build_pairs(positions_d, row_cell_d, system_idx, reach)
                self._i, self._j, self._shifts = _half_list(i, j, shifts)
            self._pair_system = system_idx[self._i]
            self._frac0 = frac
            self._cell0 = row_cell_d.clone()
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
