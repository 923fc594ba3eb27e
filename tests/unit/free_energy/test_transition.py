"""Δg(T) from absolute free energies plus Gibbs–Helmholtz, and its root, on exact cases."""

import numpy as np
import pytest

from phasetune.free_energy.transition import delta_g_curve, root_of_delta_g


def test_constant_delta_h_gives_the_closed_form_delta_g_and_root():
    """Δh constant: Δg(T) = Δh (1 − T/T*) ⇒ given Δg(T₀), the root is T* exactly."""
    t_star, dh, t0 = 1000.0, 0.1, 900.0
    dg0 = dh * (1 - t0 / t_star)
    temps = np.array([850.0, 900.0, 950.0, 1000.0, 1100.0])
    curve = delta_g_curve(
        temps,
        reference_temperature_K=t0,
        delta_g_reference_eV=dg0,
        enthalpy_temperatures_K=[850.0, 950.0, 1050.0],
        delta_h_eV=[dh, dh, dh],
        degree=0,
    )
    np.testing.assert_allclose(curve, dh * (1 - temps / t_star), rtol=0, atol=1e-12)
    root = root_of_delta_g(
        reference_temperature_K=t0,
        delta_g_reference_eV=dg0,
        enthalpy_temperatures_K=[850.0, 950.0, 1050.0],
        delta_h_eV=[dh, dh, dh],
        degree=0,
    )
    assert root == pytest.approx(t_star, abs=1e-8)  # scipy brentq in the bracketing cell


def test_linear_delta_h_matches_numerical_gibbs_helmholtz_integration():
    """Δh = a + b T: Δg from the curve equals a direct quadrature of −T∫Δh/T'² dT'."""
    a, b, t0, dg0 = 0.2, -5e-5, 800.0, 0.01
    temps = np.array([700.0, 1000.0, 1200.0])
    curve = delta_g_curve(
        temps,
        reference_temperature_K=t0,
        delta_g_reference_eV=dg0,
        enthalpy_temperatures_K=[700.0, 900.0, 1100.0],
        delta_h_eV=[a + b * t for t in (700.0, 900.0, 1100.0)],
        degree=1,
    )
    for t, value in zip(temps, curve, strict=True):
        grid = np.linspace(t0, t, 200001)
        integral = np.trapezoid((a + b * grid) / grid**2, grid)
        assert value == pytest.approx(t / t0 * dg0 - t * integral, abs=1e-9)
    # no sign change in the search window: NaN, not a made-up root
    assert np.isnan(
        root_of_delta_g(
            reference_temperature_K=t0,
            delta_g_reference_eV=-1.0,
            enthalpy_temperatures_K=[700.0, 900.0],
            delta_h_eV=[-0.1, -0.1],
            degree=0,
        )
    )
