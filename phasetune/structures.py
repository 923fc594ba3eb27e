"""Starting structures for each phase, as ASE ``Atoms`` supercells with orthogonal cells.

Orthogonal cells let the anisotropic barostat relax every lattice parameter (for hcp, a and c
independently through the orthorhombic a × √3a × c cell). A liquid starts as the fcc crystal
at the requested density, thinned to exactly the requested number of atoms (unless that is
the fcc count already; a count no crystal of the box fits frustrates recrystallisation of an
undercooled liquid); the sampler melts it during equilibration (``melt_steps``).
"""

from __future__ import annotations

import math

import numpy as np
from ase import Atoms
from ase.build import bulk

#: Phases phasetune knows how to build and check.
PHASES = ("fcc", "hcp", "bcc", "liquid")


def _unit_cell(phase: str, element: str, lattice_A: float, c_over_a: float | None) -> Atoms:
    if phase in ("fcc", "liquid"):
        return bulk(element, "fcc", a=lattice_A, cubic=True)
    if phase == "bcc":
        return bulk(element, "bcc", a=lattice_A, cubic=True)
    if phase == "hcp":
        ratio = math.sqrt(8.0 / 3.0) if c_over_a is None else c_over_a
        return bulk(element, "hcp", a=lattice_A, c=ratio * lattice_A, orthorhombic=True)
    raise ValueError(f"unknown phase {phase!r}; choose one of {', '.join(PHASES)}")


def build_structure(
    phase: str,
    *,
    element: str,
    lattice_A: float,
    n_atoms: int,
    c_over_a: float | None = None,
) -> Atoms:
    """A near-cubic supercell of ``phase`` with at least ``n_atoms`` atoms (a liquid: exactly).

    Args:
        phase: one of ``PHASES``.
        element: chemical symbol.
        lattice_A: cubic lattice constant (fcc, bcc, liquid-as-fcc) or hcp ``a``, in Å.
        n_atoms: requested number of atoms; the supercell repeat is chosen to keep the box
            as cubic as possible while holding at least this many atoms. A liquid's fcc start
            is then thinned to exactly ``n_atoms`` at the same number density.
        c_over_a: hcp axial ratio (default ideal √(8/3)).
    """
    if lattice_A <= 0:
        raise ValueError(f"lattice_A must be positive, got {lattice_A}")
    if n_atoms < 1:
        raise ValueError(f"n_atoms must be >= 1, got {n_atoms}")
    unit = _unit_cell(phase, element, lattice_A, c_over_a)
    lengths = np.linalg.norm(unit.cell.array, axis=1)
    side = (n_atoms * unit.get_volume() / len(unit)) ** (1.0 / 3.0)
    reps = np.maximum(1, np.round(side / lengths)).astype(int)
    while len(unit) * int(np.prod(reps)) < n_atoms:
        reps[np.argmin(reps * lengths)] += 1
    atoms = unit.repeat(tuple(int(r) for r in reps))
    atoms.pbc = True
    if phase == "liquid" and len(atoms) > n_atoms:
        # remove evenly spread atoms, then shrink the box to keep the number density
        n_before = len(atoms)
        drop = np.unique(np.linspace(0, n_before - 1, n_before - n_atoms).round().astype(int))
        del atoms[drop.tolist()]
        atoms.set_cell(atoms.cell * (len(atoms) / n_before) ** (1.0 / 3.0), scale_atoms=True)
    return atoms


def larger_crystal(atoms: Atoms, phase: str, *, n_atoms: int) -> Atoms:
    """The near-cubic supercell :func:`build_structure` makes of the same crystal with at least
    ``n_atoms`` atoms, for a perfect lattice ``atoms`` of ``phase`` that it built.

    The lattice is read back from ``atoms``: the cubic constant from the volume per atom
    (a³ = 4 V/N for fcc, 2 V/N for bcc); for hcp, ``a`` is the shortest distance within one
    basal plane (the planes are normal to z) and c from V/N = √3 a² c / 4.
    """
    if phase not in ("fcc", "bcc", "hcp"):
        raise ValueError(f"larger_crystal needs a crystal phase (fcc, bcc, hcp), got {phase!r}")
    elements = sorted(set(atoms.get_chemical_symbols()))
    if len(elements) != 1:
        raise ValueError(f"larger_crystal builds one-element crystals, got {elements}")
    volume_per_atom = atoms.get_volume() / len(atoms)
    if phase != "hcp":
        lattice = ((4 if phase == "fcc" else 2) * volume_per_atom) ** (1.0 / 3.0)
        return build_structure(phase, element=elements[0], lattice_A=lattice, n_atoms=n_atoms)
    z = atoms.get_positions()[:, 2]
    plane = np.flatnonzero(np.abs(z - z[0]) < 1e-6)
    if len(plane) < 2:
        raise ValueError("larger_crystal: hcp basal planes must be normal to z (build_structure)")
    distances = atoms.get_distances(int(plane[0]), plane[1:].tolist(), mic=True)
    a = float(distances.min())
    c = 4.0 * volume_per_atom / (math.sqrt(3.0) * a * a)
    return build_structure("hcp", element=elements[0], lattice_A=a, n_atoms=n_atoms, c_over_a=c / a)
