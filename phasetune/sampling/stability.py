"""Unstable MD, per system in a batch: detect it, restart that system, report it.

A system is unstable after a step when any of these holds (the others are not touched):

* its energy, a force or a stress entry is NaN or infinite;
* its instantaneous temperature exceeds ``max_temperature_factor`` × its set point;
* an atom moved more than ``max_displacement_factor`` × its thermal step √(3k_BT/m)·dt in
  one step (atoms flying apart; 8× the rms speed is never reached by Maxwell–Boltzmann
  velocities: P(χ²₃ > 192) ≈ 10⁻⁴¹);
* its volume changed by more than a factor ``max_volume_step_factor`` between checks (a
  collapsing or exploding cell; a barostat moves the volume by well under 1 % a step, and
  large but slow fluctuations, as of a small ideal gas, are legitimate).

It is then put back to its last good snapshot (taken every ``stride`` steps) and continues
with its time step multiplied by ``timestep_factor``; after ``max_retries`` restarts it is
stopped (time step 0, every later frame flagged invalid). Each event is logged and kept in
``Frames.metadata["md_events"]``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from phasetune.settings import StabilitySettings
from phasetune.units import KB_EV_PER_K, fs_to_internal

__all__ = ["StabilityGuard", "StabilitySettings"]

log = logging.getLogger(__name__)
#: per-step state that a restart puts back
_SNAPSHOT_FIELDS = ("positions", "momenta", "cell", "energy", "forces", "stress")


@dataclass
class StabilityGuard:
    """Per-system time steps, last good snapshots, restart counts and the event log."""

    settings: StabilitySettings
    names: list[str]
    dt: torch.Tensor  # [n_systems], torch-sim time units
    reference_volume: torch.Tensor  # [n_systems], the volume after the previous step
    retries: torch.Tensor = field(init=False)
    stopped: torch.Tensor = field(init=False)
    events: list[dict] = field(default_factory=list)
    _snapshot: dict[str, torch.Tensor] = field(default_factory=dict)
    _previous_fractional: torch.Tensor | None = None
    _since_check: int = 0

    def __post_init__(self) -> None:
        n = len(self.names)
        self.retries = torch.zeros(n, dtype=torch.long)
        self.stopped = torch.zeros(n, dtype=torch.bool)

    @classmethod
    def start(cls, md, names: list[str], dt: torch.Tensor, settings: StabilitySettings):
        guard = cls(
            settings=settings,
            names=list(names),
            dt=dt.expand(md.n_systems).clone(),
            reference_volume=torch.linalg.det(md.cell).detach().clone(),
        )
        guard.snapshot(md)
        guard._previous_fractional = guard._fractional(md)
        return guard

    def snapshot(self, md, systems: torch.Tensor | None = None) -> None:
        """Remember the current state of ``systems`` (default: all) as the last good one."""
        if not self._snapshot or systems is None:
            self._snapshot = {k: getattr(md, k).detach().clone() for k in _SNAPSHOT_FIELDS}
            return
        atoms = systems[md.system_idx]
        for k in _SNAPSHOT_FIELDS:
            value = getattr(md, k)
            mask = atoms if value.shape[0] == md.n_atoms else systems
            self._snapshot[k][mask] = value.detach()[mask]

    @staticmethod
    def _fractional(md) -> torch.Tensor:
        inverse = torch.linalg.inv(md.row_vector_cell.detach())
        return torch.einsum("nk,nkl->nl", md.positions.detach(), inverse[md.system_idx])

    def _non_affine_step(self, md, fractional: torch.Tensor) -> torch.Tensor:
        """Displacement since the previous check without the barostat's affine scaling
        (fractional change, minimum image, in the current cell) [n_atoms, 3] in Å."""
        change = fractional - self._previous_fractional
        change = change - torch.round(torch.nan_to_num(change))
        return torch.einsum("nk,nkl->nl", change, md.row_vector_cell.detach()[md.system_idx])

    def unstable(self, md, kT: torch.Tensor) -> tuple[torch.Tensor, list[str]]:
        """Mask [n_systems] of systems that just became unstable, and why (one line each).

        NaN/inf is checked after every step; temperature, displacement and volume (the
        costlier checks) every ``check_every`` steps, against thresholds for that many.
        """
        n = len(self.names)  # (md.n_systems runs torch.unique on every call)
        idx = md.system_idx
        reasons = [""] * n
        self._since_check += 1
        finite = bool(torch.isfinite(md.energy).all()) and bool(torch.isfinite(md.forces).all())
        if finite and self._since_check < self.settings.check_every:
            return torch.zeros(n, dtype=torch.bool, device=idx.device), reasons
        steps, self._since_check = self._since_check, 0
        bad_atoms = ~torch.isfinite(md.forces).all(-1) | ~torch.isfinite(md.positions).all(-1)
        nonfinite = torch.zeros(n, dtype=torch.bool, device=idx.device).index_put_(
            (idx[bad_atoms],), torch.tensor(True, device=idx.device)
        )
        nonfinite |= ~torch.isfinite(md.energy) | ~torch.isfinite(md.stress).flatten(1).all(-1)
        kinetic = torch.zeros(n, dtype=md.momenta.dtype, device=idx.device).index_add(
            0, idx, 0.5 * (md.momenta**2 / md.masses.unsqueeze(-1)).sum(-1)
        )
        dof = md.get_number_of_degrees_of_freedom().to(kinetic.dtype)
        hot = 2 * kinetic / dof > self.settings.max_temperature_factor * kT
        thermal = steps * torch.sqrt(3 * kT[idx] / md.masses) * self.dt.to(kT)[idx]
        fractional = self._fractional(md)
        step = self._non_affine_step(md, fractional).norm(dim=-1) / thermal
        jump = torch.zeros(n, dtype=step.dtype, device=idx.device).scatter_reduce(
            0, idx, torch.nan_to_num(step, nan=float("inf")), reduce="amax", include_self=False
        )
        flying = jump > self.settings.max_displacement_factor
        volume = torch.linalg.det(md.cell).detach()
        ratio = volume / self.reference_volume
        f = self.settings.max_volume_step_factor**steps
        cell = ~torch.isfinite(ratio) | (ratio < 1 / f) | (ratio > f)
        bad = (nonfinite | hot | flying | cell) & ~self.stopped.to(idx.device)
        for k in torch.nonzero(bad).flatten().tolist():
            why = []
            if nonfinite[k]:
                why.append("NaN/inf energy, forces or stress")
            if hot[k]:
                t = float(2 * kinetic[k] / dof[k] / KB_EV_PER_K)
                why.append(f"temperature {t:.0f} K > {self.settings.max_temperature_factor:g}× set")
            if flying[k]:
                why.append(f"an atom moved {float(jump[k]):.1f}× its thermal step per step")
            if cell[k]:
                why.append(f"volume changed by a factor {float(ratio[k]):.2f}")
            reasons[k] = "; ".join(why)
        self._previous_fractional = fractional
        self.reference_volume = torch.where(bad, self.reference_volume, volume)
        return bad, reasons

    def _restore(self, md, systems: torch.Tensor):
        atoms = systems[md.system_idx]
        for k in _SNAPSHOT_FIELDS:
            value = getattr(md, k).clone()
            mask = atoms if value.shape[0] == md.n_atoms else systems
            value[mask] = self._snapshot[k][mask]
            setattr(md, k, value)
        return md

    def hold_stopped(self, md):
        """Keep stopped systems frozen at their last good state (whatever the model returned)."""
        stopped = self.stopped.to(md.system_idx.device)
        return self._restore(md, stopped) if bool(stopped.any()) else md

    def restart(self, md, bad: torch.Tensor, reasons: list[str], step: int):
        """Put ``bad`` systems back to their snapshot with a smaller time step (or stop them)."""
        md = self._restore(md, bad)
        self.reference_volume = torch.linalg.det(md.cell).detach().clone()
        self._since_check = 0
        for k in torch.nonzero(bad).flatten().tolist():
            self.retries[k] += 1
            if int(self.retries[k]) > self.settings.max_retries:
                self.stopped[k] = True
                self.dt[k] = 0.0
                action = f"stopped after {self.settings.max_retries} restarts"
            else:
                self.dt[k] = self.dt[k] * self.settings.timestep_factor
                dt_fs = float(self.dt[k]) / fs_to_internal(1.0)
                action = f"restarted from its last good frame, dt → {dt_fs:.3g} fs"
            event = {
                "system": self.names[k],
                "step": int(step),
                "reason": reasons[k],
                "action": action,
            }
            self.events.append(event)
            log.warning("%s at step %d: %s; %s", self.names[k], step, reasons[k], action)
        self._previous_fractional = self._fractional(md)
        return md
