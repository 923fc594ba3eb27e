"""Solid–solid transition from the melting points of both solids, on exact model phases.

Each phase X has g_X(T) = a_X − b_X T − c_X T ln T, so h_X(T) = a_X + c_X T (a constant heat
capacity c_X): Gibbs–Helmholtz with a linear Δh is then exact, and the route must return
g_B − g_A and its root to rounding. The numbers are titanium-like (α–β near 1150 K with
ΔH ≈ 0.02 eV/atom, melting near 1800–1950 K with ΔH_m ≈ 0.13–0.14 eV/atom).
"""

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from phasetune.free_energy.competing_melting import (
    delta_g_from_melting_points,
    enthalpy_error_K,
    root_of_delta_g_melting,
)


def _phases() -> dict[str, tuple[float, float, float]]:
    """a, b, c per phase (eV, eV/K, eV/K), b chosen so that g_bcc = g_hcp at 1150 K and
    g_liquid = g_hcp at 1765 K."""
    a = {"hcp": 0.0, "bcc": 0.022, "liquid": 0.143}
    c = {"hcp": 3.0e-4, "bcc": 3.02e-4, "liquid": 3.3e-4}

    def b(x: str, t0: float) -> float:  # g_x(t0) = g_hcp(t0) with b_hcp = 0
        return ((a[x] - a["hcp"]) - (c[x] - c["hcp"]) * t0 * math.log(t0)) / t0

    return {
        "hcp": (a["hcp"], 0.0, c["hcp"]),
        "bcc": (a["bcc"], b("bcc", 1150.0), c["bcc"]),
        "liquid": (a["liquid"], b("liquid", 1765.0), c["liquid"]),
    }


PHASES = _phases()


def g(phase: str, t):
    a, b, c = PHASES[phase]
    t = np.asarray(t, dtype=float)
    return a - b * t - c * t * np.log(t)


def h(phase: str, t):
    a, _, c = PHASES[phase]
    return a + c * np.asarray(t, dtype=float)


def exact_curve():
    t_ma = brentq(lambda t: g("liquid", t) - g("hcp", t), 1000.0, 4000.0)
    t_mb = brentq(lambda t: g("liquid", t) - g("bcc", t), 1000.0, 4000.0)
    solid_t = np.linspace(1000.0, t_ma, 4)
    liquid_t = np.linspace(min(t_ma, t_mb), max(t_ma, t_mb), 3)
    curve = dict(
        melting_a_K=t_ma,
        melting_b_K=t_mb,
        solid_temperatures_K=solid_t,
        delta_h_ab_eV=h("bcc", solid_t) - h("hcp", solid_t),
        liquid_temperatures_K=liquid_t,
        delta_h_lb_eV=h("liquid", liquid_t) - h("bcc", liquid_t),
    )
    return curve, t_ma, t_mb


def test_delta_g_and_transition_equal_the_exact_phases():
    curve, t_ma, t_mb = exact_curve()
    assert t_ma == pytest.approx(1765.0) and 1800.0 < t_mb < 2100.0  # hcp melts first
    temps = np.array([900.0, 1150.0, 1400.0, t_ma])
    exact = g("bcc", temps) - g("hcp", temps)
    assert delta_g_from_melting_points(temps, **curve) == pytest.approx(exact, abs=1e-12)
    assert brentq(lambda t: g("bcc", t) - g("hcp", t), 800.0, 1600.0) == pytest.approx(1150.0)
    assert root_of_delta_g_melting(1200.0, **curve) == pytest.approx(1150.0, abs=0.05)


def test_melting_point_errors_move_the_transition_as_predicted():
    """∂T*/∂T_m,B = −(T*/T_m,B)² Δh_m,B/Δh_AB at T* (the docstring's error estimate)."""
    curve, _, t_mb = exact_curve()
    t_star = root_of_delta_g_melting(1200.0, **curve)
    shifted = root_of_delta_g_melting(1200.0, **{**curve, "melting_b_K": t_mb + 5.0})
    dh_m = float(h("liquid", t_mb) - h("bcc", t_mb))
    dh_ab = float(h("bcc", t_star) - h("hcp", t_star))
    predicted = -((t_star / t_mb) ** 2) * dh_m / dh_ab * 5.0
    assert shifted - t_star == pytest.approx(predicted, rel=0.05)
    assert abs(shifted - t_star) > 7.0  # 5 K of T_m moves T* by about twice that


def test_enthalpy_error_equals_the_spread_of_roots_from_noisy_enthalpies():
    """Independent noise on each Δh point (σ = 2 meV/atom, as 12-ps Ti1 runs give) moves T*
    by the propagated σ(T*): 2,000 noisy repeats against the linearised sum, within the
    repeats' own sampling error (±1.6 % of σ) plus curvature. A common shift of all points
    (counting them as fully correlated) would claim a larger error than the repeats show."""
    curve, _, _ = exact_curve()
    sigma = np.full(4, 0.002)

    def root(ab):
        return root_of_delta_g_melting(1200.0, **{**curve, "delta_h_ab_eV": ab})

    predicted = enthalpy_error_K(root, curve["delta_h_ab_eV"], sigma)
    rng = np.random.default_rng(0)
    roots = [root(curve["delta_h_ab_eV"] + rng.normal(0.0, sigma)) for _ in range(2000)]
    spread = float(np.std(roots))
    assert spread == pytest.approx(predicted, rel=0.08), (spread, predicted)
    common = 0.5 * abs(root(curve["delta_h_ab_eV"] + sigma) - root(curve["delta_h_ab_eV"] - sigma))
    assert common > 1.2 * spread, (common, spread)
