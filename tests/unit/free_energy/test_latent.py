"""Latent heat, volume change and Clausius–Clapeyron slope read at T* (free_energy/latent.py)."""

import numpy as np
import pytest

from phasetune.free_energy.latent import latent_properties, line_at

#: ice Ih → water at 273.15 K, 1 bar, per molecule: Δh = 6.01 kJ/mol, Δv = −1.63 cm³/mol;
#: measured melting line dT/dP = −74 K/GPa (−0.0074 K/bar; CRC Handbook)
AVOGADRO = 6.02214076e23
ICE_DH_EV = 6010.0 / 96485.33212
ICE_DV_A3 = -1.63e-6 / AVOGADRO * 1e30
ICE_V_A3 = 19.65e-6 / AVOGADRO * 1e30  # ice Ih, 0.9167 g/cm³


def test_ice_melting_line_slope_from_its_latent_heat_and_volume_change():
    temps = np.array([263.15, 273.15, 283.15])
    # h and v of both phases linear in T (heat capacities, expansivities): only Δ matters
    h_ice = -0.5 + 3.9e-4 * (temps - 273.15)
    h_water = h_ice + ICE_DH_EV + 3.5e-4 * (temps - 273.15)
    v_ice = ICE_V_A3 + 1e-3 * (temps - 273.15)
    v_water = v_ice + ICE_DV_A3 - 2e-3 * (temps - 273.15)
    small = np.full(3, 1e-6)
    latent = latent_properties(
        temperatures_K=temps,
        h_a_eV=h_ice,
        h_a_error_eV=small,
        h_b_eV=h_water,
        h_b_error_eV=small,
        v_a_A3=v_ice,
        v_a_error_A3=small,
        v_b_A3=v_water,
        v_b_error_A3=small,
        at_temperature_K=273.15,
    )
    assert latent.delta_h_eV == pytest.approx(ICE_DH_EV, rel=1e-6)
    assert latent.delta_v_A3 == pytest.approx(ICE_DV_A3, rel=1e-5)
    assert latent.relative_volume_change == pytest.approx(-1.63 / 19.65, rel=1e-4)
    assert latent.slope_K_per_GPa == pytest.approx(-74.0, abs=1.0)
    assert latent.slope_error_K_per_GPa < 0.01


def test_line_fit_error_covers_the_scatter_of_repeats():
    """The error read off the fit's covariance equals the spread of independent repeats."""
    rng = np.random.default_rng(0)
    x, sy = np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.2, 0.1])
    reads = [line_at(x, 2.0 * x + 1.0 + sy * rng.standard_normal(3), sy, 4.0) for _ in range(4000)]
    values, errors = np.array(reads).T
    assert np.mean(values) == pytest.approx(9.0, abs=0.01)
    assert np.std(values) == pytest.approx(errors[0], rel=0.05)
    assert np.allclose(errors, errors[0])  # the error depends on sy and x only
    # one point: returned as is
    assert line_at([5.0], [3.0], [0.2], 7.0) == (3.0, 0.2)
