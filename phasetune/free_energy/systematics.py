"""Estimated systematic errors of a free-energy transition temperature, per phase in eV/atom.

Statistical errors (replica spread) do not see two biases of Frenkel–Ladd switching:

* **Dissipation.** W_rev = (W_fwd − W_bwd)/2 is exact only in the limit of slow switching;
  its bias grows with the dissipation W_d = (W_fwd + W_bwd)/2. Estimate:
  :data:`DISSIPATION_FRACTION` · W_d/N. On Ti1 at 1150 K, lengthening the switching from 6
  to 18 ps moved hcp's G by +0.85 meV/atom against a dissipation of 2.5 meV/atom, and bcc's
  by −0.06 against 3.8 (issue 20's study): half the dissipation covers both.
* **Box size.** G/N of a periodic N-atom crystal differs from the bulk by about
  −(8–9) k_BT/N (harmonic: LJ fcc −7.8 k_BT/N at N = 108, Ti1 hcp −8.5 at 96 and −9.4 at
  288, :mod:`phasetune.free_energy.phonons`). Where that harmonic error is subtracted, the
  remainder (anharmonic) is estimated as :data:`CORRECTED_FRACTION` of the correction (the
  Ti1 hcp correction predicts a 96 → 288-atom shift of +5.6 meV/atom; Frenkel–Ladd measured
  +4.8 ± 0.5).
  Where it is not (bcc Ti1 is harmonically unstable), both crystals of a pair carry it
  uncorrected and it cancels to :data:`UNCORRECTED_COEFFICIENT_KT` · k_BT |1/N_A − 1/N_B|,
  plus :data:`STRUCTURE_SPREAD_KT` · k_BT / N for its dependence on the structure.

These are estimates from measured cases, not bounds; ``bench/RESULTS.md`` records the
studies behind them.
"""

from __future__ import annotations

import math

#: bias of W_rev per unit of dissipation (both per atom)
DISSIPATION_FRACTION = 0.5
#: anharmonic remainder of the finite-size error per unit of the harmonic correction
CORRECTED_FRACTION = 0.25
#: magnitude of an uncorrected crystal's finite-size error, in k_BT · N
UNCORRECTED_COEFFICIENT_KT = 9.0
#: spread of that coefficient between crystal structures, in k_BT · N
STRUCTURE_SPREAD_KT = 1.0


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
