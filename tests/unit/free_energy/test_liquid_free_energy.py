"""Liquid free energy by thermodynamic integration from the ideal gas (isotherm + isochore).

Exact references: a mean-field gas (energy a function of the density only, so every
integrand is known in closed form and noise-free), the ideal gas in NPT (g is stationary at
the measured density), and for Lennard-Jones at low density the virial series
βF_ex/N = B₂ρ(1 − 1/N) + B₃ρ²/2 + O(ρ³), with B₂ and B₃ of the same truncated and shifted
potential from numerical quadrature. Constants are taken from scipy, independently of
phasetune.units.
"""

import logging
import math

import numpy as np
import pytest
import torch
from scipy import constants
from torch_sim.models.interface import ModelInterface

import phasetune.free_energy.liquid as liquid_module
from phasetune.free_energy.liquid import (
    LiquidFreeEnergy,
    check_supercritical_isotherm,
    isotherm_pressures_GPa,
    liquid_free_energy,
)
from phasetune.potentials.ideal_gas import IdealGas
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.sampling.sampler import SamplerSettings
from phasetune.structures import build_structure

KB_EV = constants.k / constants.e
EV_A3_PER_GPA = 1e9 / constants.e * 1e-30


def ideal_gas_f_per_atom(n: int, volume_A3: float, mass_amu: float, temperature_K: float):
    """F_id/N = k_BT [−ln(V/Λ³) + ln N!/N], Λ = h/√(2π m k_BT)."""
    wavelength = (
        constants.h
        / math.sqrt(2 * math.pi * mass_amu * constants.atomic_mass * constants.k * temperature_K)
    ) * 1e10
    return KB_EV * temperature_K * (-math.log(volume_A3 / wavelength**3) + math.lgamma(n + 1) / n)


class MeanFieldGas(ModelInterface):
    """U = N (e₀ + aρ + bρ²), ρ = N/V: no forces, P_conf = −∂U/∂V = aρ² + 2bρ³.

    Exactly: βF_ex/N = β(aρ + bρ²) relative to U_∞ = N e₀ (ρ → 0). The stress is
    (1/V) ∂U/∂ε = −P_conf·1 (torch-sim's convention, P = 2K/3V − tr(stress)/3).
    """

    def __init__(self, *, e0: float, a: float, b: float) -> None:
        super().__init__()
        self._device = torch.device("cpu")
        self._dtype = torch.float64
        self._compute_forces = True
        self._compute_stress = True
        self.e0, self.a, self.b = e0, a, b

    def forward(self, state, **kwargs):
        cell = state.row_vector_cell.to(torch.float64)
        volume = torch.linalg.det(cell).abs()
        n = torch.bincount(state.system_idx, minlength=cell.shape[0]).to(torch.float64)
        rho = n / volume
        energy = n * (self.e0 + self.a * rho + self.b * rho**2)
        p_conf = self.a * rho**2 + 2 * self.b * rho**3
        eye = torch.eye(3, dtype=torch.float64)
        return {
            "energy": energy,
            "forces": torch.zeros_like(state.positions),
            "stress": -p_conf[:, None, None] * eye,
        }


def _argon(n_atoms: int, density_per_A3: float | None = None):
    atoms = build_structure("liquid", element="Ar", lattice_A=5.3, n_atoms=n_atoms)
    if density_per_A3 is not None:
        factor = (len(atoms) / (density_per_A3 * atoms.get_volume())) ** (1 / 3)
        atoms.set_cell(atoms.cell.array * factor, scale_atoms=True)
    return atoms


def _quick_settings(**kw) -> SamplerSettings:
    base = {
        "timestep_fs": 5.0,
        "equilibration_steps": 20,
        "production_steps": 60,
        "stride": 10,
        "check_phase": False,
        "progress": False,
    }
    return SamplerSettings(**(base | kw))


MEAN_FIELD = {"e0": -3.0, "a": 10.0, "b": -100.0}  # eV, eV·Å³, eV·Å⁶


def _mean_field_run(**kw) -> tuple[LiquidFreeEnergy, dict]:
    case = {
        "temperature_K": 100.0,
        "pressure_GPa": 0.1,
        "reference_temperature_K": 300.0,
        "density_per_A3": 0.02,
    }
    atoms = _argon(32)
    result = liquid_free_energy(
        MeanFieldGas(**MEAN_FIELD),
        atoms,
        settings=_quick_settings(),
        n_densities=3,
        n_temperatures=2,
        **(case | kw),
    )
    return result, case


def test_mean_field_gas_every_term_is_exact():
    result, case = _mean_field_run()
    a, b, e0 = MEAN_FIELD["a"], MEAN_FIELD["b"], MEAN_FIELD["e0"]
    t, t_h, rho = case["temperature_K"], case["reference_temperature_K"], case["density_per_A3"]
    n = 32

    def phi(r):
        return a * r + b * r * r

    # U_∞: the model on a dilute lattice (no cutoff attribute → 20 Å spacing): e₀ + φ(ρ_dil)
    rho_dilute = n / (4 * 20.0) ** 3
    assert result.u_infinity_eV_per_atom == pytest.approx(e0 + phi(rho_dilute), rel=1e-12)
    # isotherm integrand (Z − 1)/ρ = β_h P_conf/ρ² = β_h (a + 2bρ_k), exact at each node
    beta_h = 1 / (KB_EV * t_h)
    nodes = result.isotherm_densities_per_A3
    assert np.all((nodes > 0) & (nodes < rho)) and np.all(np.diff(nodes) > 0)
    np.testing.assert_allclose(
        result.isotherm_integrand_A3, beta_h * (a + 2 * b * nodes), rtol=1e-9
    )
    assert result.beta_f_excess_reference == pytest.approx(beta_h * phi(rho), rel=1e-9)
    # isochore: ⟨U − U_∞⟩/N = φ(ρ) − φ(ρ_dil) at β nodes inside (β_h, β)
    beta = 1 / (KB_EV * t)
    assert np.all((result.isochore_betas_per_eV > beta_h) & (result.isochore_betas_per_eV < beta))
    np.testing.assert_allclose(
        result.isochore_energies_eV_per_atom, phi(rho) - phi(rho_dilute), rtol=1e-9
    )
    # F/N = f_id + U_∞/N + k_BT [β_h φ + (β − β_h)(φ − φ_dil)] = f_id + e₀ + φ + (T/T_h) φ_dil
    f_id = ideal_gas_f_per_atom(n, n / rho, 39.948, t)
    f = f_id + e0 + phi(rho) + (t / t_h) * phi(rho_dilute)
    assert result.f_ideal_eV_per_atom == pytest.approx(f_id, abs=1e-9)
    assert result.f_eV_per_atom == pytest.approx(f, abs=1e-9)
    g = f + case["pressure_GPa"] * EV_A3_PER_GPA / rho
    assert result.g_eV_per_atom == pytest.approx(g, abs=1e-9)
    assert result.g_error_eV < 1e-9  # the integrands do not fluctuate
    assert result.volume_A3_per_atom == pytest.approx(1 / rho)
    assert result.density_error_per_A3 is None
    assert "g =" in result.describe()


def test_ideal_gas_with_density_from_npt_run():
    """N/⟨V⟩ = P/k_BT, and g = f_id + P/ρ is stationary (a minimum) at that density."""
    temperature, pressure = 300.0, 0.01
    rho_exact = pressure * EV_A3_PER_GPA / (KB_EV * temperature)
    n = 32
    settings = _quick_settings(
        timestep_fs=10.0,
        equilibration_steps=200,
        production_steps=3000,
        barostat_tau_fs=200.0,
        compressibility_per_GPa=1.0 / pressure,
    )
    result = liquid_free_energy(
        IdealGas(),
        _argon(n, rho_exact),
        temperature_K=temperature,
        pressure_GPa=pressure,
        reference_temperature_K=temperature,  # T = T_h: no isochore
        settings=settings,
        n_densities=2,
    )
    assert result.isochore_betas_per_eV.size == 0
    assert result.f_excess_eV_per_atom == pytest.approx(0.0, abs=1e-12)
    assert result.density_error_per_A3 is not None and result.density_error_per_A3 > 0
    assert abs(result.density_per_A3 - rho_exact) < 4 * result.density_error_per_A3
    kT = KB_EV * temperature
    g_exact = ideal_gas_f_per_atom(n, n / rho_exact, 39.948, temperature) + kT
    assert -1e-12 < result.g_eV_per_atom - g_exact < 0.01 * kT
    assert 0 <= result.g_density_shift_eV < 1e-3 * kT


def _virial_coefficients(
    temperature_reduced: float, cutoff: float = 2.5, n: int = 1000, shift: bool = True
):
    """B₂, B₃ (units of σ³, σ⁶) of Lennard-Jones truncated (and shifted) at ``cutoff``·σ.

    B₂ = −2π ∫ f r² dr,  B₃ = −(8π²/3) ∫∫ r s f(r) f(s) [F(r+s) − F(|r−s|)] dr ds,
    F(t) = ∫_0^t t' f(t') dt', f = e^{−u/T} − 1 the Mayer function.
    """

    def mayer(r):
        r = np.maximum(r, 1e-3)
        u_cut = 4 * (cutoff**-12 - cutoff**-6) if shift else 0.0
        u = np.where(r < cutoff, 4 * (r**-12 - r**-6) - u_cut, 0.0)
        return np.expm1(-u / temperature_reduced)

    edges = np.linspace(0.0, cutoff, n + 1)
    r, h = 0.5 * (edges[1:] + edges[:-1]), cutoff / n
    f = mayer(r)
    b2 = -2 * np.pi * np.sum(f * r * r) * h
    t = np.linspace(0.0, 2 * cutoff, 2 * n + 1)
    integrand = t * mayer(t)
    big_f = np.concatenate(
        [[0.0], np.cumsum(0.5 * (integrand[1:] + integrand[:-1]) * (t[1] - t[0]))]
    )
    rr, ss = np.meshgrid(r, r, indexing="ij")
    inner = np.interp(rr + ss, t, big_f) - np.interp(np.abs(rr - ss), t, big_f)
    b3 = -(8 * np.pi**2 / 3) * np.sum((r * f)[:, None] * (r * f)[None, :] * inner) * h * h
    return b2, b3


def test_virial_coefficients_reproduce_full_lennard_jones_literature():
    """The test's own reference: full LJ at T* = 2, B₂/b₀ = −0.6276, B₃/b₀² ≈ 0.44, b₀ = 2πσ³/3."""
    b0 = 2 * np.pi / 3
    b2, b3 = _virial_coefficients(2.0, cutoff=12.0, n=3000, shift=False)
    tail = -(8 * np.pi / 2.0) / (3 * 12.0**3)  # B₂ beyond r_c, high-T limit
    assert (b2 + tail) / b0 == pytest.approx(-0.6276, abs=1e-3)
    assert b3 / b0**2 == pytest.approx(0.437, abs=0.01)


def test_lennard_jones_low_density_matches_virial_series(argon):
    """Isotherm at T_h* = 4, isochore to T* = 2, at ρ* = 0.1, against B₂ and B₃."""
    n, rho_reduced, t_h_reduced, t_reduced = 108, 0.1, 4.0, 2.0
    sigma, eps_K = argon["sigma_A"], argon["epsilon_K"]
    model = LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=sigma)
    settings = SamplerSettings(
        timestep_fs=10.0,
        equilibration_steps=500,
        melt_steps=250,
        production_steps=3000,
        stride=10,
        progress=False,
    )
    result = liquid_free_energy(
        model,
        _argon(n),
        temperature_K=t_reduced * eps_K,
        pressure_GPa=0.0,
        reference_temperature_K=t_h_reduced * eps_K,
        settings=settings,
        n_densities=4,
        n_temperatures=2,
        density_per_A3=rho_reduced / sigma**3,
    )
    assert result.u_infinity_eV_per_atom == 0.0

    def virial(t):
        b2, b3 = _virial_coefficients(t)
        return b2 * rho_reduced * (1 - 1 / n) + b3 * rho_reduced**2 / 2

    hot, cold = virial(t_h_reduced), virial(t_reduced)  # ≈ +0.057, −0.067
    # B₄ρ³/3 and O(ρ²/N) terms are ≲ 1e-3 here
    systematic = 2e-3
    ref, ref_err = result.beta_f_excess_reference, result.beta_f_excess_reference_error
    assert ref_err < 0.02
    assert abs(ref - hot) < 4 * ref_err + systematic
    ich, ich_err = result.isochore_integral, result.isochore_integral_error
    assert ich_err < 0.006
    assert abs(ich - (cold - hot)) < 4 * ich_err + systematic
    beta_f = result.f_excess_eV_per_atom / (KB_EV * t_reduced * eps_K)
    assert abs(beta_f - cold) < 4 * math.hypot(ref_err, ich_err) + systematic
    kT = KB_EV * t_reduced * eps_K
    assert result.g_error_eV == pytest.approx(kT * math.hypot(ref_err, ich_err))
    # the excess energy along the isochore is negative (attraction dominates at T* ≤ 4)
    assert np.all(result.isochore_energies_eV_per_atom < 0)


def test_flagged_frames_are_excluded_with_a_warning_and_none_left_raises(monkeypatch, caplog):
    real = liquid_module.sample_state_points
    flag = {}

    def flagged(*args, **kw):
        frames, md = real(*args, **kw)
        for system, which in flag.items():
            frames.phase_ok[which, system] = False
        return frames, md

    monkeypatch.setattr(liquid_module, "sample_state_points", flagged)
    flag.update({0: slice(0, 2)})
    with caplog.at_level(logging.WARNING, logger="phasetune.free_energy.liquid"):
        result, _ = _mean_field_run()
    assert any("isotherm_0" in r.getMessage() and "2/6" in r.getMessage() for r in caplog.records)
    assert np.isfinite(result.g_eV_per_atom)
    flag.update({3: slice(None)})  # every frame of the first isochore node crystallised
    with pytest.raises(RuntimeError, match="isochore_0"):
        _mean_field_run()


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"reference_temperature_K": 50.0}, "must be >= temperature_K"),
        ({"temperature_K": -1.0}, "temperature_K must be a positive"),
        ({"density_per_A3": 0.0}, "density_per_A3 must be a positive"),
        ({"density_per_A3": -0.02}, "density_per_A3 must be a positive"),
        ({"n_densities": 0}, "n_densities"),
        ({"n_temperatures": 0}, "n_temperatures must be >= 1"),
        ({"pressure_GPa": float("nan")}, "pressure_GPa must be finite"),
    ],
)
def test_invalid_inputs_raise(kw, match):
    case = {
        "temperature_K": 100.0,
        "pressure_GPa": 0.0,
        "reference_temperature_K": 300.0,
        "settings": _quick_settings(),
        "density_per_A3": 0.02,
    }
    with pytest.raises(ValueError, match=match):
        liquid_free_energy(IdealGas(), _argon(32), **(case | kw))


def test_non_periodic_atoms_raise():
    atoms = _argon(32)
    atoms.pbc = False
    with pytest.raises(ValueError, match="periodic"):
        liquid_free_energy(
            IdealGas(),
            atoms,
            temperature_K=100.0,
            pressure_GPa=0.0,
            reference_temperature_K=300.0,
            settings=_quick_settings(),
            density_per_A3=0.02,
        )


def test_an_isotherm_through_the_two_phase_region_is_refused():
    """The Ti1 EAM liquid's isotherm at 6000 K, node by node (bench/RESULTS.md,
    "subcritical"): the total pressure turns negative and falls with density, a van der Waals
    loop."""
    rho = np.array([0.00105, 0.00537, 0.01252, 0.02155, 0.03124, 0.04027, 0.04742, 0.05174])
    integrand = np.array([-672.961, -185.385, -85.659, -53.906, -43.026, -31.817, 3.218, 32.679])
    errors = np.array([8.042, 2.316, 1.103, 0.753, 0.690, 0.533, 0.399, 0.472])
    pressure, _ = isotherm_pressures_GPa(rho, integrand, errors, 6000.0)
    # P = ρk_BT(1 + ρ·(Z−1)/ρ): the ideal-gas part alone at ρ = 0.04027 Å⁻³ is 3.33 GPa
    ideal = rho[5] * KB_EV * 6000.0 / EV_A3_PER_GPA
    assert ideal == pytest.approx(3.33, abs=0.01)
    assert pressure[5] == pytest.approx(ideal * (1 + rho[5] * integrand[5]), rel=1e-9)
    assert pressure[5] < -0.9
    with pytest.raises(RuntimeError, match="crosses the liquid–gas two-phase region"):
        check_supercritical_isotherm(rho, integrand, errors, 6000.0)
    # a supercritical LJ-like isotherm: B₂ < 0 at low density, P rising throughout
    lj_integrand = -20.0 + 2000.0 * rho
    check_supercritical_isotherm(rho, lj_integrand, errors / 10, 6000.0)
