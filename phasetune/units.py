"""Physical constants and unit conversions.

phasetune's interfaces use eV, Å, K, GPa and fs; internally everything runs in
torch-sim's metal units (Å, eV, amu; time unit = Å·sqrt(amu/eV) ≈ 10.18 fs).
Conversions happen once, at the edge, with these constants.
"""

from __future__ import annotations

import math

#: Boltzmann constant in eV/K (CODATA 2018, exact).
KB_EV_PER_K: float = 8.617333262e-5
#: 1 amu in kg, 1 eV in J, Planck's h and ħ in eV·s (CODATA 2018).
AMU_IN_KG: float = 1.66053906660e-27
EV_IN_J: float = 1.602176634e-19
PLANCK_EV_S: float = 4.135667696e-15
HBAR_EV_S: float = 6.582119569e-16
#: 1 GPa expressed in eV/Å³ (10⁹ Pa · 10⁻³⁰ m³/Å³ / e, with CODATA 2018's exact e).
EV_PER_A3_PER_GPA: float = 1.0e-21 / EV_IN_J
#: torch-sim's internal time unit in fs: sqrt(amu·Å²/eV).
FS_PER_TIME_UNIT: float = math.sqrt(AMU_IN_KG * 1.0e-20 / EV_IN_J) * 1.0e15


def kT_eV(temperature_K: float) -> float:
    """Thermal energy k_B·T in eV."""
    return KB_EV_PER_K * temperature_K


def internal_to_gpa(pressure_eV_A3: float) -> float:
    """eV/Å³ → GPa."""
    return pressure_eV_A3 / EV_PER_A3_PER_GPA


def fs_to_internal(time_fs: float) -> float:
    """fs → torch-sim time units."""
    return time_fs / FS_PER_TIME_UNIT
