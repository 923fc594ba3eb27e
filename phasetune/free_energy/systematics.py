"""Estimated systematic errors of a free-energy transition temperature, per phase in eV/atom.

Statistical errors (replica spread) do not see two biases of Frenkel–Ladd switching:

* **Dissipation.** W_rev = (W_fwd − W_bwd)/2 is exact when both directions dissipate alike
  (linear response: the time-reversed schedule dissipates as much), and biased by
  (W_d,fwd − W_d,bwd)/2 otherwise; W_d = (W_fwd + W_bwd)/2 is what a run can see. Estimate:
  :data:`DISSIPATION_FRACTION` · W_d/N. Measured on Ti1 bcc at 1155 K as the shift of G
  between switching lengths against the change of W_d, b = ΔG/ΔW_d (bench/RESULTS.md,
  Ti1 Frenkel–Ladd switching): 128 atoms 3 → 12 ps −0.16 ± 0.16; 250 atoms 4.5 → 36 ps
  +0.22 ± 0.12 (same sites, 12 replicas each); 250 and 432 atoms 18 → 36 ps +1.30 ± 0.57 and
  +0.79 ± 0.36 (4 replicas). Pooled b = 0.17 ± 0.18 (the error scaled by √(χ²/dof) = 1.9,
  the four disagree); the estimate takes b + 2σ. Ti1 hcp: 240 atoms 4.5 → 18 ps +0.09 ± 0.15.
* **Box size.** G/N of a periodic N-atom crystal differs from the bulk by about
  −(8–9) k_BT/N (harmonic: LJ fcc −7.8 k_BT/N at N = 108, Ti1 hcp −8.5 at 96 and −9.4 at
  288, :mod:`phasetune.free_energy.phonons`). Where that harmonic error is subtracted, the
  remainder (anharmonic) is estimated as :data:`CORRECTED_FRACTION` of the correction (the
  Ti1 hcp correction predicts a 96 → 288-atom shift of +5.6 meV/atom; Frenkel–Ladd measured
  +4.8 ± 0.5).
  Where it is not (bcc Ti1 is harmonically unstable), both crystals of a pair carry it
  uncorrected and it cancels to :data:`UNCORRECTED_COEFFICIENT_KT` · k_BT |1/N_A − 1/N_B|,
  plus :data:`STRUCTURE_SPREAD_KT` · k_BT / N for its dependence on the structure.
  Where G/N is extrapolated from two box sizes (:func:`extrapolate_to_bulk`), what remains
  is the next term of the 1/N series (:func:`extrapolation_systematic_eV`).

These are estimates from measured cases, not bounds; ``bench/RESULTS.md`` records the
studies behind them.
"""

from __future__ import annotations

import math

#: bias of W_rev per unit of dissipation (both per atom): the pooled measured 0.17 ± 0.18
#: plus 2σ
DISSIPATION_FRACTION = 0.55
#: anharmonic remainder of the finite-size error per unit of the harmonic correction
CORRECTED_FRACTION = 0.25
#: magnitude of an uncorrected crystal's finite-size error, in k_BT · N
UNCORRECTED_COEFFICIENT_KT = 9.0
#: spread of that coefficient between crystal structures, in k_BT · N
STRUCTURE_SPREAD_KT = 1.0
#: a of the next term, a k_BT ln(N)/N, of a crystal's finite-size error, which a linear 1/N
#: extrapolation from N₁ < N₂ turns into a k_BT ln(N₂/N₁)/(N₂ − N₁): the LJ fcc harmonic
#: lattice sums give a = −0.47/−0.49/−0.48 from 108/256, 256/500, 108/500 atoms; the Ti1 hcp
#: harmonic errors at 96 and 288 atoms give −0.74. Its largest magnitude seen, and the
#: spread between structures:
LOG_COEFFICIENT_KT = 0.75
LOG_COEFFICIENT_SPREAD_KT = 0.3


def dissipation_systematic_eV(dissipation_eV_per_atom: float) -> float:
    """Bias estimate of a Frenkel–Ladd G/N from its mean dissipation per atom."""
    return DISSIPATION_FRACTION * abs(dissipation_eV_per_atom)


def finite_size_systematic_eV(
    crystals: list[tuple[int, float]], *, temperature_K: float, kB_eV_per_K: float
) -> float:
    """Finite-size error estimate of Δg between the crystals (n_atoms, correction_eV).

    One crystal (a solid|liquid pair) or two (solid|solid); a correction of 0 means none was
    subtracted.
    """
    kT = kB_eV_per_K * temperature_K
    if crystals and all(c for _, c in crystals):
        return math.sqrt(sum((CORRECTED_FRACTION * c) ** 2 for _, c in crystals))
    sizes = [n for n, _ in crystals]
    if len(sizes) == 1:
        return UNCORRECTED_COEFFICIENT_KT * kT / sizes[0]
    mismatch = UNCORRECTED_COEFFICIENT_KT * kT * abs(1.0 / sizes[0] - 1.0 / sizes[1])
    return mismatch + STRUCTURE_SPREAD_KT * kT / min(sizes)


def extrapolate_to_bulk(
    n_atoms: tuple[int, int], values: tuple[float, float], errors: tuple[float, float]
) -> tuple[float, float]:
    """Bulk limit of a per-atom quantity y(N) = y∞ − c/N measured at two box sizes N₁ < N₂:

        y∞ = (N₂ y₂ − N₁ y₁) / (N₂ − N₁),   σ∞ = √((N₂ σ₂)² + (N₁ σ₁)²) / (N₂ − N₁),

    the two measurements independent. The next term of a crystal's series, a ln(N)/N, is
    what the line leaves (:func:`extrapolation_systematic_eV`).
    """
    (n1, n2), (y1, y2), (s1, s2) = n_atoms, values, errors
    if not n2 > n1 > 0:
        raise ValueError(f"need 0 < N1 < N2, got {n1}, {n2}")
    return (n2 * y2 - n1 * y1) / (n2 - n1), math.hypot(n2 * s2, n1 * s1) / (n2 - n1)


def extrapolation_systematic_eV(
    crystals: list[tuple[int, int]], *, temperature_K: float, kB_eV_per_K: float
) -> float:
    """Finite-size error left in Δg by crystals each extrapolated from two sizes (N₁, N₂).

    Per crystal a k_BT L with L = ln(N₂/N₁)/(N₂ − N₁) (:data:`LOG_COEFFICIENT_KT`). One crystal
    (solid|liquid) carries it whole; for two, the like-signed terms cancel up to
    |a| k_BT |L_A − L_B| + :data:`LOG_COEFFICIENT_SPREAD_KT` k_BT max(L).
    """
    kT = kB_eV_per_K * temperature_K
    lever = [math.log(n2 / n1) / (n2 - n1) for n1, n2 in crystals]
    if len(lever) == 1:
        return LOG_COEFFICIENT_KT * kT * lever[0]
    mismatch = LOG_COEFFICIENT_KT * kT * abs(lever[0] - lever[1])
    return mismatch + LOG_COEFFICIENT_SPREAD_KT * kT * max(lever)
