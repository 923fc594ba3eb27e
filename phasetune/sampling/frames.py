"""Stored frames of a batched sampling run, with lossless HDF5 persistence.

All per-frame arrays share a leading frame axis. Units: positions and cells in Å (cells in
ASE's row-vector convention), energies in eV, volumes in Å³, temperatures in K, pressures in
GPa. ``enthalpy`` is H = U + K + P₀V with P₀ the state point's set pressure (the quantity
Gibbs–Helmholtz integration needs), per system, in eV.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import h5py
import numpy as np
import torch

#: Names of the per-frame arrays, in storage order.
FRAME_ARRAYS = (
    "positions",
    "cell",
    "potential_energy",
    "kinetic_energy",
    "volume",
    "temperature",
    "pressure",
    "enthalpy",
    "phase_ok",
    "phase_fractions",
    "step",
)
_SYSTEM_ARRAYS = ("system_idx", "atomic_numbers", "masses")
FORMAT_VERSION = 1


@dataclass
class Frames:
    """Frames of ``n_systems`` state points sampled together.

    Per frame: positions [F, n_atoms, 3], cell [F, S, 3, 3], potential_energy,
    kinetic_energy, volume, temperature, pressure, enthalpy [F, S], phase_ok [F, S] (bool,
    False where the phase check flagged the frame), phase_fractions [F, S, n_phases],
    step [F]. Per atom: system_idx, atomic_numbers, masses. ``state_points`` holds one
    metadata dict per system (name, phase, temperature_K, pressure_GPa, cell_mode).
    """

    positions: torch.Tensor
    cell: torch.Tensor
    potential_energy: torch.Tensor
    kinetic_energy: torch.Tensor
    volume: torch.Tensor
    temperature: torch.Tensor
    pressure: torch.Tensor
    enthalpy: torch.Tensor
    phase_ok: torch.Tensor
    phase_fractions: torch.Tensor
    step: torch.Tensor
    system_idx: torch.Tensor
    atomic_numbers: torch.Tensor
    masses: torch.Tensor
    state_points: list[dict] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_systems(self) -> int:
        return int(self.cell.shape[1])

    @property
    def n_atoms_per_system(self) -> torch.Tensor:
        return torch.bincount(self.system_idx, minlength=self.n_systems)

    def valid_frames(self, system: int) -> torch.Tensor:
        """Indices of the frames of ``system`` that passed the phase check."""
        return torch.nonzero(self.phase_ok[:, system]).flatten()

    def system_positions(self, system: int) -> torch.Tensor:
        """Positions [F, n_atoms_of_system, 3] of one system."""
        return self.positions[:, self.system_idx == system]

    def select_system(self, system: int) -> Frames:
        """The frames of one system as a one-system :class:`Frames` (copies)."""
        if not 0 <= system < self.n_systems:
            raise IndexError(f"system {system} out of range (n_systems = {self.n_systems})")
        atoms = self.system_idx == system
        per_frame = {
            name: getattr(self, name)[:, system : system + 1].clone()
            for name in FRAME_ARRAYS
            if name not in ("positions", "step")
        }
        return Frames(
            positions=self.positions[:, atoms].clone(),
            step=self.step.clone(),
            **per_frame,
            system_idx=torch.zeros(int(atoms.sum()), dtype=self.system_idx.dtype),
            atomic_numbers=self.atomic_numbers[atoms].clone(),
            masses=self.masses[atoms].clone(),
            state_points=[dict(self.state_points[system])] if self.state_points else [],
            metadata=dict(self.metadata),
        )

    def last_atoms(self, system: int = 0):
        """ASE atoms of ``system`` in its last stored frame (a warm start for more sampling)."""
        from ase import Atoms

        atoms = self.system_idx == system
        return Atoms(
            numbers=self.atomic_numbers[atoms].numpy(),
            positions=self.positions[-1, atoms].double().numpy(),
            cell=self.cell[-1, system].double().numpy(),
            masses=self.masses[atoms].double().numpy(),
            pbc=True,
        )

    @classmethod
    def from_atoms(
        cls,
        configurations,
        *,
        state_point: dict | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> Frames:
        """Frames of one system from ASE configurations (same atoms, any cells), e.g. an
        external trajectory to reweight. Energies, temperatures, pressures and enthalpies are
        unknown (NaN), the volume is the cell's, every frame counts as in its phase."""
        configurations = list(configurations)
        if not configurations:
            raise ValueError("no configurations given")
        first = configurations[0]
        for k, atoms in enumerate(configurations):
            if len(atoms) != len(first) or (atoms.numbers != first.numbers).any():
                raise ValueError(f"configuration {k} has other atoms than configuration 0")
        n = len(configurations)
        unknown = torch.full((n, 1), float("nan"), dtype=torch.float64)
        return cls(
            positions=torch.as_tensor(np.stack([a.positions for a in configurations]), dtype=dtype),
            cell=torch.as_tensor(
                np.stack([a.cell.array for a in configurations])[:, None], dtype=dtype
            ),
            potential_energy=unknown.clone(),
            kinetic_energy=unknown.clone(),
            volume=torch.tensor([[a.get_volume()] for a in configurations], dtype=torch.float64),
            temperature=unknown.clone(),
            pressure=unknown.clone(),
            enthalpy=unknown.clone(),
            phase_ok=torch.ones(n, 1, dtype=torch.bool),
            phase_fractions=torch.ones(n, 1, 1, dtype=torch.float64),
            step=torch.arange(n),
            system_idx=torch.zeros(len(first), dtype=torch.long),
            atomic_numbers=torch.as_tensor(first.numbers, dtype=torch.long),
            masses=torch.as_tensor(first.get_masses(), dtype=torch.float64),
            state_points=[dict(state_point)] if state_point else [],
        )

    def valid_mean(self, name: str) -> torch.Tensor:
        """Mean of a per-frame, per-system array over each system's valid frames [n_systems].

        NaN for a system without a valid frame (never a mean over frames that left the phase).
        """
        values = getattr(self, name)
        kept = torch.where(self.phase_ok, values, torch.zeros_like(values))  # NaN-safe
        return kept.sum(0) / self.phase_ok.sum(0).to(values.dtype)

    def summary(self) -> list[str]:
        """One human-readable line per state point with means over valid frames."""
        n = self.n_atoms_per_system.to(self.volume.dtype)
        temperature, pressure = self.valid_mean("temperature"), self.valid_mean("pressure")
        volume = self.valid_mean("volume") / n
        energy = self.valid_mean("potential_energy") / n
        lines = []
        for k, sp in enumerate(self.state_points):
            n_ok = int(self.phase_ok[:, k].sum())
            if n_ok == 0:
                lines.append(f"{sp['name']}: no valid frame (phase check failed in all)")
                continue
            lines.append(
                f"{sp['name']}: {n_ok}/{self.n_frames} valid frames, "
                f"T = {float(temperature[k]):.1f} K (set {sp['temperature_K']:g}), "
                f"P = {float(pressure[k]):.3f} GPa (set {sp['pressure_GPa']:g}), "
                f"V/N = {float(volume[k]):.3f} Å³, "
                f"U/N = {float(energy[k]):.4f} eV"
            )
        return lines

    def save(self, path: str | Path) -> Path:
        """Write to HDF5 (float64 stays float64) via a temporary file and an atomic rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        with h5py.File(tmp, "w") as h5:
            h5.attrs["format_version"] = FORMAT_VERSION
            h5.attrs["state_points"] = json.dumps(self.state_points)
            h5.attrs["metadata"] = json.dumps(self.metadata)
            for name in FRAME_ARRAYS + _SYSTEM_ARRAYS:
                h5.create_dataset(name, data=getattr(self, name).detach().cpu().numpy())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Frames:
        """Read frames written by :meth:`save`."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no frames file at {path}")
        with h5py.File(path, "r") as h5:
            version = int(h5.attrs.get("format_version", -1))
            if version != FORMAT_VERSION:
                raise ValueError(f"{path}: frames format {version}, expected {FORMAT_VERSION}")
            arrays = {
                name: torch.from_numpy(np.asarray(h5[name]))
                for name in FRAME_ARRAYS + _SYSTEM_ARRAYS
            }
            state_points = json.loads(h5.attrs["state_points"])
            metadata = json.loads(h5.attrs["metadata"])
        return cls(**arrays, state_points=state_points, metadata=metadata)

    def equals(self, other: Frames) -> bool:
        """Exact equality of every array (NaN equals NaN: unused fractions) and the metadata."""
        for f in fields(self):
            a, b = getattr(self, f.name), getattr(other, f.name)
            if isinstance(a, torch.Tensor):
                if a.dtype != b.dtype or a.shape != b.shape:
                    return False
                if not (torch.equal(a, b) or _equal_with_nan(a, b)):
                    return False
            elif a != b:
                return False
        return True


def _equal_with_nan(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise-equal values where both are numbers, and NaN at the same places."""
    if not a.is_floating_point():
        return False
    nan = torch.isnan(a)
    return bool(torch.equal(nan, torch.isnan(b)) and torch.equal(a[~nan], b[~nan]))
