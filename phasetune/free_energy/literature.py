"""Published free energies used to validate phasetune (reduced Lennard-Jones units)."""

from __future__ import annotations

import math


def van_der_hoef_lj_fcc_excess_free_energy(*, temperature: float, density: float) -> float:
    """βA_ex/N of the Lennard-Jones fcc solid (full potential, N → ∞), T* and ρ* reduced.

    van der Hoef, J. Chem. Phys. 113, 8142 (2000), Eq. (21): a fit to Frenkel–Ladd and
    thermodynamic-integration data, A_ex = A − A_id with βA_id/N = ln(ρΛ³) − 1.
    """
    beta = 1.0 / temperature
    a = (
        (-8.2151768, 12.070686, -6.6594615, 1.3211582),
        (13.404069, -20.632066, 11.564825, -2.3064801),
        (-5.5481261, 8.8465978, -5.0258631, 1.0070066),
    )
    b = (69.833875, -132.86963, 97.438593, -25.848057)
    u_static = -14.45392093 * density**2 + 6.065940096 * density**4
    u_anharmonic = -sum(
        a[n][m - 2] / (m - 1) * density**n * beta ** (1 - m) for n in range(3) for m in range(2, 6)
    )
    virial = sum(b[k] * density ** (k + 1) / (k + 1) for k in range(4))
    return -23.3450759 + beta * u_static + 1.5 * math.log(beta) + u_anharmonic + virial
