"""A harmonic lattice: an exactly solvable, translation-invariant crystal.

Nearest-neighbour springs K along the lattice bonds, linearised about the sites r⁰:

    U = ½ K Σ_bonds [(u_i − u_j) · ê_ij]²,   u_i = r_i − r_i⁰,

so U depends on displacement differences only (its centre of mass is free, as in a real
crystal) and is exactly quadratic, U = ½ uᵀ H u. Its classical free energy follows from the
3N − 3 non-zero eigenvalues λ_m of H. The atoms are labelled by their sites (distinguishable)
and the centre of mass ranges over the whole volume V:

    Z = Λ^{−3N} V N^{3/2} Π_m (2π / βλ_m)^{1/2},
    βF = 3N ln Λ − ln V − (3/2) ln N + ½ Σ_m ln(βλ_m / 2π),

(N^{3/2} is the Jacobian of the centre-of-mass coordinate R = Σ r_i / N). A real crystal of
identical atoms instead counts its centre of mass over one primitive cell, V/N_cells (see
:mod:`phasetune.free_energy.solid`), which adds k_BT ln N_cells. It is the reference against
which the whole Frenkel–Ladd chain (switching with the centre of mass fixed, Einstein crystal,
centre-of-mass terms) is tested at finite N.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from ase import Atoms
from ase.neighborlist import neighbor_list
from torch_sim.state import SimState

from phasetune.free_energy.liquid import thermal_wavelength_A
from phasetune.potentials.base import ModelBase
from phasetune.units import KB_EV_PER_K


def lattice_bonds(atoms: Atoms, *, cutoff_A: float) -> tuple[np.ndarray, np.ndarray]:
    """Bonds i < j shorter than ``cutoff_A`` (one row per periodic image), unit vectors."""
    i, j, d = neighbor_list("ijD", atoms, cutoff_A)
    keep = i < j
    d = d[keep]
    return np.stack([i[keep], j[keep]], 1), d / np.linalg.norm(d, axis=1, keepdims=True)


def harmonic_lattice_hessian(
    n_atoms: int, bonds: np.ndarray, directions: np.ndarray, spring_eV_A2: float
) -> np.ndarray:
    """H (3N × 3N, eV/Å²) of U = ½ K Σ_b [(u_i − u_j)·ê_b]²."""
    hessian = np.zeros((n_atoms, 3, n_atoms, 3))
    for (i, j), e in zip(bonds, directions, strict=True):
        block = spring_eV_A2 * np.outer(e, e)
        hessian[i, :, i] += block
        hessian[j, :, j] += block
        hessian[i, :, j] -= block
        hessian[j, :, i] -= block
    return hessian.reshape(3 * n_atoms, 3 * n_atoms)


def harmonic_lattice_free_energy_eV(
    atoms: Atoms, *, cutoff_A: float, spring_eV_A2: float, temperature_K: float
) -> float:
    """Classical F (eV, whole system) of the labelled harmonic lattice: the module's βF."""
    bonds, directions = lattice_bonds(atoms, cutoff_A=cutoff_A)
    n = len(atoms)
    masses = atoms.get_masses()
    if not np.allclose(masses, masses[0]):
        raise ValueError("one mass for all atoms, please")
    kT = KB_EV_PER_K * temperature_K
    hessian = harmonic_lattice_hessian(n, bonds, directions, spring_eV_A2)
    wavelength = thermal_wavelength_A(mass_amu=float(masses[0]), temperature_K=temperature_K)
    beta_f = 3 * n * math.log(wavelength) + translation_invariant_beta_f(
        hessian, kT=kT, centre_of_mass_volume=atoms.get_volume()
    )
    return kT * beta_f


def translation_invariant_beta_f(
    hessian: np.ndarray, *, kT: float, centre_of_mass_volume: float
) -> float:
    """Configurational βF (without Λ) of a harmonic crystal with a free centre of mass.

        βF = ½ Σ_{3N−3} ln(βλ_m / 2π) − ln V_cm − (3/2) ln N,

    λ_m the non-zero eigenvalues of ``hessian`` (3N × 3N, equal masses), V_cm the volume
    its centre of mass ranges over (V for labelled atoms, V/N_cells for identical ones) and
    N^{3/2} the Jacobian of R = Σ r_i / N. Raises unless exactly three modes are zero.
    """
    n = hessian.shape[0] // 3
    eigenvalues = np.linalg.eigvalsh(hessian)
    if np.abs(eigenvalues[:3]).max() > 1e-8 * eigenvalues[-1] or eigenvalues[3] <= 0:
        raise ValueError("the lattice is not mechanically stable (extra zero or negative modes)")
    return (
        0.5 * float(np.log(eigenvalues[3:] / (2 * math.pi * kT)).sum())
        - math.log(centre_of_mass_volume)
        - 1.5 * math.log(n)
    )


class HarmonicLattice(ModelBase):
    """torch-sim model of U = ½ K Σ_bonds [(u_i − u_j)·ê_ij]² for one lattice, batched over copies.

    Positions must stay unwrapped (as in :func:`~phasetune.free_energy.switching.
    nonequilibrium_switching`); the cell is fixed and the stress is reported as zero.
    """

    def __init__(
        self,
        atoms: Atoms,
        *,
        cutoff_A: float,
        spring_eV_A2: float,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__(device=device, dtype=dtype)
        bonds, directions = lattice_bonds(atoms, cutoff_A=cutoff_A)
        self.n_atoms = len(atoms)
        self.spring = float(spring_eV_A2)
        self.register_buffer("sites", torch.as_tensor(atoms.positions, dtype=dtype))
        self.register_buffer("bonds", torch.as_tensor(bonds, dtype=torch.long))
        self.register_buffer("directions", torch.as_tensor(directions, dtype=dtype))
        self.to(self._device)

    def forward(self, state: SimState, **kwargs) -> dict[str, torch.Tensor]:
        n_systems = state.n_systems
        u = (state.positions.reshape(n_systems, self.n_atoms, 3) - self.sites).to(self._dtype)
        i, j = self.bonds[:, 0], self.bonds[:, 1]
        stretch = ((u[:, i] - u[:, j]) * self.directions).sum(-1)  # [S, B]
        energy = 0.5 * self.spring * (stretch**2).sum(-1)
        bond_force = -self.spring * stretch.unsqueeze(-1) * self.directions  # on i; −that on j
        forces = torch.zeros_like(u)
        forces = forces.index_add(1, i, bond_force).index_add(1, j, -bond_force)
        return {
            "energy": energy,
            "forces": forces.reshape(-1, 3),
            "stress": torch.zeros(n_systems, 3, 3, device=self._device, dtype=self._dtype),
        }


# --- harmonic finite-size correction of a pair-potential fcc crystal ------------------------

_FCC_BASIS = np.array([[0.0, 0.0, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])


def _pair_force_constant(d: np.ndarray, phi_1, phi_2) -> np.ndarray:
    """∂²φ(|d|)/∂d∂d = φ'' d̂d̂ + (φ'/r)(1 − d̂d̂) for each row of d, shape [..., 3, 3]."""
    r = np.linalg.norm(d, axis=-1)
    outer = np.einsum("...a,...b->...ab", d, d) / (r**2)[..., None, None]
    return phi_2(r)[..., None, None] * outer + (phi_1(r) / r)[..., None, None] * (np.eye(3) - outer)


def fcc_pair_harmonic_beta_f(
    *,
    lattice: float,
    kT: float,
    phi_1,
    phi_2,
    cutoff: float,
    n_cells: int | None = None,
    n_k: int = 24,
) -> float:
    """Vibrational βF/N of an fcc crystal of a pair potential φ(r) in the harmonic approximation.

    Classical, without the static energy and the 3 ln Λ per atom (they do not depend on N):

    * ``n_cells=None``: the thermodynamic limit, ½ ⟨Σ_branches ln(βλ(q)/2π)⟩ over a shifted
      ``n_k``³ grid of the Brillouin zone, with D(q) = Σ_R Φ(R)(1 − cos q·R);
    * ``n_cells=n``: the periodic n×n×n cubic supercell (N = 4n³) as Frenkel–Ladd treats it,
      (1/N)[½ Σ_{3N−3} ln(βλ_m/2π) − ln(V/N) − (3/2) ln N] (see
      :mod:`phasetune.free_energy.solid`).

    ``phi_1``, ``phi_2`` are φ' and φ'' (vectorised), ``cutoff`` the range of φ, and
    ``lattice`` the cubic lattice constant, all in one set of units with ``kT``. Their
    difference, f(N) − f(∞), is the harmonic part of a finite crystal's free-energy error.
    """
    basis = _FCC_BASIS * lattice
    reach = int(math.ceil(cutoff / lattice)) + 1
    cells = np.array(list(np.ndindex(*(2 * reach + 1,) * 3))) - reach
    vectors = (cells[:, None, :] * lattice + basis[None]).reshape(-1, 3)
    lengths = np.linalg.norm(vectors, axis=1)
    if n_cells is None:
        vectors = vectors[(lengths > 0) & (lengths < cutoff)]
        blocks = _pair_force_constant(vectors, phi_1, phi_2)
        reciprocal = 2 * math.pi / lattice * np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]])
        grid = (np.arange(n_k) + 0.5) / n_k
        q = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1).reshape(-1, 3)
        q = q @ reciprocal
        dynamical = np.einsum("qr,rab->qab", 1 - np.cos(q @ vectors.T), blocks)
        eigenvalues = np.linalg.eigvalsh(dynamical)
        return 0.5 * float(np.log(eigenvalues / (2 * math.pi * kT)).sum(-1).mean())
    sites = (np.array(list(np.ndindex(n_cells, n_cells, n_cells)))[:, None] + _FCC_BASIS).reshape(
        -1, 3
    ) * lattice
    n = len(sites)
    side = n_cells * lattice
    reach = int(math.ceil(cutoff / side))
    images = (np.array(list(np.ndindex(*(2 * reach + 1,) * 3))) - reach) * side
    hessian = np.zeros((n, 3, n, 3))
    for i in range(n):
        for image in images:  # every periodic image within the cutoff is its own bond
            d = sites + image - sites[i]
            r = np.linalg.norm(d, axis=1)
            j = np.nonzero((r > 0) & (r < cutoff))[0]
            blocks = _pair_force_constant(d[j], phi_1, phi_2)
            hessian[i, :, j, :] -= blocks  # j unique within one image
            hessian[i, :, i, :] += blocks.sum(0)
    # identical atoms: the centre of mass ranges over one primitive cell, V/N (fcc)
    beta_f = translation_invariant_beta_f(
        hessian.reshape(3 * n, 3 * n), kT=kT, centre_of_mass_volume=side**3 / n
    )
    return beta_f / n


def lennard_jones_fcc_finite_size_correction(
    *, density: float, temperature: float, n_atoms: int, cutoff: float = 3.0
) -> float:
    """β[F(N) − F(∞)]/N of the harmonic LJ fcc crystal, in reduced units (ε, σ).

    Subtract it from a Frenkel–Ladd βF/N at N atoms to estimate the thermodynamic limit
    (the anharmonic part of the finite-size error is left). ``n_atoms`` = 4n³.
    """
    n_cells = round((n_atoms / 4) ** (1 / 3))
    if 4 * n_cells**3 != n_atoms:
        raise ValueError(f"n_atoms must be 4n^3 (a cubic fcc supercell), got {n_atoms}")

    def phi_1(r):
        return 4.0 * (-12.0 * r**-13 + 6.0 * r**-7)

    def phi_2(r):
        return 4.0 * (156.0 * r**-14 - 42.0 * r**-8)

    lattice = (4.0 / density) ** (1.0 / 3.0)
    common = dict(lattice=lattice, kT=temperature, phi_1=phi_1, phi_2=phi_2, cutoff=cutoff)
    return fcc_pair_harmonic_beta_f(**common, n_cells=n_cells) - fcc_pair_harmonic_beta_f(**common)


def harmonic_finite_size_correction_eV(
    model, lattice: Atoms, *, phase: str, temperature_K: float
) -> float | None:
    """[F_harm(N) − F_harm(∞)]/N in eV for the crystal ``lattice``, or None where not known.

    Known for :class:`~phasetune.potentials.lennard_jones.LennardJones` fcc crystals in a
    cubic 4n³ supercell (:func:`lennard_jones_fcc_finite_size_correction` at the lattice's
    density); other models or lattices return None.
    """
    from phasetune.potentials.lennard_jones import LennardJones

    if not isinstance(model, LennardJones) or phase != "fcc":
        return None
    n = len(lattice)
    n_cells = round((n / 4) ** (1 / 3))
    lengths, angles = lattice.cell.lengths(), lattice.cell.angles()
    cubic = np.allclose(lengths, lengths[0], rtol=2e-3) and np.allclose(angles, 90.0, atol=0.1)
    if 4 * n_cells**3 != n or not cubic:
        return None
    epsilon, sigma = float(model.epsilon.detach()), float(model.sigma.detach())
    kT = KB_EV_PER_K * temperature_K
    correction = lennard_jones_fcc_finite_size_correction(
        density=n * sigma**3 / lattice.get_volume(),
        temperature=kT / epsilon,
        n_atoms=n,
        cutoff=model.cutoff_sigma,
    )
    return kT * correction
