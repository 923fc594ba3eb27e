"""Physics tests of phasetune.thermo: FEP/BAR on exactly sampled harmonic systems, DiffTRe
reweighting gradients, time-series error analysis on AR(1) processes, and phase-transition
thermodynamics against closed-form results."""

from __future__ import annotations

import math

import pytest
import torch

from phasetune.thermo import (
    BARResult,
    bennett_acceptance_ratio,
    blocking_standard_error,
    clausius_clapeyron_slope_K_per_GPa,
    correlated_bennett_acceptance_ratio,
    effective_number_of_samples,
    effective_sample_size,
    free_energy_perturbation,
    free_energy_perturbation_error,
    gibbs_helmholtz_delta_g,
    integrated_autocorrelation_time,
    relative_effective_sample_size,
    reweighted_average,
    reweighting_weights,
    series_inefficiency,
    standard_error_of_mean,
    statistical_inefficiency,
    transition_temperature,
)
from phasetune.units import KB_EV_PER_K

F64 = torch.float64
KT = KB_EV_PER_K * 300.0  # eV
K_A, K_B = 1.0, 1.5  # spring constants of states A and B, eV/Å²
DOF = 3
N_FRAMES = 2000
EXACT_DF = 0.5 * DOF * KT * math.log(K_B / K_A)  # F_B − F_A for U = k|x|²/2


def _harmonic_works(gen: torch.Generator, n: int = N_FRAMES) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact Boltzmann samples of A and B; forward work U_B − U_A on A, reverse U_A − U_B on B."""
    x_a = torch.randn(n, DOF, generator=gen, dtype=F64) * math.sqrt(KT / K_A)
    x_b = torch.randn(n, DOF, generator=gen, dtype=F64) * math.sqrt(KT / K_B)
    r2_a = (x_a**2).sum(-1)
    r2_b = (x_b**2).sum(-1)
    return 0.5 * (K_B - K_A) * r2_a, 0.5 * (K_A - K_B) * r2_b


def _ar1(phi: float, n: int, seed: int) -> torch.Tensor:
    """Stationary AR(1) series x_t = φ x_{t−1} + ε_t with unit-variance Gaussian noise."""
    eps = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64).tolist()
    out = [0.0] * n
    out[0] = eps[0] / math.sqrt(1.0 - phi * phi)  # start in the stationary distribution
    for t in range(1, n):
        out[t] = phi * out[t - 1] + eps[t]
    return torch.tensor(out, dtype=F64)


# --------------------------------------------------------------------------- FEP and BAR


def test_fep_both_directions_match_exact_harmonic_free_energy() -> None:
    w_f, w_r = _harmonic_works(torch.Generator().manual_seed(1))
    df_fwd = free_energy_perturbation(w_f, KT)
    err_fwd = free_energy_perturbation_error(w_f, KT)
    df_rev = -free_energy_perturbation(w_r, KT)  # FEP of B → A estimates F_A − F_B
    err_rev = free_energy_perturbation_error(w_r, KT)
    assert abs(float(df_fwd) - EXACT_DF) < 3.0 * float(err_fwd)
    assert abs(float(df_rev) - EXACT_DF) < 3.0 * float(err_rev)
    # Errors are meaningful (not huge compared with the effect we resolve).
    assert float(err_fwd) < 0.05 * EXACT_DF and float(err_rev) < 0.05 * EXACT_DF
    # Per-atom form divides by n_atoms.
    torch.testing.assert_close(free_energy_perturbation(w_f, KT, n_atoms=4), df_fwd / 4)


def test_bar_matches_exact_and_beats_one_sided_fep() -> None:
    w_f, w_r = _harmonic_works(torch.Generator().manual_seed(2))
    res = bennett_acceptance_ratio(w_f, w_r, KT)
    assert isinstance(res, BARResult)
    assert abs(float(res.delta_f) - EXACT_DF) < 3.0 * float(res.std_error)
    assert float(res.std_error) < float(free_energy_perturbation_error(w_f, KT))
    assert float(res.std_error) < float(free_energy_perturbation_error(w_r, KT))
    # Swapping the roles of A and B flips the sign exactly (to solver tolerance).
    swapped = bennett_acceptance_ratio(w_r, w_f, KT)
    assert float(swapped.delta_f) == pytest.approx(-float(res.delta_f), abs=1e-12)
    torch.testing.assert_close(swapped.std_error, res.std_error)
    # Unequal sample sizes (the ln(n_F/n_R) term) still give the right answer.
    uneq = bennett_acceptance_ratio(w_f, w_r[:400], KT)
    assert abs(float(uneq.delta_f) - EXACT_DF) < 3.0 * float(uneq.std_error)
    # ... and solve exactly Bennett's optimal equation with M = ln(n_F/n_R), written plainly:
    # Σ_F 1/(1 + (n_F/n_R) e^{β(W_F − ΔF)}) = Σ_R 1/(1 + (n_R/n_F) e^{β(W_R + ΔF)}).
    n_f, n_r = len(w_f), 400

    def residual(df: float) -> float:
        lhs = (1.0 / (1.0 + (n_f / n_r) * torch.exp((w_f - df) / KT))).sum()
        rhs = (1.0 / (1.0 + (n_r / n_f) * torch.exp((w_r[:400] + df) / KT))).sum()
        return float(lhs - rhs)

    lo, hi = -1.0, 1.0  # plain bisection, independent of the library's solver
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if residual(mid) < 0 else (lo, mid)
    assert float(uneq.delta_f) == pytest.approx(0.5 * (lo + hi), abs=1e-12)


def test_bar_error_bar_is_honest_over_repeats() -> None:
    # 200 independent repeats: the empirical std is then known to ~5%, so a bound of 1.25
    # catches an error bar that is off by √2 (e.g. a variance off by a factor of 2).
    gen = torch.Generator().manual_seed(3)
    estimates, errors = [], []
    for _ in range(200):
        w_f, w_r = _harmonic_works(gen, n=500)
        res = bennett_acceptance_ratio(w_f, w_r, KT)
        estimates.append(float(res.delta_f))
        errors.append(float(res.std_error))
    est = torch.tensor(estimates, dtype=F64)
    empirical_std = float(est.std())
    mean_reported = sum(errors) / len(errors)
    assert 1.0 / 1.25 < empirical_std / mean_reported < 1.25
    # Unbiased: the mean over repeats agrees with the exact value.
    assert abs(float(est.mean()) - EXACT_DF) < 3.0 * empirical_std / math.sqrt(len(estimates))


def test_correlated_bar_error_matches_the_spread_over_correlated_repeats() -> None:
    """Gaussian works (Crooks-consistent: means ±ΔF + βσ²/2) made AR(1)-correlated in frame
    order, φ = 0.8 (statistical inefficiency ≈ 9): over 200 repeats the √g-scaled error
    matches the spread of the estimates, and the independent-frames error is ≈ 3× too small."""
    kT, delta_f, sd, phi, n_frames, n_runs = 0.1, 0.3, 0.05, 0.8, 300, 200
    gen = torch.Generator().manual_seed(5)

    def ar1() -> torch.Tensor:
        noise = torch.randn(n_frames, generator=gen, dtype=F64)
        x = torch.empty_like(noise)
        x[0] = noise[0]
        for i in range(1, n_frames):
            x[i] = phi * x[i - 1] + math.sqrt(1 - phi**2) * noise[i]
        return x

    shift = sd**2 / (2 * kT)
    estimates, scaled, plain, gs = [], [], [], []
    for _ in range(n_runs):
        w_f, w_r = delta_f + shift + sd * ar1(), -delta_f + shift + sd * ar1()
        result, g = correlated_bennett_acceptance_ratio(w_f, w_r, kT)
        estimates.append(float(result.delta_f))
        scaled.append(float(result.std_error))
        plain.append(float(bennett_acceptance_ratio(w_f, w_r, kT).std_error))
        gs.append(g)
    spread = float(torch.tensor(estimates, dtype=F64).std())
    assert sum(scaled) / n_runs == pytest.approx(spread, rel=0.25), (sum(scaled) / n_runs, spread)
    assert sum(plain) / n_runs < 0.5 * spread
    assert 5.0 < sum(gs) / n_runs < 13.0
    assert abs(sum(estimates) / n_runs - delta_f) < 3 * spread / math.sqrt(n_runs)
    # too short or non-finite series: no correlation estimate, g = 1
    assert series_inefficiency(torch.ones(3, dtype=F64)) == 1.0
    assert series_inefficiency(torch.tensor([0.0, 1.0, float("inf"), 2.0, 3.0])) == 1.0


def test_bar_survives_huge_works_and_rejects_bad_input() -> None:
    # Nearly non-overlapping states with works of ~1e5 kT: finite answer, no overflow.
    w_f, w_r = _harmonic_works(torch.Generator().manual_seed(4), n=200)
    res = bennett_acceptance_ratio(w_f * 1e4 + 1e3, w_r * 1e4 - 1e3, KT)
    assert math.isfinite(float(res.delta_f)) and math.isfinite(float(res.std_error))
    assert float(res.delta_f) > 1e3 - 1.0
    with pytest.raises(ValueError, match="1-D"):
        bennett_acceptance_ratio(w_f.reshape(20, 10), w_r, KT)
    with pytest.raises(ValueError, match="positive"):
        bennett_acceptance_ratio(w_f, w_r, -KT)


# --------------------------------------------------------------------------- reweighting


def _reference_frames(theta_ref: float, n: int = N_FRAMES) -> torch.Tensor:
    """Exact samples of U_θ = θ x²/2 (1-D) at θ_ref."""
    gen = torch.Generator().manual_seed(5)
    return torch.randn(n, generator=gen, dtype=F64) * math.sqrt(KT / theta_ref)


def test_fep_gradient_is_reweighted_mean_of_dU_dtheta_and_matches_finite_difference() -> None:
    theta_ref = 2.0
    x = _reference_frames(theta_ref)

    def delta_f(theta: torch.Tensor) -> torch.Tensor:
        return free_energy_perturbation(0.5 * (theta - theta_ref) * x**2, KT)

    theta = torch.tensor(2.3, dtype=F64, requires_grad=True)
    (grad,) = torch.autograd.grad(delta_f(theta), theta)
    # dF/dθ = ⟨∂U/∂θ⟩_θ, estimated by reweighting the θ_ref frames.
    weights = reweighting_weights(0.5 * (theta.detach() - theta_ref) * x**2, KT)
    expected = reweighted_average(0.5 * x**2, weights)
    assert float(grad) == pytest.approx(float(expected), rel=1e-12)
    h = 1e-5
    with torch.no_grad():
        fd = (delta_f(theta + h) - delta_f(theta - h)) / (2 * h)
    assert float(grad) == pytest.approx(float(fd), rel=1e-6)
    # And physics: exact ⟨x²/2⟩_θ = kT/(2θ), within a few percent for 2000 frames.
    assert float(grad) == pytest.approx(KT / (2 * 2.3), rel=0.08)
    # The gradient of ΔF w.r.t. ΔU is the weight vector itself.
    du = (0.5 * (2.3 - theta_ref) * x**2).requires_grad_(True)
    (g_du,) = torch.autograd.grad(free_energy_perturbation(du, KT), du)
    torch.testing.assert_close(g_du, weights)


def test_effective_sample_size_full_for_identical_potentials_and_monotone_in_theta() -> None:
    theta_ref = 2.0
    x = _reference_frames(theta_ref)
    for form in ("kish", "entropy"):
        w = reweighting_weights(torch.zeros_like(x), KT)
        assert float(effective_sample_size(w, form=form)) == pytest.approx(N_FRAMES, rel=1e-12)
        assert float(relative_effective_sample_size(w, form=form)) == pytest.approx(1.0)
    for form in ("kish", "entropy"):
        for direction in (+1.0, -1.0):
            offsets = [direction * d for d in (0.0, 0.05, 0.1, 0.2, 0.4, 0.8)]
            ess = [
                float(effective_sample_size(reweighting_weights(0.5 * d * x**2, KT), form=form))
                for d in offsets
            ]
            assert all(a > b for a, b in zip(ess[:-1], ess[1:], strict=True)), (form, ess)
            assert 1.0 <= ess[-1] < N_FRAMES
    # Kish ≤ entropy form; a single dominant frame gives N_eff = 1.
    w = reweighting_weights(0.5 * 0.4 * x**2, KT)
    assert float(effective_sample_size(w)) <= float(effective_sample_size(w, form="entropy"))
    one_hot = torch.zeros(10, dtype=F64)
    one_hot[3] = 1.0
    assert float(effective_sample_size(one_hot, form="entropy")) == pytest.approx(1.0)
    assert float(effective_sample_size(one_hot)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="form"):
        effective_sample_size(w, form="bogus")  # type: ignore[arg-type]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fep_is_stable_for_huge_energy_differences_and_exact_for_constant_shift(
    dtype: torch.dtype,
) -> None:
    gen = torch.Generator().manual_seed(6)
    noise = torch.randn(500, generator=gen, dtype=F64).to(dtype)
    for sign in (+1.0, -1.0):
        du = KT * (sign * 1e4 + noise)
        df = free_energy_perturbation(du, KT)
        err = free_energy_perturbation_error(du, KT)
        w = reweighting_weights(du, KT)
        assert torch.isfinite(df) and torch.isfinite(err) and torch.isfinite(w).all()
        # −kT ln⟨e^{−ΔU/kT}⟩ lies between min ΔU and the mean ΔU (Jensen).
        assert float(du.min()) - 1e-3 <= float(df) <= float(du.mean()) + 1e-3
    c = torch.full((100,), 0.37, dtype=dtype)
    tol = 1e-14 if dtype == torch.float64 else 1e-6
    assert float(free_energy_perturbation(c, KT)) == pytest.approx(0.37, rel=tol)
    assert float(free_energy_perturbation_error(c, KT)) == pytest.approx(0.0, abs=tol)


def test_fep_batches_over_state_points_with_per_state_kT() -> None:
    gen = torch.Generator().manual_seed(7)
    du = torch.randn(3, 400, generator=gen, dtype=F64) * 0.02
    kts = torch.tensor([0.02, 0.05, 0.1], dtype=F64)
    batched = free_energy_perturbation(du, kts, frames_dim=-1)
    rows = torch.stack([free_energy_perturbation(du[i], float(kts[i])) for i in range(3)])
    torch.testing.assert_close(batched, rows)
    w = reweighting_weights(du, kts, frames_dim=-1)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, dtype=F64))
    obs = torch.randn(3, 400, 2, generator=gen, dtype=F64)
    avg = reweighted_average(obs, w)
    assert avg.shape == (3, 2)
    torch.testing.assert_close(avg[1], (w[1, :, None] * obs[1]).sum(0))
    with pytest.raises(ValueError, match="broadcast"):
        free_energy_perturbation(du, torch.tensor([0.02, 0.05], dtype=F64), frames_dim=-1)
    with pytest.raises(ValueError, match="frames"):
        reweighted_average(obs[:, :300], w)


def test_a_frames_shaped_batch_needs_its_frame_dimension_named() -> None:
    """A Frames stores energies as [frames, systems]. Reduced over the last dimension by
    default, that would give per-frame values over systems with no error: refused unless
    frames_dim is named, and with frames_dim=0 each system equals its own 1-D series."""
    gen = torch.Generator().manual_seed(11)
    du = torch.randn(500, 3, generator=gen, dtype=F64) * torch.tensor([0.005, 0.03, 0.1], dtype=F64)
    kts = torch.tensor([0.02, 0.05, 0.1], dtype=F64)
    for fn in (free_energy_perturbation, free_energy_perturbation_error, reweighting_weights):
        with pytest.raises(ValueError, match="frames_dim"):
            fn(du, kts)
    for fn in (effective_sample_size, relative_effective_sample_size):
        with pytest.raises(ValueError, match="frames_dim"):
            fn(du.abs())
    per_system = [(du[:, i], float(kts[i])) for i in range(3)]
    torch.testing.assert_close(
        free_energy_perturbation(du, kts, frames_dim=0),
        torch.stack([free_energy_perturbation(d, kt) for d, kt in per_system]),
    )
    torch.testing.assert_close(
        free_energy_perturbation_error(du, kts, frames_dim=0),
        torch.stack([free_energy_perturbation_error(d, kt) for d, kt in per_system]),
    )
    w = reweighting_weights(du, kts, frames_dim=0)
    assert w.shape == du.shape
    torch.testing.assert_close(w.sum(0), torch.ones(3, dtype=F64))
    torch.testing.assert_close(
        relative_effective_sample_size(w, frames_dim=0),
        torch.stack(
            [relative_effective_sample_size(reweighting_weights(d, kt)) for d, kt in per_system]
        ),
    )
    # the physics: larger ΔU spread → fewer effective frames, ordered by system
    ess = effective_sample_size(w, frames_dim=0)
    assert bool((ess[0] > ess[1]) & (ess[1] > ess[2]))


# --------------------------------------------------------------------------- statistics


def test_ar1_statistical_inefficiency_and_blocking_error() -> None:
    phi, n = 0.9, 2**16
    x = _ar1(phi, n, seed=8)
    g_exact = (1 + phi) / (1 - phi)  # = 19
    g = float(statistical_inefficiency(x))
    assert g == pytest.approx(g_exact, rel=0.15)
    assert float(integrated_autocorrelation_time(x)) == pytest.approx(g / 2)
    assert float(effective_number_of_samples(x)) == pytest.approx(n / g)
    var_exact = 1.0 / (1 - phi * phi)
    se_exact = math.sqrt(var_exact * g_exact / n)
    assert float(blocking_standard_error(x)) == pytest.approx(se_exact, rel=0.20)
    assert float(standard_error_of_mean(x, method="autocorrelation")) == pytest.approx(
        se_exact, rel=0.20
    )
    # The naive i.i.d. error would be ~sqrt(19) times too small: blocking must not be.
    naive = float(x.std() / math.sqrt(n))
    assert float(standard_error_of_mean(x)) > 3.0 * naive


def test_white_noise_has_unit_inefficiency_and_batched_series() -> None:
    gen = torch.Generator().manual_seed(9)
    w = torch.randn(4, 2**14, generator=gen, dtype=F64)
    g = statistical_inefficiency(w)
    assert g.shape == (4,)
    assert torch.all((g - 1.0).abs() < 0.1)
    se = blocking_standard_error(w)
    naive = w.std(dim=-1) / math.sqrt(w.shape[-1])
    assert torch.all((se / naive - 1.0).abs() < 0.15)
    with pytest.raises(ValueError, match="method"):
        standard_error_of_mean(w, method="bogus")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- phase transitions


T_STAR = 1200.0
DH0 = 0.12  # eV/atom latent heat at T*
DCP = 2.0e-5  # eV/atom/K


def _dg_exact_linear(t: torch.Tensor) -> torch.Tensor:
    return DH0 * (1 - t / T_STAR) + DCP * ((t - T_STAR) - t * torch.log(t / T_STAR))


def test_gibbs_helmholtz_matches_analytic_constant_dcp() -> None:
    temps = torch.tensor([900.0, 1000.0, 1100.0, 1300.0, 1500.0], dtype=F64)
    dh = DH0 + DCP * (temps - T_STAR)
    t_eval = torch.linspace(600.0, 1800.0, 13, dtype=F64)
    dg = gibbs_helmholtz_delta_g(
        t_eval, coexistence_temperature_K=T_STAR, temperatures_K=temps, delta_h_eV=dh, degree=1
    )
    expected = _dg_exact_linear(t_eval)
    nonzero = expected.abs() > 1e-12
    rel = ((dg - expected).abs()[nonzero] / expected.abs()[nonzero]).max()
    assert float(rel) < 1e-10
    # Δg(T*) = 0, and the solid (A) is stable below T* for Δh > 0: Δg > 0 there.
    at_star = gibbs_helmholtz_delta_g(
        T_STAR, coexistence_temperature_K=T_STAR, temperatures_K=temps, delta_h_eV=dh
    )
    assert float(at_star) == 0.0
    assert float(dg[0]) > 0 > float(dg[-1])
    # Gibbs–Helmholtz itself: d(Δg/T)/dT = −Δh/T² (autograd vs the input Δh).
    t = torch.tensor(1000.0, dtype=F64, requires_grad=True)
    dg_t = gibbs_helmholtz_delta_g(
        t, coexistence_temperature_K=T_STAR, temperatures_K=temps, delta_h_eV=dh
    )
    (slope,) = torch.autograd.grad(dg_t / t, t)
    assert float(slope) == pytest.approx(-float(dh[1]) / 1000.0**2, rel=1e-10)


def test_gibbs_helmholtz_quadratic_fit_and_gradient_in_delta_h() -> None:
    # Δh = c0 + c1 T + c2 T² ⇒ Δg/T = −[c0 (1/T* − 1/T) + c1 ln(T/T*) + c2 (T − T*)].
    c0, c1, c2 = 0.05, 1.0e-4, -2.0e-8
    temps = torch.tensor([800.0, 1000.0, 1200.0, 1400.0, 1600.0], dtype=F64)
    dh = c0 + c1 * temps + c2 * temps**2
    t = torch.tensor([700.0, 1000.0, 1500.0], dtype=F64)
    expected = -t * (c0 * (1 / T_STAR - 1 / t) + c1 * torch.log(t / T_STAR) + c2 * (t - T_STAR))
    dg = gibbs_helmholtz_delta_g(
        t, coexistence_temperature_K=T_STAR, temperatures_K=temps, delta_h_eV=dh, degree=2
    )
    torch.testing.assert_close(dg, expected, rtol=1e-10, atol=0.0)
    # Batched Δh rows and differentiability w.r.t. Δh.
    dh_batch = torch.stack([dh, 2 * dh]).requires_grad_(True)
    out = gibbs_helmholtz_delta_g(
        t, coexistence_temperature_K=T_STAR, temperatures_K=temps, delta_h_eV=dh_batch, degree=2
    )
    torch.testing.assert_close(out, torch.stack([expected, 2 * expected]), rtol=1e-10, atol=0.0)
    assert torch.autograd.gradcheck(
        lambda h: gibbs_helmholtz_delta_g(
            t, coexistence_temperature_K=T_STAR, temperatures_K=temps, delta_h_eV=h, degree=1
        ),
        (dh_batch.detach().clone().requires_grad_(True),),
    )
    with pytest.raises(ValueError, match="temperatures_K"):
        gibbs_helmholtz_delta_g(
            t, coexistence_temperature_K=T_STAR, temperatures_K=temps[:4], delta_h_eV=dh
        )
    with pytest.raises(ValueError, match="at least 3"):
        gibbs_helmholtz_delta_g(
            t,
            coexistence_temperature_K=T_STAR,
            temperatures_K=temps[:2],
            delta_h_eV=dh[:2],
            degree=2,
        )


def test_transition_temperature_round_trip_and_error_propagation() -> None:
    temps = torch.tensor([1000.0, 1100.0], dtype=F64)
    dh = torch.full((2,), DH0, dtype=F64)  # constant Δh
    for t_value in (900.0, 1500.0):
        t = torch.tensor(t_value, dtype=F64)
        dg = gibbs_helmholtz_delta_g(
            t, coexistence_temperature_K=T_STAR, temperatures_K=temps, delta_h_eV=dh, degree=0
        )
        t_star, err = transition_temperature(temperature_K=t, delta_g_eV=dg, delta_h_eV=DH0)
        assert err is None
        assert float(t_star) == pytest.approx(T_STAR, rel=1e-12)
    # Error propagation: σ_T* = |dT*/dΔg| σ_Δg, vs a central finite difference.
    t, dg, sigma, h = 1000.0, 0.02, 0.003, 1e-7
    _, err = transition_temperature(
        temperature_K=t, delta_g_eV=dg, delta_h_eV=DH0, delta_g_error_eV=sigma
    )
    plus, _ = transition_temperature(temperature_K=t, delta_g_eV=dg + h, delta_h_eV=DH0)
    minus, _ = transition_temperature(temperature_K=t, delta_g_eV=dg - h, delta_h_eV=DH0)
    fd = abs(float(plus - minus)) / (2 * h) * sigma
    assert err is not None and float(err) == pytest.approx(fd, rel=1e-6)
    # Physics: Δg > 0 with Δh > 0 at T means B is unstable at T, so T* > T.
    t_star, _ = transition_temperature(temperature_K=t, delta_g_eV=dg, delta_h_eV=DH0)
    assert float(t_star) > t


def test_transition_temperature_rejects_bad_input() -> None:
    for bad_t in (0.0, -300.0):
        with pytest.raises(ValueError, match="temperature_K"):
            transition_temperature(temperature_K=bad_t, delta_g_eV=0.01, delta_h_eV=0.1)
    with pytest.raises(ValueError, match="Δh − Δg"):
        transition_temperature(temperature_K=1000.0, delta_g_eV=0.1, delta_h_eV=0.1)
    with pytest.raises(ValueError, match="broadcast"):
        transition_temperature(
            temperature_K=torch.ones(3, dtype=F64) * 1000,
            delta_g_eV=torch.zeros(2, dtype=F64),
            delta_h_eV=0.1,
        )


def test_clausius_clapeyron_hand_checked_value_and_sign() -> None:
    # T Δv/Δh = 1000 K · 0.1 Å³ / 0.1 eV = 1000 K/(eV/Å³); 1 eV/Å³ = 160.2176634 GPa
    # (CODATA 2018: e = 1.602176634e-19 C exactly)
    slope = clausius_clapeyron_slope_K_per_GPa(temperature_K=1000.0, delta_v_A3=0.1, delta_h_eV=0.1)
    assert float(slope) == pytest.approx(1000.0 / 160.2176634, rel=1e-12)
    assert float(slope) == pytest.approx(6.241509, rel=1e-6)
    # Expanding on melting with latent heat ⇒ melting point rises with pressure; water-like
    # contraction (Δv < 0) ⇒ it falls.
    ice_like = clausius_clapeyron_slope_K_per_GPa(
        temperature_K=273.15, delta_v_A3=-1.6, delta_h_eV=0.062
    )
    assert float(slope) > 0 > float(ice_like)
