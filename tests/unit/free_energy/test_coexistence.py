"""Two-phase coexistence: building blocks exactly, and a small Lennard-Jones melting run."""

import math

import numpy as np
import pytest
import torch
import torch_sim as ts
from ase.build import bulk

import phasetune.free_energy.coexistence as coexistence_module
from phasetune.free_energy.bracketing import melting_temperatures_bracketed, recentred_guess
from phasetune.free_energy.coexistence import (
    TRANSFORMED_FRACTION,
    CoexistenceResult,
    CoexistenceSettings,
    converted_fraction,
    fit_untransformed,
    melting_temperatures_coexistence,
)
from phasetune.free_energy.interface_velocity import (
    fit_melting_point,
    fit_melting_temperature,
    frame_mean,
    interface_velocities,
    interface_velocity_errors,
    velocity_noise_error,
)
from phasetune.free_energy.solid import FrenkelLaddSettings
from phasetune.free_energy.transition import transition_from_free_energies
from phasetune.free_energy.two_phase_box import (
    FrozenAtoms,
    elongated_solid,
    static_compressibility_per_GPa,
)
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.sampling.sampler import SamplerSettings
from phasetune.structures import build_structure
from phasetune.units import EV_PER_A3_PER_GPA


def test_interface_velocity_is_the_slope_times_half_the_box():
    """x_s(t) = 0.5 + r t ⇒ v = (L_z/2) r; saturated frames are left out of the fit."""
    t = np.linspace(0, 10, 21)
    growing = 0.5 + 0.03 * t  # reaches 0.9 at t = 13.3: never saturates
    melting = np.clip(0.5 - 0.08 * t, 0.0, 1.0)  # hits 0.1 at t = 5, then flat at 0
    fractions = np.stack([growing, melting], axis=1)
    v = interface_velocities(t, fractions, np.array([40.0, 60.0]), saturation=0.1)
    assert v[0] == pytest.approx(20.0 * 0.03, rel=1e-10)
    assert v[1] == pytest.approx(30.0 * -0.08, rel=1e-10)


def test_frame_means_are_exactly_rounded_and_do_not_depend_on_the_other_boxes():
    """A box's mean over frames is the exactly rounded one (math.fsum), the same alone or
    among other boxes: a split measurement must reproduce the one run's numbers bit for bit.
    Values of very different size make a naive running sum lose digits."""
    rng = np.random.default_rng(3)
    series = rng.normal(size=(61, 7)) * np.array([1e16, 1, 1e-8, 3, 1e8, 1, 1])
    series[::2, 0] += 1.0  # 1e16 + 1 and back: a naive sum drops the ones
    together = frame_mean(series)
    for box in range(series.shape[1]):
        alone = frame_mean(series[:, box : box + 1])[0]
        assert alone == together[box]
        assert alone == math.fsum(series[:, box]) / len(series)
    assert frame_mean(np.array([[1e16], [1.0], [-1e16]]))[0] == 1 / 3


def test_melting_temperature_is_the_zero_of_the_velocity_line():
    temps = np.array([90.0, 95.0, 100.0, 105.0, 110.0])
    assert fit_melting_temperature(temps, 2.0 * (101.5 - temps)) == pytest.approx(101.5)
    assert math.isnan(fit_melting_temperature(temps, temps - 100.0))  # solid grows when hot?


def _staircases(drift_layers_per_ps, n_boxes, rng, *, rate_per_ps=1.5, frames=120, dt=0.15):
    """x_s(t) of faceted interfaces: whole layers (0.02 of the box) added or removed at Poisson
    times, net rate ``drift`` layers/ps; plus a classifier's frame noise of 0.005."""
    up = rate_per_ps + max(drift_layers_per_ps, 0.0)
    down = rate_per_ps + max(-drift_layers_per_ps, 0.0)
    steps = rng.poisson(up * dt, (frames, n_boxes)) - rng.poisson(down * dt, (frames, n_boxes))
    x = 0.5 + 0.02 * np.cumsum(steps, axis=0) + 0.005 * rng.standard_normal((frames, n_boxes))
    return np.arange(frames) * dt, x


def test_velocity_errors_from_time_blocks_cover_the_scatter_of_staircase_interfaces():
    """A faceted interface moves in whole layers at random times (Ti1 hcp basal, bench/
    RESULTS.md "time blocks"): σ(v) from 3 time blocks of each box must match the scatter of
    v over independent boxes (mean σ² against the variance, 2000 boxes), and a smooth
    interface's σ(v) is its frame noise alone."""
    rng = np.random.default_rng(7)
    t, x = _staircases(0.8, 2000, rng)
    lz = np.full(x.shape[1], 100.0)
    v = interface_velocities(t, x, lz, saturation=0.05)
    sigma = interface_velocity_errors(t, x, lz, saturation=0.05)
    assert v.mean() == pytest.approx(50.0 * 0.02 * 0.8, rel=0.05)  # (L_z/2)·drift
    assert np.sqrt(np.mean(sigma**2)) == pytest.approx(v.std(), rel=0.15)
    smooth = 0.5 + 0.01 * t[:, None] + 0.005 * rng.standard_normal((len(t), 50))
    quiet = interface_velocity_errors(t, smooth, np.full(50, 100.0), saturation=0.05)
    assert np.sqrt(np.mean(quiet**2)) < 0.1 * np.sqrt(np.mean(sigma**2))
    # too few frames in the linear regime for three blocks of 3: no estimate
    short = interface_velocity_errors(t[:8], x[:8, :2], lz[:2], saturation=0.05)
    assert np.isnan(short).all()


def test_velocity_noise_enters_the_melting_point_error():
    """Three boxes that fall on the line by chance (the line fit's error is 0) but whose own
    velocities are noisy: σ(T_m) is the delta method on the line fit, and it matches the
    scatter of the fitted T_m over boxes drawn with those σ(v) (Monte Carlo, 20000 draws)."""
    temps = np.array([1677.0, 1765.0, 1853.0])
    line = 0.005 * (1720.0 - temps)
    # half the Ti1 hcp basal boxes' block errors (0.13, 0.15, 0.37 Å/ps), where the delta
    # method is accurate (at the full errors: 19.2 K against a Monte Carlo 20.9 K)
    sigma_v = np.array([0.065, 0.075, 0.185])
    fit = fit_melting_point(temps, np.zeros(3, int), line, sigma_v)
    assert fit.fit_error_K == pytest.approx(0.0, abs=1e-6)
    assert fit.error_K == fit.velocity_noise_K
    assert fit.melting_temperature_K == pytest.approx(1720.0)
    rng = np.random.default_rng(3)
    draws = line + sigma_v * rng.standard_normal((20000, 3))
    t_m = np.array([fit_melting_temperature(temps, v) for v in draws])
    t_m = t_m[np.isfinite(t_m)]  # a draw whose line rises has no T_m (rare here)
    assert len(t_m) > 19900
    spread = np.subtract(*np.percentile(t_m, [84.13, 15.87])) / 2  # robust σ
    assert fit.velocity_noise_K == pytest.approx(spread, rel=0.1)
    # a box without its own error estimate (too short a linear regime) gives no estimate,
    # and a rising line (no melting point) none either
    assert math.isnan(velocity_noise_error(temps, line, np.array([0.065, np.nan, 0.185])))
    assert math.isnan(velocity_noise_error(temps, -line, sigma_v))


def test_replica_disagreement_is_detected_and_widens_the_error():
    """Constructed: at every temperature one box grew and the other melted (the failure of
    small Ti1 boxes); the fit then reports the disagreement and an error that covers it.
    A consistent set of boxes with one chance disagreement next to T_m is not flagged."""
    temps = np.repeat([1820.0, 1870.0, 1920.0, 1970.0, 2020.0], 2)
    replica = np.tile([0, 1], 5)
    line = 0.01 * (1918.0 - temps)  # v = 0 at 1918 K
    bad = np.where(replica == 0, 2.0 + 0.01 * (1918.0 - temps), -1.0 + 0.0 * temps)
    fit = fit_melting_point(temps, replica, bad)
    assert fit.replicas_disagree
    assert fit.disagreement_K == [1820.0, 1870.0, 1920.0, 1970.0, 2020.0]
    assert fit.error_K >= max(abs(t - fit.melting_temperature_K) for t in fit.disagreement_K)
    noisy = line + np.where(replica == 0, 0.05, -0.05)  # ± 0.05 Å/ps: the boxes at 1920 K
    fit = fit_melting_point(temps, replica, noisy)  # straddle zero by chance
    assert fit.disagreement_K == [1920.0]
    assert not fit.replicas_disagree
    assert fit.melting_temperature_K == pytest.approx(1918.0, abs=0.5)
    assert fit.bracketed
    # two neighbours of T_m straddling zero (LJ at P* = 5) are chance too, with 5 temperatures
    wider = line + np.where(replica == 0, 0.6, -0.6)
    fit = fit_melting_point(temps, replica, wider)
    assert fit.disagreement_K == [1870.0, 1920.0, 1970.0]  # 3 of 5: half or more
    assert fit.replicas_disagree
    two = line + np.where(replica == 0, 0.03, -0.03) + np.where(temps == 1870.0, 0.5 * replica, 0)
    fit = fit_melting_point(temps, replica, two)
    assert len(fit.disagreement_K) <= 2 and not fit.replicas_disagree


def test_frozen_atoms_get_no_force_and_static_compressibility_of_lj(argon):
    eps, sigma = argon["epsilon_eV"], argon["sigma_A"]
    lj = LennardJones(epsilon_eV=eps, sigma_A=sigma, cutoff_sigma=2.5)
    atoms = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=32)
    atoms.rattle(0.05, seed=1)
    state = ts.io.atoms_to_state([atoms], device="cpu", dtype=torch.float64)
    frozen = torch.arange(32) < 16
    out = FrozenAtoms(lj, frozen)(state)
    assert float(out["forces"][frozen].abs().max()) == 0.0
    assert torch.allclose(out["forces"][~frozen], lj(state)["forces"][~frozen])
    # B = V d²E/dV² of the perfect lattice against the analytic fcc lattice sum
    # E(a)/N = ½ Σ_j φ(a s_j) over the neighbours within r_c (the shift drops out of the
    # derivatives): with v = a³/4, B = v d²E/dv² = (4/(9a)) (E'' − 2E'/a)
    perfect = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=32)
    beta = static_compressibility_per_GPa(lj, perfect, strain=0.002)
    a, cutoff = 5.3, 2.5 * sigma
    grid = np.array(np.meshgrid(*[np.arange(-4, 5)] * 3)).reshape(3, -1).T
    basis = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    s = np.linalg.norm((grid[:, None, :] + basis[None]).reshape(-1, 3), axis=1)
    s = s[(s > 0) & (a * s < cutoff)]
    r = a * s
    d1 = 4 * eps * (-12 * sigma**12 / r**13 + 6 * sigma**6 / r**7)
    d2 = 4 * eps * (156 * sigma**12 / r**14 - 42 * sigma**6 / r**8)
    e1, e2 = 0.5 * (s * d1).sum(), 0.5 * (s * s * d2).sum()
    bulk_GPa = 4 / (9 * a) * (e2 - 2 * e1 / a) / EV_PER_A3_PER_GPA
    assert beta == pytest.approx(1 / bulk_GPa, rel=2e-3)


def test_bad_inputs_raise(argon):
    with pytest.raises(ValueError, match="orthogonal"):
        elongated_solid(bulk("Ar", "fcc", a=5.3), 2)
    with pytest.raises(ValueError, match="z_repeat"):
        CoexistenceSettings(z_repeat=1)
    with pytest.raises(ValueError, match="melt_temperature_factor"):
        CoexistenceSettings(melt_temperature_factor=0.9)
    lj = LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"])
    atoms = build_structure("fcc", element="Ar", lattice_A=5.3, n_atoms=32)
    with pytest.raises(ValueError, match="solid_phase"):
        melting_temperatures_coexistence(
            lj, atoms, solid_phase="liquid", pressures_GPa=[0], guesses_K=[70]
        )
    with pytest.raises(ValueError, match="one melting-temperature guess per pressure"):
        melting_temperatures_coexistence(
            lj, atoms, solid_phase="fcc", pressures_GPa=[0, 1], guesses_K=[70]
        )


def _lj_melting_point(epsilon_eV, sigma_A, *, time_scale, seed):
    """T_m of LJ (r_c = 2.5σ, shifted) at P = 0 from a small coexistence run (216 atoms/box).

    Every time (step, thermostat, barostat) is multiplied by ``time_scale``: with
    time_scale = √(ε₀/ε) the run is the same process in reduced units for any ε.
    """
    model = LennardJones(epsilon_eV=epsilon_eV, sigma_A=sigma_A, cutoff_sigma=2.5, shift=True)
    atoms = build_structure("fcc", element="Ar", lattice_A=1.58 * sigma_A, n_atoms=108)
    settings = CoexistenceSettings(
        timestep_fs=10.0 * time_scale,
        thermostat_tau_fs=100.0 * time_scale,
        barostat_tau_fs=1000.0 * time_scale,
        solid_steps=300,
        melt_steps=300,
        quench_steps=100,
        equilibration_steps=200,
        production_steps=1500,
        stride=50,
        seed=seed,
        progress=False,
    )
    t_guess = 0.62 * epsilon_eV / 8.617333262e-5
    (result,) = melting_temperatures_coexistence(
        model,
        atoms,
        solid_phase="fcc",
        pressures_GPa=[0.0],
        guesses_K=[t_guess],
        window=0.1,
        n_temperatures=3,
        n_replicas=2,
        settings=settings,
    )
    return result


@pytest.mark.slow(seconds=80)
def test_lj_melting_temperature_scales_with_epsilon(argon):
    """T_m(2ε) = 2 T_m(ε): LJ has one energy scale (all times scaled by 1/√2 to match).

    Different seeds: the two runs are independent samples of the same reduced process, so
    the check is statistical. It catches any unit slip (temperatures, pressures, the
    barostat coupling from the static compressibility, melting temperatures, fit).
    """
    eps, sigma = argon["epsilon_eV"], argon["sigma_A"]
    one = _lj_melting_point(eps, sigma, time_scale=1.0, seed=1)
    two = _lj_melting_point(2 * eps, sigma, time_scale=1 / math.sqrt(2), seed=2)
    assert one.bracketed and two.bracketed, (one.describe(), two.describe())
    error = math.hypot(2 * one.error_K, two.error_K)
    assert abs(two.melting_temperature_K - 2 * one.melting_temperature_K) < 3 * error + 1.0, (
        one.describe(),
        two.describe(),
    )
    # the same physics at both scales: reduced T_m near the published 0.617 (Davidchack &
    # Laird, J. Chem. Phys. 118, 7651 (2003), r_c = 2.5σ shifted) for these small boxes
    t_star = one.melting_temperature_K / argon["epsilon_K"]
    assert 0.57 < t_star < 0.69, one.describe()


#: Pedersen, J. Chem. Phys. 139, 104102 (2013), Table I: LJ truncated and shifted at
#: r_c = 2.5σ, solid and liquid coexist at T* = 0.800, P* = 2.185 (interface pinning).
PEDERSEN_T_STAR, PEDERSEN_P_STAR = 0.800, 2.185


def _reduced_pressure_GPa(argon, p_star: float) -> float:
    return p_star * argon["epsilon_eV"] / argon["sigma_A"] ** 3 / EV_PER_A3_PER_GPA


def _pedersen_lj(argon) -> LennardJones:
    return LennardJones(
        epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"], cutoff_sigma=2.5, shift=True
    )


@pytest.fixture(scope="module")
def pedersen_coexistence(argon):
    """Coexistence T_m of LJ (r_c = 2.5σ, truncated and shifted) at Pedersen's pressure.

    A cross-section of 5 × 5 fcc cells (1,000-atom boxes), 5 temperatures ± 5 % × 2 replicas,
    30 ps: with 4 × 4 cells the same runs came out 1–3 % high (bench/RESULTS.md), a finite-size
    effect of the narrow interface; with 3 temperatures ± 4 % and 25 ps the replicas scattered
    by ± 5 K (T* = 0.775 ± 0.04, measured once).
    """
    atoms = build_structure("fcc", element="Ar", lattice_A=5.40, n_atoms=500)
    settings = CoexistenceSettings(
        timestep_fs=10.0,
        solid_steps=600,
        melt_steps=400,
        quench_steps=100,
        equilibration_steps=200,
        production_steps=3000,
        stride=50,
        seed=0,
        progress=False,
    )
    (result,) = melting_temperatures_coexistence(
        _pedersen_lj(argon),
        atoms,
        solid_phase="fcc",
        pressures_GPa=[_reduced_pressure_GPa(argon, PEDERSEN_P_STAR)],  # 0.0915 GPa
        guesses_K=[97.5],
        window=0.05,
        n_temperatures=5,
        n_replicas=2,
        settings=settings,
    )
    return result


@pytest.mark.slow(seconds=20, shared={"pedersen_coexistence": 410})
def test_lj_melting_temperature_matches_pedersen_within_2_percent(argon, pedersen_coexistence):
    result = pedersen_coexistence
    assert result.bracketed, result.describe()
    t_star = result.melting_temperature_K / argon["epsilon_K"]
    assert abs(t_star / PEDERSEN_T_STAR - 1) < 0.02, result.describe()
    # the error is the larger of the replicas' spread and the line fit's own error (f0ec5dd;
    # the spread alone came out 2-15x too small): 1.2 K here, so the 2 % check is ≥ 1.3 σ wide
    assert result.error_K < 0.015 * result.melting_temperature_K, result.describe()


def _lj_free_energy_route(
    argon,
    *,
    pressure_GPa: float,
    reference_temperature_K: float,
    fcc_lattice_A: float,
    liquid_lattice_A: float,
    compressibility_per_GPa: float,
):
    """LJ fcc|liquid T* from absolute free energies, 256 atoms per phase.

    Frenkel–Ladd fcc (4 replicas, 4,000 switching steps of 10 fs, the harmonic finite-size
    correction of the 256-atom crystal), the liquid from the ideal gas (isotherm at
    T_h ≈ 2ε/k_B, 120 ps per node), Gibbs–Helmholtz from NPT enthalpies at 0.9/1.0/1.1 T₀.
    The liquid needs the long runs: with 20 ps per node its g scattered by ≈ 0.02 k_BT
    between runs, ≈ 1.5 % in T_m (bench/RESULTS.md).
    """
    md = dict(timestep_fs=10.0, compressibility_per_GPa=compressibility_per_GPa, progress=False)
    t0 = reference_temperature_K
    return transition_from_free_energies(
        _pedersen_lj(argon),
        {
            "fcc": build_structure("fcc", element="Ar", lattice_A=fcc_lattice_A, n_atoms=256),
            "liquid": build_structure(
                "liquid", element="Ar", lattice_A=liquid_lattice_A, n_atoms=256
            ),
        },
        pressure_GPa=pressure_GPa,
        reference_temperature_K=t0,
        enthalpy_temperatures_K=[0.9 * t0, t0, 1.1 * t0],
        solid_settings=FrenkelLaddSettings(
            timestep_fs=10.0,
            npt_equilibration_steps=500,
            npt_production_steps=1000,
            switching_equilibration_steps=300,
            switching_steps=4000,
            n_replicas=4,
            compressibility_per_GPa=compressibility_per_GPa,
            progress=False,
            finite_size_correction="harmonic",
        ),
        liquid_settings=SamplerSettings(
            equilibration_steps=500, melt_steps=300, production_steps=12000, stride=10, **md
        ),
        enthalpy_settings=SamplerSettings(
            equilibration_steps=500, melt_steps=300, production_steps=2000, stride=10, **md
        ),
        liquid_reference_temperature_K=2 * argon["epsilon_K"],
    )


@pytest.fixture(scope="module")
def pedersen_free_energies(argon):
    """fcc|liquid at Pedersen's pressure from free energies, T₀ = 95.8 K (T* = 0.800)."""
    return _lj_free_energy_route(
        argon,
        pressure_GPa=_reduced_pressure_GPa(argon, PEDERSEN_P_STAR),
        reference_temperature_K=95.8,
        fcc_lattice_A=5.40,
        liquid_lattice_A=5.65,
        compressibility_per_GPa=0.5,
    )


@pytest.mark.slow(seconds=5, shared={"pedersen_coexistence": 410, "pedersen_free_energies": 650})
def test_lj_free_energy_route_matches_pedersen_and_coexistence(
    argon, pedersen_coexistence, pedersen_free_energies
):
    result = pedersen_free_energies
    t_m, error = result.transition_temperature_K, result.error_K
    print(f"free-energy route: T_m = {t_m:.2f} ± {error:.2f} K; {pedersen_coexistence.describe()}")
    assert error < 0.01 * t_m, (t_m, error)
    assert abs(t_m / argon["epsilon_K"] / PEDERSEN_T_STAR - 1) < 0.02, (t_m, error)
    coexistence = pedersen_coexistence
    combined = math.hypot(error, coexistence.error_K)
    assert abs(t_m - coexistence.melting_temperature_K) < 3 * combined, (t_m, coexistence)


def _result(temps, velocities):
    temps, velocities = np.asarray(temps, float), np.asarray(velocities, float)
    fit = fit_melting_point(temps, np.zeros(len(temps), int), velocities)
    return CoexistenceResult(
        solid_phase="bcc",
        pressure_GPa=0.0,
        temperatures_K=temps,
        replica=np.zeros(len(temps), int),
        velocity_A_per_ps=velocities,
        time_ps=np.zeros(3),
        solid_fraction=np.zeros((3, len(temps))),
        melting_temperature_K=fit.melting_temperature_K,
        error_K=fit.error_K,
        replica_melting_temperatures_K=fit.replica_melting_temperatures_K,
        bracketed=fit.bracketed,
        n_atoms=1000,
    )


def test_a_box_whose_solid_turned_into_another_crystal_is_reported_and_left_out(monkeypatch):
    # phase fractions [fcc, hcp, bcc, liquid] at the start and end of Ti1 hcp boxes
    # (bench/RESULTS.md, "the hcp|liquid boxes"): c along the interface at 1677 K (44 % of the
    # atoms end bcc), c across it at 1765 K (hcp melts, stays hcp)
    start = np.array([[0.0, 0.492, 0.023, 0.485], [0.001, 0.499, 0.006, 0.494]])
    end = np.array([[0.0, 0.123, 0.436, 0.441], [0.0, 0.449, 0.013, 0.538]])
    assert converted_fraction(start, end, "hcp") == pytest.approx([0.369, 0.006])
    # a 216-atom LJ fcc|liquid box of tests/integration/test_measure.py: the fcc lost 7 %
    # beyond what melted, the hcp-like atoms (classifier noise, stacking faults) gained 5 %
    lj = converted_fraction(
        np.array([0.465, 0.119, 0.0, 0.417]), np.array([0.394, 0.165, 0.002, 0.44]), "fcc"
    )
    assert lj == pytest.approx(0.046) and lj < TRANSFORMED_FRACTION
    assert list(converted_fraction(start, end, "hcp") > TRANSFORMED_FRACTION) == [True, False]
    # replica 0 melts through T_m = 1700 K; in replica 1 bcc grows from the liquid everywhere
    temps = np.array([1677.0, 1765.0, 1853.0] * 2)
    replica = np.repeat([0, 1], 3)
    velocities = np.where(replica == 0, -0.004 * (temps - 1700.0), 0.4)
    transformed = replica == 1
    kept = fit_untransformed(temps, replica, velocities, transformed)
    assert kept.melting_temperature_K == pytest.approx(1700.0)
    every = fit_melting_point(temps, replica, velocities)
    assert abs(every.melting_temperature_K - 1700.0) > 50  # what the mixed fit would say
    assert fit_untransformed(temps, replica, velocities, np.ones(6, bool)) is None
    result = _result(temps, velocities)
    result.solid_phase = "hcp"
    result.converted_fraction = np.where(transformed, 0.369, 0.006)
    result.transformed = transformed
    assert result.transformed_K == [1677.0, 1765.0, 1853.0]
    assert "hcp SOLID TRANSFORMED into another crystal (up to 37% of the atoms)" in (
        result.describe()
    )
    # every box transformed: no re-centring (another window would transform too)
    result.transformed = np.ones(6, bool)
    result.bracketed = False
    calls = []

    def fake(*args, **kwargs):
        calls.append(kwargs["guesses_K"])
        return [result]

    monkeypatch.setattr(coexistence_module, "melting_temperatures_coexistence", fake)
    (again,) = melting_temperatures_bracketed(
        None, None, solid_phase="hcp", pressures_GPa=[0.0], guesses_K=[1765.0]
    )
    assert again is result and calls == [[1765.0]]
    result.transformed = transformed  # some boxes left: the usual re-centring
    melting_temperatures_bracketed(
        None, None, solid_phase="hcp", pressures_GPa=[0.0], guesses_K=[1765.0], max_recentre=1
    )
    assert len(calls) == 3


def test_an_unbracketed_run_is_recentred_and_never_called_a_result():
    # solids grow at every temperature, roots extrapolated to 2,100 K: next window there
    grew = _result([1850.0, 1900.0, 1950.0], 0.01 * (2100.0 - np.array([1850, 1900, 1950])))
    assert not grew.bracketed and "not a result" in grew.describe()
    assert recentred_guess(grew, 1900.0, 0.05) == pytest.approx(2100.0)
    # a far extrapolation is clipped to three windows
    far = _result([1850.0, 1900.0, 1950.0], 0.001 * (3000.0 - np.array([1850, 1900, 1950])))
    assert recentred_guess(far, 1900.0, 0.05) == pytest.approx(1900.0 * 1.15)
    # no usable slope (solid melts everywhere, faster when colder): two windows down
    odd = _result([1850.0, 1900.0, 1950.0], [-0.9, -0.5, -0.1])
    assert math.isnan(odd.melting_temperature_K)
    assert recentred_guess(odd, 1900.0, 0.05) == pytest.approx(1900.0 * 0.9)


def _both_routes(argon, *, p_star, guess_K, fcc_lattice_A, liquid_lattice_A, compressibility):
    """Coexistence T_m at P* (1,000-atom boxes, 5 T ± 5 % × 2 replicas, 30 ps), then free
    energies at T₀ = that T_m (:func:`_lj_free_energy_route`)."""
    (coexistence,) = melting_temperatures_bracketed(
        _pedersen_lj(argon),
        build_structure("fcc", element="Ar", lattice_A=fcc_lattice_A, n_atoms=500),
        solid_phase="fcc",
        pressures_GPa=[_reduced_pressure_GPa(argon, p_star)],
        guesses_K=[guess_K],
        window=0.05,
        n_temperatures=5,
        n_replicas=2,
        settings=CoexistenceSettings(
            timestep_fs=10.0,
            solid_steps=600,
            melt_steps=400,
            quench_steps=100,
            equilibration_steps=200,
            production_steps=3000,
            stride=50,
            progress=False,
        ),
    )
    assert coexistence.bracketed and not coexistence.replicas_disagree, coexistence.describe()
    free_energies = _lj_free_energy_route(
        argon,
        pressure_GPa=_reduced_pressure_GPa(argon, p_star),
        reference_temperature_K=coexistence.melting_temperature_K,
        fcc_lattice_A=fcc_lattice_A,
        liquid_lattice_A=liquid_lattice_A,
        compressibility_per_GPa=compressibility,
    )
    return coexistence, free_energies


@pytest.fixture(scope="module")
def p_star_5(argon):
    """Both routes at P* = 5 (0.209 GPa for argon)."""
    return _both_routes(
        argon,
        p_star=5.0,
        guess_K=120.0,
        fcc_lattice_A=5.25,
        liquid_lattice_A=5.50,
        compressibility=0.2,
    )


@pytest.fixture(scope="module")
def p_star_10(argon):
    """Both routes at P* = 10 (0.419 GPa). The guess, T* ≈ 1.34, is where a run from the
    Clausius–Clapeyron extrapolation of P* = 5 (153 K) re-centred; the liquid starts from an
    expanded lattice (5.5 Å), which the melt stage melts (from 5.26 Å it did not always)."""
    return _both_routes(
        argon,
        p_star=10.0,
        guess_K=161.0,
        fcc_lattice_A=5.15,
        liquid_lattice_A=5.50,
        compressibility=0.1,
    )


def _routes_agree(argon, p_star, routes):
    coexistence, result = routes
    t0 = coexistence.melting_temperature_K
    combined = math.hypot(result.total_error_K, coexistence.error_K)
    print(f"P* = {p_star:g}: {coexistence.describe()}; {result.describe()}")
    assert combined < 0.05 * t0, (result.describe(), coexistence.describe())
    assert abs(result.transition_temperature_K - t0) < 2 * combined, (
        result.describe(),
        coexistence.describe(),
    )


@pytest.mark.slow(seconds=5, shared={"p_star_5": 1250})
def test_lj_coexistence_and_free_energies_agree_at_p_star_5(argon, p_star_5):
    """The two routes at P* = 5, far from every tuned point (bench/RESULTS.md, LJ at P* = 5)."""
    _routes_agree(argon, 5.0, p_star_5)
    # the melting line rises with pressure: T* above Pedersen's 0.800 at P* = 2.185
    assert p_star_5[0].melting_temperature_K / argon["epsilon_K"] > PEDERSEN_T_STAR + 0.1


#: measured (bench/RESULTS.md, "P* = 5 and P* = 10"): at P* = 10, (1) the sampler's melt stage
#: (300 steps at 2 T) did not always melt the liquid's dense fcc start (5.26 Å; seeds 0 and 2
#: stayed fcc), hence the 5.5 Å start above; (2) with it, coexistence (1000-atom boxes) gave
#: 160.1 ± 4.9 K with replicas disagreeing at 3 of 5 temperatures. Both are open in issue 20
#: (a melt stage that checks and retries; larger or longer coexistence boxes at high density).
#: Skipped, not xfailed: the fixture costs 4–11 min of CI before it fails.
P_STAR_10_OPEN = pytest.mark.skip(
    reason="P* = 10: coexistence replicas disagree at 1000 atoms/box (issue 20, open)"
)


@P_STAR_10_OPEN
@pytest.mark.slow(seconds=5, shared={"p_star_10": 900})
def test_lj_coexistence_and_free_energies_agree_at_p_star_10(argon, p_star_10):
    _routes_agree(argon, 10.0, p_star_10)


#: relative difference between a secant and the mean of its end tangents for a Simon-like
#: melting line T ∝ (P + b)^k, k ≈ ½, b ≈ 1: f‴h²/12f′ ≈ 2.4 % over P* = 2.2–5, 2.2 % over 5–10
SECANT_CURVATURE = 0.03


def _follows_clausius_clapeyron(argon, low, high):
    """Coexistence T_m at two pressures against dT/dP = T Δv/Δh from the enthalpy runs.

    ``low`` and ``high`` are (P*, coexistence result, free-energy result). The secant of the
    two coexistence points equals the mean of the Clausius–Clapeyron slopes at its ends
    (trapezoid rule) up to the line's curvature, SECANT_CURVATURE. The slopes come from the
    free-energy route's NPT runs of both phases (Δh, Δv read at T*), the melting points from
    the interface velocities: two measurements that share no data.
    """
    (p_low, coex_low, fe_low), (p_high, coex_high, fe_high) = low, high
    dp = _reduced_pressure_GPa(argon, p_high) - _reduced_pressure_GPa(argon, p_low)
    secant = (coex_high.melting_temperature_K - coex_low.melting_temperature_K) / dp
    secant_error = math.hypot(coex_high.error_K, coex_low.error_K) / dp
    ends = [fe_low.latent, fe_high.latent]
    tangent = 0.5 * (ends[0].slope_K_per_GPa + ends[1].slope_K_per_GPa)
    tangent_error = 0.5 * math.hypot(*(e.slope_error_K_per_GPa for e in ends))
    allowed = 2 * math.hypot(secant_error, tangent_error) + SECANT_CURVATURE * abs(tangent)
    print(
        f"melting line P* {p_low:g} → {p_high:g}: secant {secant:.1f} ± {secant_error:.1f} "
        f"K/GPa; Clausius–Clapeyron {ends[0].slope_K_per_GPa:.1f} ± "
        f"{ends[0].slope_error_K_per_GPa:.1f} and {ends[1].slope_K_per_GPa:.1f} ± "
        f"{ends[1].slope_error_K_per_GPa:.1f} K/GPa"
    )
    assert abs(secant - tangent) < allowed, (secant, secant_error, tangent, tangent_error)
    # the line flattens with pressure (Δv shrinks faster than Δh/T): LJ's known curvature;
    # a slope that rises by more than 2σ with pressure is wrong
    rise = ends[1].slope_K_per_GPa - ends[0].slope_K_per_GPa
    assert rise < 2 * math.hypot(*(e.slope_error_K_per_GPa for e in ends)), ends


@pytest.mark.slow(
    seconds=5,
    shared={"pedersen_coexistence": 410, "pedersen_free_energies": 650, "p_star_5": 1250},
)
def test_lj_melting_line_follows_clausius_clapeyron_from_p_star_2_to_5(
    argon, pedersen_coexistence, pedersen_free_energies, p_star_5
):
    _follows_clausius_clapeyron(
        argon, (PEDERSEN_P_STAR, pedersen_coexistence, pedersen_free_energies), (5.0, *p_star_5)
    )


@P_STAR_10_OPEN
@pytest.mark.slow(seconds=5, shared={"p_star_5": 1250, "p_star_10": 900})
def test_lj_melting_line_follows_clausius_clapeyron_from_p_star_5_to_10(argon, p_star_5, p_star_10):
    _follows_clausius_clapeyron(argon, (5.0, *p_star_5), (10.0, *p_star_10))
