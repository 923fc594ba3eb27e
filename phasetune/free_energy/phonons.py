"""Harmonic finite-size error of a periodic crystal, for any torch-sim model.

A Frenkel–Ladd free energy is that of the periodic N-atom box it was measured in. Its
difference from the thermodynamic limit is dominated by the harmonic part, which depends on N
roughly as (3/2) k_BT ln N / N (the three acoustic modes at q = 0 that the box lacks, and its
centre-of-mass treatment): −0.07 k_BT per atom at N ≈ 100. Two crystals measured at different
N (hcp 96 and bcc 128 atoms) therefore carry different errors, and their difference enters
Δg directly. This module computes the harmonic error of the given box exactly:

1. Force constants Φ(i, J) of the box's atoms i with every atom J of a supercell made of
   copies of the box, wide enough that Φ has decayed (``range_A``: twice the cutoff for EAM,
   the cutoff for pair potentials, the receptive field for message passing), by central
   differences of the model's forces (each atom of the box displaced by ±δ along x, y, z;
   the displaced supercells are evaluated in batches).
2. The dynamical matrix of the box as the unit cell of a crystal,
   D_ij(q) = Σ_{J ≡ j} Φ(i, J) exp(i q·(x_J − x_i)) with minimum-image x_J − x_i.
   D(0) is the box's own periodic Hessian (the one Frenkel–Ladd samples).
3. Per atom, classical, without the static energy and 3 ln Λ (they do not depend on N):

       βf_N = (1/N)[½ Σ_{3N−3} ln(βλ_m(0)/2π) − ln(V/N_cells) − (3/2) ln N],
       βf_∞ = (1/N) ⟨½ Σ_{3N} ln(βλ_m(q)/2π)⟩_q   (shifted n_q³ grid over the box's zone),

   (the centre-of-mass terms as in :mod:`phasetune.free_energy.solid`), and the correction
   subtracted from the Frenkel–Ladd G/N is f_N − f_∞.

No phonon library is used: phonopy would add a dependency for one Fourier sum, and it has no
torch-sim model interface. Raises ``ValueError`` where the lattice is mechanically unstable
(a negative eigenvalue), as bcc metals can be at 0 K: there the harmonic picture, and this
correction, do not apply.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch_sim as ts
from ase import Atoms
from torch_sim.models.interface import ModelInterface

from phasetune.units import KB_EV_PER_K


def force_constant_range_A(model: ModelInterface) -> float | None:
    """Distance (Å) beyond which the model's force constants vanish, where it is known."""
    from phasetune.potentials.eam import EmbeddedAtomModel
    from phasetune.potentials.lennard_jones import LennardJones

    if isinstance(model, EmbeddedAtomModel):
        return 2.0 * model.cutoff  # i–k–j through the embedding of a common neighbour k
    if isinstance(model, LennardJones):
        return float(model.cutoff_sigma * model.sigma.detach())
    return None


def _repeats(atoms: Atoms, range_A: float) -> tuple[int, int, int]:
    """Copies of the box per axis so that every perpendicular width exceeds 2·range."""
    cell = atoms.cell.array
    volume = abs(np.linalg.det(cell))
    widths = [
        volume / np.linalg.norm(np.cross(cell[(k + 1) % 3], cell[(k + 2) % 3])) for k in range(3)
    ]
    return tuple(max(1, math.ceil(2.0 * range_A / w + 1e-9)) for w in widths)


def supercell_force_constants(
    model: ModelInterface,
    atoms: Atoms,
    *,
    range_A: float,
    displacement_A: float = 0.005,
    batch_size: int = 12,
) -> tuple[np.ndarray, np.ndarray]:
    """Φ(i a, J b) in eV/Å² [N, 3, M, 3] and minimum-image x_J − x_i [N, M, 3] (Å).

    The supercell holds M = N·Π repeats copies of ``atoms``; atom J = copy·N + j.
    """
    reps = _repeats(atoms, range_A)
    big = atoms.repeat(reps)
    n, m = len(atoms), len(big)
    displaced = []
    for i in range(n):
        for a in range(3):
            for sign in (1.0, -1.0):
                box = big.copy()
                box.positions[i, a] += sign * displacement_A
                displaced.append(box)
    forces = []
    for start in range(0, len(displaced), batch_size):
        state = ts.io.atoms_to_state(
            displaced[start : start + batch_size], device=model.device, dtype=torch.float64
        )
        out = model(state)["forces"].detach().double().cpu().numpy()
        forces.append(out.reshape(-1, m, 3))
    f = np.concatenate(forces).reshape(n, 3, 2, m, 3)
    phi = -(f[:, :, 0] - f[:, :, 1]) / (2 * displacement_A)  # [n, 3, m, 3]
    # minimum image of x_J − x_i in the supercell (fractional coordinates, then back)
    d = big.positions[None, :, :] - atoms.positions[:, None, :]
    frac = np.linalg.solve(big.cell.array.T, d.reshape(-1, 3).T).T
    frac -= np.round(frac)
    vectors = (frac @ big.cell.array).reshape(n, m, 3)
    return phi, vectors


def harmonic_box_free_energies(
    phi: np.ndarray,
    vectors: np.ndarray,
    *,
    cell: np.ndarray,
    n_cells: float,
    temperature_K: float,
    n_q: int = 6,
) -> tuple[float, float]:
    """(βf_N, βf_∞) per atom from the force constants (module docstring, step 3)."""
    n, m = phi.shape[0], phi.shape[2]
    kT = KB_EV_PER_K * temperature_K
    copies = m // n  # atom J = copy·N + j

    def dynamical(q: np.ndarray) -> np.ndarray:
        phase = np.exp(1j * vectors @ q)  # [n, m]
        weighted = phi * phase[:, None, :, None]
        d = weighted.reshape(n, 3, copies, n, 3).sum(2).reshape(3 * n, 3 * n)
        return 0.5 * (d + d.conj().T)

    gamma = np.linalg.eigvalsh(dynamical(np.zeros(3)).real)
    scale = float(np.abs(gamma).max())
    if np.abs(gamma[:3]).max() > 1e-6 * scale or gamma[3] <= 1e-6 * scale:
        raise ValueError(
            "the lattice is mechanically unstable in the harmonic approximation (a negative "
            f"or extra zero mode at q = 0, lowest eigenvalues {gamma[:5].round(5).tolist()} eV/Å²)"
        )
    volume = abs(float(np.linalg.det(cell)))
    beta_f_n = (
        0.5 * float(np.log(gamma[3:] / (2 * math.pi * kT)).sum())
        - math.log(volume / n_cells)
        - 1.5 * math.log(n)
    ) / n
    reciprocal = 2 * math.pi * np.linalg.inv(cell).T  # rows b_k
    grid = (np.arange(n_q) + 0.5) / n_q - 0.5
    total = 0.0
    for k in np.ndindex(n_q, n_q, n_q):
        q = np.array([grid[k[0]], grid[k[1]], grid[k[2]]]) @ reciprocal
        eigenvalues = np.linalg.eigvalsh(dynamical(q))
        if eigenvalues[0] <= 0:
            raise ValueError(
                "the lattice is mechanically unstable in the harmonic approximation "
                f"(eigenvalue {eigenvalues[0]:.3g} eV/Å² at q = {q.round(3).tolist()} 1/Å)"
            )
        total += 0.5 * float(np.log(eigenvalues / (2 * math.pi * kT)).sum())
    beta_f_inf = total / n_q**3 / n
    return beta_f_n, beta_f_inf


def harmonic_finite_size_error_eV(
    model: ModelInterface,
    lattice: Atoms,
    *,
    atoms_per_primitive_cell: int,
    temperature_K: float,
    range_A: float | None = None,
    n_q: int = 6,
) -> float:
    """[F_h(N) − F_h(∞)]/N in eV of the periodic crystal ``lattice`` (subtract it from G/N).

    ``range_A`` defaults to :func:`force_constant_range_A`; raises ``ValueError`` where it is
    unknown or the lattice is mechanically unstable.
    """
    range_A = force_constant_range_A(model) if range_A is None else range_A
    if range_A is None:
        raise ValueError(
            f"the force-constant range of {type(model).__name__} is unknown; pass range_A"
        )
    phi, vectors = supercell_force_constants(model, lattice, range_A=range_A)
    beta_f_n, beta_f_inf = harmonic_box_free_energies(
        phi,
        vectors,
        cell=lattice.cell.array,
        n_cells=len(lattice) / atoms_per_primitive_cell,
        temperature_K=temperature_K,
        n_q=n_q,
    )
    return KB_EV_PER_K * temperature_K * (beta_f_n - beta_f_inf)
