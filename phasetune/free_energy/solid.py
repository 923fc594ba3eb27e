"""Absolute Gibbs free energy of a crystal at (T, P) by nonequilibrium Frenkel–Ladd switching.

1. NPT run of the crystal: the average cell, the average lattice sites, and the atoms'
   mean-square displacement ⟨u²⟩ about them, which sets the Einstein spring k = 3k_BT/⟨u²⟩.
2. In that average cell, replicas switch U → U_E (springs on the sites) and back with the
   centre of mass fixed (:func:`~phasetune.free_energy.switching.nonequilibrium_switching`):
   W_rev = (W_fwd − W_bwd)/2 = F_E^CM − F^CM.
3. Free energy (classical, no 1/N! for the crystal since atoms are tied to sites):

       βF = βF_E − β W_rev − (3/2) ln(βkN/2π) − ln(V/N_cells),

   with βF_E = 3N ln(βħω) the Einstein crystal, −(3/2) ln(βkN/2π) undoing its centre-of-mass
   constraint, and −ln(V/N_cells) restoring the free centre of mass, which ranges over one
   primitive cell (N_cells = N / atoms per primitive cell) before the crystal maps onto a
   relabelled copy of itself (Polson, Trizac, Pronk & Frenkel, J. Chem. Phys. 112, 5339
   (2000)).
4. G = F + P V at the average volume.
5. Optionally (``finite_size_correction``), minus the harmonic crystal's own finite-size error
   [F_h(N) − F_h(∞)]/N from its phonons: for LJ fcc it is −0.072/−0.032/−0.017 k_BT at
   N = 108/256/500 (T* = 2, ρ* = 1.28) and accounts for the whole N-dependence of the
   Frenkel–Ladd result there (bench/RESULTS.md). Or, where the harmonic crystal is unstable
   (bcc Ti) or anharmonicity matters, ``"extrapolate"``: G/N at N₁ and at a larger N₂ ≈ f N₁
   of the same lattice, extrapolated linearly in 1/N (:func:`extrapolate_to_bulk`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch_sim as ts
from ase import Atoms
from torch_sim.models.interface import ModelInterface

from phasetune.free_energy.einstein import (
    EinsteinCrystal,
    einstein_free_energy_per_atom_eV,
    spring_constant_from_msd,
)
from phasetune.free_energy.harmonic import harmonic_finite_size_correction_eV
from phasetune.free_energy.phonons import force_constant_range_A, harmonic_finite_size_error_eV
from phasetune.free_energy.switching import LambdaPath, nonequilibrium_switching
from phasetune.free_energy.systematics import extrapolate_to_bulk
from phasetune.sampling.frames import Frames
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points
from phasetune.settings import FrenkelLaddSettings
from phasetune.structures import larger_crystal
from phasetune.units import EV_PER_A3_PER_GPA, KB_EV_PER_K

log = logging.getLogger(__name__)

#: Atoms per primitive cell of each crystal phasetune builds.
ATOMS_PER_PRIMITIVE_CELL = {"fcc": 1, "bcc": 1, "hcp": 2}


@dataclass
class SolidFreeEnergy:
    """G/N of a crystal at (T, P), in eV per atom, with its parts and diagnostics."""

    phase: str
    temperature_K: float
    pressure_GPa: float
    g_eV_per_atom: float
    g_error_eV: float
    f_eV_per_atom: float
    volume_A3_per_atom: float
    spring_eV_A2: float
    msd_A2: float
    n_atoms: int
    work_reversible_eV: np.ndarray
    dissipation_eV: np.ndarray
    #: [F(N) − F(∞)]/N already subtracted from f and g (0 when none was applied)
    finite_size_correction_eV: float = 0.0
    #: (N, G/N, its error) of each box an extrapolated result comes from, else empty
    extrapolated_from: tuple[tuple[int, float, float], ...] = ()

    def describe(self) -> str:
        return (
            f"{self.phase} at {self.temperature_K:g} K, {self.pressure_GPa:g} GPa: "
            f"G/N = {self.g_eV_per_atom:.5f} ± {self.g_error_eV:.5f} eV "
            f"(F/N = {self.f_eV_per_atom:.5f} eV, V/N = {self.volume_A3_per_atom:.3f} Å³, "
            f"k = {self.spring_eV_A2:.3f} eV/Å², dissipation "
            f"{float(np.mean(self.dissipation_eV)) / self.n_atoms * 1e3:.2f} meV/atom"
            + (
                f", finite-size correction {-self.finite_size_correction_eV * 1e3:+.3f} meV/atom"
                if self.finite_size_correction_eV
                else ""
            )
            + "".join(
                f"{', extrapolated in 1/N from' if i == 0 else ' and'} N = {n}: {g:.5f} ± {e:.5f}"
                for i, (n, g, e) in enumerate(self.extrapolated_from)
            )
            + ")"
        )

    def as_dict(self) -> dict:
        return {
            "method": "frenkel_ladd",
            "phase": self.phase,
            "temperature_K": self.temperature_K,
            "pressure_GPa": self.pressure_GPa,
            "g_eV_per_atom": self.g_eV_per_atom,
            "g_error_eV": self.g_error_eV,
            "f_eV_per_atom": self.f_eV_per_atom,
            "volume_A3_per_atom": self.volume_A3_per_atom,
            "spring_eV_A2": self.spring_eV_A2,
            "msd_A2": self.msd_A2,
            "n_atoms": self.n_atoms,
            "finite_size_correction_eV": self.finite_size_correction_eV,
            "extrapolated_from": [list(box) for box in self.extrapolated_from],
        }


def harmonic_finite_size_error(
    model: ModelInterface, lattice: Atoms, *, phase: str, temperature_K: float
) -> float | None:
    """[F_h(N) − F_h(∞)]/N (eV) of the periodic crystal ``lattice``, or None where unknown.

    Lennard-Jones fcc in a cubic 4n³ box: the analytic lattice sum
    (:func:`~phasetune.free_energy.harmonic.harmonic_finite_size_correction_eV`); any other
    model whose force-constant range is known: from its own force constants
    (:func:`~phasetune.free_energy.phonons.harmonic_finite_size_error_eV`). Raises
    ``ValueError`` for a mechanically unstable lattice.
    """
    known = harmonic_finite_size_correction_eV(
        model, lattice, phase=phase, temperature_K=temperature_K
    )
    if known is not None or force_constant_range_A(model) is None:
        return known
    return harmonic_finite_size_error_eV(
        model,
        lattice,
        atoms_per_primitive_cell=ATOMS_PER_PRIMITIVE_CELL[phase],
        temperature_K=temperature_K,
    )


def average_lattice(frames: Frames, system: int, reference: Atoms) -> tuple[Atoms, float]:
    """Average cell and sites of a crystal's NPT frames, and ⟨u²⟩ about the sites (Å²).

    Displacements are taken in fractional coordinates relative to the starting lattice
    (minimum image), with each frame's centre-of-mass drift removed.
    """
    ok = frames.valid_frames(system)
    if len(ok) < 2:
        raise RuntimeError(
            f"only {len(ok)} NPT frames of the crystal kept its structure; it melted or "
            "transformed at this (T, P)"
        )
    atoms_of = (frames.system_idx == system).nonzero().flatten()
    cells = frames.cell[ok, system].double()
    positions = frames.positions[ok][:, atoms_of].double()
    frac = torch.linalg.solve(cells.transpose(-1, -2), positions.transpose(-1, -2))
    frac = frac.transpose(-1, -2)  # [F, N, 3]: positions = frac @ cell
    frac_ref = torch.as_tensor(reference.get_scaled_positions(wrap=False), dtype=torch.float64)
    ds = frac - frac_ref
    ds = ds - torch.round(ds)
    ds = ds - ds.mean(1, keepdim=True)  # centre-of-mass drift (equal masses per species)
    mean_cell = cells.mean(0)
    mean_ds = ds.mean(0)
    u = (ds - mean_ds) @ mean_cell
    msd = float((u**2).sum(-1).mean())
    lattice = reference.copy()
    lattice.set_cell(mean_cell.numpy(), scale_atoms=False)
    lattice.set_scaled_positions((frac_ref + mean_ds).numpy())
    return lattice, msd


def _check_crystal(atoms: Atoms, phase: str) -> None:
    if phase not in ATOMS_PER_PRIMITIVE_CELL:
        raise ValueError(f"phase must be one of {', '.join(ATOMS_PER_PRIMITIVE_CELL)}")
    if len(set(atoms.get_atomic_numbers().tolist())) != 1:
        raise ValueError("Frenkel-Ladd here handles one element (equal masses) for now")


def solid_free_energy(
    model: ModelInterface,
    atoms: Atoms,
    *,
    phase: str,
    temperature_K: float,
    pressure_GPa: float = 0.0,
    settings: FrenkelLaddSettings | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> SolidFreeEnergy:
    """G/N of the crystal ``atoms`` (a perfect lattice of ``phase``) at (T, P)."""
    settings = settings or FrenkelLaddSettings()
    _check_crystal(atoms, phase)
    device = torch.device(device) if device is not None else model.device
    if settings.finite_size_correction == "extrapolate":
        one_box = dataclasses.replace(settings, finite_size_correction="none")
        n_larger = math.ceil(settings.extrapolation_size_factor * len(atoms))
        boxes = [
            solid_free_energy(
                model,
                crystal,
                phase=phase,
                temperature_K=temperature_K,
                pressure_GPa=pressure_GPa,
                settings=one_box,
                device=device,
                dtype=dtype,
            )
            for crystal in (atoms, larger_crystal(atoms, phase, n_atoms=n_larger))
        ]
        return extrapolated_free_energy(*boxes)
    n_cells = settings.n_replicas if settings.independent_cells else 1
    frames, _ = sample_state_points(
        model,
        [
            StatePoint(
                name=f"{phase}_npt" if n_cells == 1 else f"{phase}_npt_{i}",  # seeds by name
                phase=phase,
                atoms=atoms,
                temperature_K=temperature_K,
                pressure_GPa=pressure_GPa,
            )
            for i in range(n_cells)
        ],
        SamplerSettings(
            timestep_fs=settings.timestep_fs,
            equilibration_steps=settings.npt_equilibration_steps,
            production_steps=settings.npt_production_steps,
            stride=settings.npt_stride,
            barostat_tau_fs=settings.barostat_tau_fs,
            compressibility_per_GPa=settings.compressibility_per_GPa,
            thermostat="langevin",
            seed=settings.seed,
            progress=settings.progress,
        ),
        device=device,
        dtype=dtype,
    )
    lattices, msds = zip(*(average_lattice(frames, i, atoms) for i in range(n_cells)), strict=True)
    springs = [spring_constant_from_msd(msd_A2=m, temperature_K=temperature_K) for m in msds]
    return frenkel_ladd_free_energy(
        model,
        lattices[0] if n_cells == 1 else list(lattices),
        phase=phase,
        temperature_K=temperature_K,
        spring_eV_A2=springs[0] if n_cells == 1 else springs,
        pressure_GPa=pressure_GPa,
        settings=settings,
        msd_A2=float(np.mean(msds)),
        device=device,
        dtype=dtype,
    )


def frenkel_ladd_free_energy(
    model: ModelInterface,
    lattice: Atoms | Sequence[Atoms],
    *,
    phase: str,
    temperature_K: float,
    spring_eV_A2: float | Sequence[float],
    pressure_GPa: float = 0.0,
    settings: FrenkelLaddSettings | None = None,
    msd_A2: float = float("nan"),
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> SolidFreeEnergy:
    """Steps 2–5 of the module docstring in a given cell and on given sites (``lattice``).

    ``n_replicas`` copies switch U → U_E (springs ``spring_eV_A2`` on the sites of
    ``lattice``) and back with the centre of mass fixed; F assembles the Einstein crystal,
    W_rev and the centre-of-mass terms, and G = F + P V with V the volume of ``lattice``.
    :func:`solid_free_energy` calls this with the NPT-averaged lattice and k = 3k_BT/⟨u²⟩.
    A list of ``n_replicas`` lattices and springs gives each replica its own (cells and sites
    of independent NPT runs, ``independent_cells``): each replica's G then carries its own
    cell's and sites' noise, and their spread is the error.
    """
    settings = settings or FrenkelLaddSettings()
    lattices = list(lattice) if not isinstance(lattice, Atoms) else [lattice]
    springs = np.atleast_1d(np.asarray(spring_eV_A2, dtype=np.float64))
    if len(lattices) > 1 and not len(lattices) == len(springs) == settings.n_replicas:
        raise ValueError(
            f"give one lattice and one spring per replica ({settings.n_replicas}), got "
            f"{len(lattices)} lattices and {len(springs)} springs"
        )
    for one in lattices:
        _check_crystal(one, phase)
    if not np.all(springs > 0):
        raise ValueError(f"spring_eV_A2 must be > 0, got {spring_eV_A2}")
    if len({len(one) for one in lattices}) != 1:
        raise ValueError("the replicas' lattices must have the same number of atoms")
    if len(lattices) == 1:
        lattices, springs = lattices * settings.n_replicas, np.repeat(springs, settings.n_replicas)
    device = torch.device(device) if device is not None else model.device
    msd = float(msd_A2)
    n = len(lattices[0])
    correction = 0.0
    if settings.finite_size_correction != "none":
        try:
            known = harmonic_finite_size_error(
                model, lattices[0], phase=phase, temperature_K=temperature_K
            )
        except ValueError as error:  # e.g. a mechanically unstable lattice
            if settings.finite_size_correction == "harmonic":
                raise
            log.warning("no harmonic finite-size correction for %s: %s", phase, error)
            known = None
        if known is None and settings.finite_size_correction == "harmonic":
            raise ValueError(
                "finite_size_correction='harmonic' needs the force-constant range of the model "
                f"(known for EAM and Lennard-Jones; got {type(model).__name__}); use 'auto' or "
                "'none'"
            )
        correction = known or 0.0
    state = ts.io.atoms_to_state(lattices, device=device, dtype=dtype)
    spring_per_atom = torch.as_tensor(springs, dtype=dtype).repeat_interleave(n)
    path = LambdaPath(
        model,
        EinsteinCrystal(sites=state.positions, spring_eV_A2=spring_per_atom, device=device),
        fix_center_of_mass=True,
    )
    result = nonequilibrium_switching(
        path,
        state,
        temperature_K=torch.tensor(temperature_K),
        timestep_fs=settings.timestep_fs,
        equilibration_steps=settings.switching_equilibration_steps,
        switching_steps=settings.switching_steps,
        friction_time_fs=settings.friction_time_fs,
        seed=settings.seed + 1,
        progress=settings.progress,
    )
    kT = KB_EV_PER_K * temperature_K
    volumes = np.array([float(one.get_volume()) for one in lattices])
    mass = float(lattices[0].get_masses()[0])
    w_rev = result.delta_f.detach().double().cpu().numpy()  # F_E^CM − F^CM per replica
    f_einstein = n * np.array(
        [
            einstein_free_energy_per_atom_eV(
                spring_eV_A2=float(k), mass_amu=mass, temperature_K=temperature_K
            )
            for k in springs
        ]
    )
    n_cells = n / ATOMS_PER_PRIMITIVE_CELL[phase]
    centre_of_mass = -kT * (
        1.5 * np.log(springs * n / (2 * math.pi * kT)) + np.log(volumes / n_cells)
    )
    f_total = f_einstein - w_rev + centre_of_mass
    f_total = f_total - n * correction
    pv = pressure_GPa * EV_PER_A3_PER_GPA * volumes
    g = (f_total + pv) / n
    volume, spring = float(volumes.mean()), float(springs.mean())
    return SolidFreeEnergy(
        phase=phase,
        temperature_K=float(temperature_K),
        pressure_GPa=float(pressure_GPa),
        g_eV_per_atom=float(g.mean()),
        g_error_eV=float(g.std(ddof=1) / math.sqrt(len(g))),
        f_eV_per_atom=float(f_total.mean() / n),
        volume_A3_per_atom=volume / n,
        spring_eV_A2=spring,
        msd_A2=msd,
        n_atoms=n,
        work_reversible_eV=w_rev,
        dissipation_eV=result.dissipation.detach().double().cpu().numpy(),
        finite_size_correction_eV=correction,
    )


def extrapolated_free_energy(small: SolidFreeEnergy, large: SolidFreeEnergy) -> SolidFreeEnergy:
    """One :class:`SolidFreeEnergy` of the bulk crystal from the same crystal at two sizes.

    G/N and F/N are extrapolated in 1/N (:func:`extrapolate_to_bulk`); volume, spring and
    ⟨u²⟩ are the larger box's; the dissipation kept is the box's with the larger dissipation
    per atom (its bias enters both boxes alike, so y∞ carries about the same), rescaled to
    N₁ atoms, so that ``dissipation_eV / n_atoms`` stays per atom.
    """
    sizes = (small.n_atoms, large.n_atoms)
    g, g_error = extrapolate_to_bulk(
        sizes, (small.g_eV_per_atom, large.g_eV_per_atom), (small.g_error_eV, large.g_error_eV)
    )
    f, _ = extrapolate_to_bulk(sizes, (small.f_eV_per_atom, large.f_eV_per_atom), (0.0, 0.0))
    per_atom = [float(np.mean(b.dissipation_eV)) / b.n_atoms for b in (small, large)]
    worst = (small, large)[int(np.argmax(per_atom))]
    return dataclasses.replace(
        large,
        g_eV_per_atom=g,
        g_error_eV=g_error,
        f_eV_per_atom=f,
        n_atoms=small.n_atoms,
        work_reversible_eV=small.work_reversible_eV,
        dissipation_eV=np.asarray(worst.dissipation_eV) * small.n_atoms / worst.n_atoms,
        finite_size_correction_eV=small.g_eV_per_atom - g,
        extrapolated_from=tuple((b.n_atoms, b.g_eV_per_atom, b.g_error_eV) for b in (small, large)),
    )
