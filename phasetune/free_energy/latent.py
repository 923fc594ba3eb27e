"""What a transition costs at T*: latent heat Δh, volume change Δv, Clausius–Clapeyron slope.

From per-atom NPT means of both phases along the isobar (h in eV, v in Å³, B − A):
Δh(T) and Δv(T) are fitted as straight lines (weighted least squares, errors from the fit's
covariance) and read at T*; then

    dT*/dP = T* Δv / Δh          (Clausius–Clapeyron, K/GPa)

with the error propagated from Δh and Δv at first order. A measured melting line
T_m(P) has to follow this slope: it checks coexistence against the enthalpy runs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from phasetune.thermo import clausius_clapeyron_slope_K_per_GPa


@dataclass(frozen=True)
class LatentProperties:
    """Δh (eV/atom), Δv (Å³/atom), Δv/v_A and dT*/dP (K/GPa) at ``temperature_K``."""

    temperature_K: float
    delta_h_eV: float
    delta_h_error_eV: float
    delta_v_A3: float
    delta_v_error_A3: float
    relative_volume_change: float
    slope_K_per_GPa: float
    slope_error_K_per_GPa: float

    def as_dict(self) -> dict:
        return asdict(self)


def line_at(x, y, y_error, x0: float) -> tuple[float, float]:
    """Weighted straight-line fit of y(x) read at x0: (value, standard error).

    With two or more points and errors, the covariance of the fit gives the error; one point
    is returned as is.
    """
    x, y, sy = (np.asarray(a, dtype=float) for a in (x, y, y_error))
    if len(x) == 1:
        return float(y[0]), float(sy[0])
    w = 1.0 / np.maximum(sy, 1e-300) ** 2
    xm = float(np.sum(w * x) / np.sum(w))
    sxx = float(np.sum(w * (x - xm) ** 2))
    ym = float(np.sum(w * y) / np.sum(w))
    slope = float(np.sum(w * (x - xm) * (y - ym)) / sxx)
    value = ym + slope * (x0 - xm)
    error = math.sqrt(1.0 / np.sum(w) + (x0 - xm) ** 2 / sxx)
    return value, error


def latent_properties(
    *,
    temperatures_K,
    h_a_eV,
    h_a_error_eV,
    h_b_eV,
    h_b_error_eV,
    v_a_A3,
    v_a_error_A3,
    v_b_A3,
    v_b_error_A3,
    at_temperature_K: float,
) -> LatentProperties:
    """Δh, Δv, Δv/v_A and the Clausius–Clapeyron slope at ``at_temperature_K`` (B − A)."""
    t = np.asarray(temperatures_K, dtype=float)
    dh, dh_err = line_at(
        t,
        np.asarray(h_b_eV) - np.asarray(h_a_eV),
        np.hypot(h_a_error_eV, h_b_error_eV),
        at_temperature_K,
    )
    dv, dv_err = line_at(
        t,
        np.asarray(v_b_A3) - np.asarray(v_a_A3),
        np.hypot(v_a_error_A3, v_b_error_A3),
        at_temperature_K,
    )
    v_a, _ = line_at(t, v_a_A3, v_a_error_A3, at_temperature_K)
    slope = float(
        clausius_clapeyron_slope_K_per_GPa(
            temperature_K=at_temperature_K, delta_v_A3=dv, delta_h_eV=dh
        )
    )
    slope_err = abs(slope) * math.hypot(dv_err / dv if dv else math.inf, dh_err / dh)
    return LatentProperties(
        temperature_K=float(at_temperature_K),
        delta_h_eV=dh,
        delta_h_error_eV=dh_err,
        delta_v_A3=dv,
        delta_v_error_A3=dv_err,
        relative_volume_change=dv / v_a,
        slope_K_per_GPa=slope,
        slope_error_K_per_GPa=slope_err,
    )
