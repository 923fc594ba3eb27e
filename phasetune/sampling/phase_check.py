r"""Per-frame phase-identity check: did a solid melt or transform, did a liquid crystallise?

Every atom is classified as ``fcc``, ``hcp``, ``bcc`` or ``liquid`` from its local bond
orientational order, and each system of a batched (torch-sim layout) frame is compared with
the phase it is supposed to be in.

Method
------
Each atom's local order comes from :mod:`phasetune.sampling.local_order`: its SANN
neighbours (van Meel et al. 2012), the Lechner–Dellago averaged Steinhardt q̄₄, q̄₆
(J. Chem. Phys. 129, 114707 (2008)) and ten Wolde's count ξ of solid bonds, neighbours j
with q̂₆(i)·q̂₆(j) > 0.7 (the equations and the ideal crystals' values are in that module).

Classification and thresholds
-----------------------------
The thresholds below rest on reference distributions of q̄₄, q̄₆, ξ and the SANN count
measured on rattled ideal crystals and on Lennard-Jones crystals and liquids from MD; the
tables are in ``docs/phase_check.md``.

1. *Solid-like* iff q̄₆ ≥ :data:`Q6_SOLID` = 0.28 and ξ ≥ :data:`MIN_SOLID_BONDS` = 4;
   otherwise ``liquid``. In liquids fewer than 1 % of atoms reach q̄₆ = 0.28 (the largest
   value seen was 0.30, in the densest liquid) and essentially none has 4 coherent bonds,
   while crystals stay above both up to u/d ≈ 12–14 %. The solid-bond condition guards
   against liquid atoms with locally high but incoherent (e.g. icosahedral) order.
2. A solid-like atom takes the crystal whose reference q̄₄ is nearest; the decision
   boundaries :data:`Q4_BCC_HCP` = 0.055 and :data:`Q4_HCP_FCC` = 0.125 lie between the
   measured distributions (docs/phase_check.md). q̄₆ is not used for this: thermal noise
   lowers q̄₆ of all three crystals by more (≈ 0.1 from u = 0 to 12 %) than it separates
   bcc from hcp, whereas q̄₄ barely moves with temperature (the "correct" column there).

Per-system fractions are then compared with the expected phase by :func:`check_phase`:
a solid passes if at least ``min_fraction`` (default 0.5) of its atoms have its structure;
a liquid passes if at most ``max_solid_fraction`` (default 0.2) of its atoms are solid-like.

Conventions as in :mod:`phasetune.sampling.local_order` (batched frames, row-vector cells,
periodic, no gradients, dtype and device of ``positions``). Cost: ≈ 15 ms for 8 systems ×
256 atoms on two CPU threads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from phasetune.sampling.local_order import LocalOrder, local_order, validate_batch
from phasetune.structures import PHASES

# PHASES (shared with phasetune.structures) gives the column order of phase_fractions.
#: index of ``liquid`` in :data:`PHASES` (the last axis of phase fractions, atom labels)
LIQUID_INDEX = PHASES.index("liquid")

#: q̄₆ at or above which an atom is solid-like.
Q6_SOLID = 0.28
#: Minimum number of coherent bonds of a solid-like atom.
MIN_SOLID_BONDS = 4
#: q̄₄ boundary between bcc (below) and hcp (above).
Q4_BCC_HCP = 0.055
#: q̄₄ boundary between hcp (below) and fcc (above).
Q4_HCP_FCC = 0.125


def classify_local_order(order: LocalOrder) -> torch.Tensor:
    """Phase index (into :data:`PHASES`) of every atom from its :class:`LocalOrder`."""
    solid = (order.q6_bar >= Q6_SOLID) & (order.solid_bonds >= MIN_SOLID_BONDS)
    crystal = torch.where(
        order.q4_bar >= Q4_HCP_FCC,
        PHASES.index("fcc"),
        torch.where(order.q4_bar >= Q4_BCC_HCP, PHASES.index("hcp"), PHASES.index("bcc")),
    )
    return torch.where(solid, crystal, torch.full_like(crystal, LIQUID_INDEX))


@torch.no_grad()
def classify_atoms(
    positions: torch.Tensor,
    cell: torch.Tensor,
    system_idx: torch.Tensor,
    *,
    neighbour_search: str = "auto",
) -> torch.Tensor:
    """Phase index (into :data:`PHASES`) of every atom, [n_atoms] long.

    Same arguments as :func:`local_order`.
    """
    order = local_order(positions, cell, system_idx, neighbour_search=neighbour_search)
    return classify_local_order(order)


def _fractions(labels: torch.Tensor, system_idx: torch.Tensor, n_systems: int) -> torch.Tensor:
    flat = system_idx * len(PHASES) + labels
    counts = torch.bincount(flat, minlength=n_systems * len(PHASES)).reshape(n_systems, -1)
    return counts / counts.sum(1, keepdim=True)


@torch.no_grad()
def phase_fractions(
    positions: torch.Tensor,
    cell: torch.Tensor,
    system_idx: torch.Tensor,
    *,
    neighbour_search: str = "auto",
) -> torch.Tensor:
    """Fraction of each system's atoms in each phase, [n_systems, len(PHASES)].

    Columns follow :data:`PHASES`; rows sum to 1; dtype and device of ``positions``.
    Same arguments as :func:`local_order`.
    """
    positions, cell, system_idx = validate_batch(positions, cell, system_idx)
    labels = classify_atoms(positions, cell, system_idx, neighbour_search=neighbour_search)
    return _fractions(labels, system_idx, cell.shape[0]).to(positions.dtype)


@dataclass
class PhaseCheckResult:
    """Outcome of :func:`check_phase` for one batched frame.

    Attributes:
        ok: [n_systems] bool, False where the system left its expected phase.
        fractions: [n_systems, len(PHASES)] fraction of atoms per phase.
        dominant: most frequent phase of each system.
        expected: expected phase of each system.
        labels: [n_atoms] phase index (into :data:`PHASES`) of each atom.
    """

    ok: torch.Tensor
    fractions: torch.Tensor
    dominant: list[str]
    expected: list[str]
    labels: torch.Tensor

    @property
    def failed(self) -> list[int]:
        """Indices of the systems that failed the check."""
        return torch.nonzero(~self.ok).flatten().tolist()

    def describe(self, *, failures_only: bool = False) -> list[str]:
        """One readable line per system, e.g. ``"system 3: expected fcc, found 62% liquid"``."""
        lines = []
        for s, (expected, dominant) in enumerate(zip(self.expected, self.dominant, strict=True)):
            ok = bool(self.ok[s])
            if failures_only and ok:
                continue
            frac = self.fractions[s]
            f_exp = float(frac[PHASES.index(expected)])
            f_dom = float(frac[PHASES.index(dominant)])
            if ok:
                lines.append(f"system {s}: {expected} ok ({f_exp:.0%} {expected})")
                continue
            line = f"system {s}: expected {expected}, found {f_dom:.0%} {dominant}"
            if expected == "liquid":
                line += f" ({1.0 - f_exp:.0%} solid-like)"
            elif dominant != expected:
                line += f" (only {f_exp:.0%} {expected})"
            lines.append(line)
        return lines


def _expected_phases(expected: str | Sequence[str], n_systems: int) -> list[str]:
    names = [expected] * n_systems if isinstance(expected, str) else list(expected)
    if len(names) != n_systems:
        raise ValueError(f"expected has {len(names)} phases for {n_systems} systems")
    out = []
    for name in names:
        key = str(name).strip().lower() if isinstance(name, str) else name
        if key not in PHASES:
            raise ValueError(f"unknown phase {name!r}; valid phases are {', '.join(PHASES)}")
        out.append(key)
    return out


@torch.no_grad()
def check_phase(
    positions: torch.Tensor,
    cell: torch.Tensor,
    system_idx: torch.Tensor,
    expected: str | Sequence[str],
    *,
    min_fraction: float = 0.5,
    max_solid_fraction: float = 0.2,
    neighbour_search: str = "auto",
) -> PhaseCheckResult:
    """Check that every system of a frame is still in its expected phase.

    Args:
        positions: [n_atoms, 3] positions of all systems, concatenated.
        cell: [n_systems, 3, 3] row-vector cells (ASE convention), periodic.
        system_idx: [n_atoms] system of each atom.
        expected: one phase of :data:`PHASES` per system (a single name applies to all).
        min_fraction: a solid passes if at least this fraction of its atoms has the
            expected structure (fails when it melted or transformed).
        max_solid_fraction: a liquid passes if at most this fraction of its atoms is
            solid-like (any crystal class; fails when it crystallised).
        neighbour_search: see :func:`local_order`.

    Returns:
        :class:`PhaseCheckResult` with ``ok`` [n_systems] and the per-phase fractions.
    """
    if not 0.0 <= min_fraction <= 1.0 or not 0.0 <= max_solid_fraction <= 1.0:
        raise ValueError(
            f"fractions must lie in [0, 1], got {min_fraction=}, {max_solid_fraction=}"
        )
    positions, cell, system_idx = validate_batch(positions, cell, system_idx)
    n_systems = cell.shape[0]
    names = _expected_phases(expected, n_systems)
    labels = classify_atoms(positions, cell, system_idx, neighbour_search=neighbour_search)
    fractions = _fractions(labels, system_idx, n_systems).to(positions.dtype)
    column = torch.tensor([PHASES.index(n) for n in names], device=fractions.device)
    f_expected = fractions.gather(1, column[:, None]).squeeze(1)
    is_liquid = column == LIQUID_INDEX
    ok = torch.where(is_liquid, 1.0 - f_expected <= max_solid_fraction, f_expected >= min_fraction)
    dominant = [PHASES[k] for k in fractions.argmax(1).tolist()]
    return PhaseCheckResult(
        ok=ok, fractions=fractions, dominant=dominant, expected=names, labels=labels
    )
