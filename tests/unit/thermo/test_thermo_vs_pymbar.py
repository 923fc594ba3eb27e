"""phasetune.thermo against pymbar 4 (a dev dependency): BAR's ΔF and its error, and the
statistical inefficiency of correlated series.

pymbar works in units of kT (reduced works βW, Δf = βΔF); phasetune in eV, so works are
passed to it divided by kT and its results compared after multiplying by kT.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pymbar.other_estimators import bar as pymbar_bar
from pymbar.timeseries import statistical_inefficiency as pymbar_statistical_inefficiency

from phasetune.thermo.bar import bennett_acceptance_ratio
from phasetune.thermo.statistics import autocorrelation_function, statistical_inefficiency
from phasetune.units import KB_EV_PER_K

F64 = torch.float64
KT = KB_EV_PER_K * 300.0  # eV


def _gaussian_works(
    delta_f_kT: float, sigma_kT: float, n_forward: int, n_reverse: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Reduced works βW consistent with Crooks' theorem for Gaussian work distributions:
    βW_F ~ N(βΔF + s²/2, s²) and βW_R ~ N(−βΔF + s²/2, s²), s = ``sigma_kT``."""
    rng = np.random.default_rng(seed)
    mean_dissipation = 0.5 * sigma_kT**2
    w_forward = rng.normal(delta_f_kT + mean_dissipation, sigma_kT, n_forward)
    w_reverse = rng.normal(-delta_f_kT + mean_dissipation, sigma_kT, n_reverse)
    return w_forward, w_reverse


@pytest.mark.parametrize("sigma_kT", [0.5, 2.0, 4.0])
@pytest.mark.parametrize(("n_forward", "n_reverse"), [(1000, 1000), (600, 1500)])
def test_bar_matches_pymbar(sigma_kT, n_forward, n_reverse) -> None:
    """Same estimator, same error formula: both solve Bennett's self-consistent equation
    with M = ln(n_F/n_R), and pymbar's default ``uncertainty_method="BAR"`` is the
    asymptotic variance of Shirts et al. (2003) that phasetune uses,
    (⟨f_F²⟩/⟨f_F⟩² − 1)/n_F + (⟨f_R²⟩/⟨f_R⟩² − 1)/n_R. So they agree to the root finders'
    tolerances (relative 1e-12 on βΔF in both), from good overlap (σ_W = 0.5 kT) to poor
    (4 kT), with equal and unequal sample counts."""
    w_forward, w_reverse = _gaussian_works(4.0, sigma_kT, n_forward, n_reverse, seed=1)
    theirs = pymbar_bar(w_forward, w_reverse)
    ours = bennett_acceptance_ratio(
        torch.tensor(w_forward * KT, dtype=F64), torch.tensor(w_reverse * KT, dtype=F64), KT
    )
    assert float(ours.delta_f) == pytest.approx(theirs["Delta_f"] * KT, rel=1e-10, abs=1e-10 * KT)
    assert float(ours.std_error) == pytest.approx(theirs["dDelta_f"] * KT, rel=1e-10)


def _ar1(phi: float, n: int, seed: int) -> np.ndarray:
    """Stationary AR(1) series x_t = φ x_{t−1} + √(1 − φ²) ε_t (unit variance); exact
    statistical inefficiency g = (1 + φ)/(1 − φ)."""
    eps = np.random.default_rng(seed).normal(size=n)
    scale = math.sqrt(1.0 - phi * phi)
    x = np.empty(n)
    x[0] = eps[0]  # from the stationary distribution
    for t in range(1, n):
        x[t] = phi * x[t - 1] + scale * eps[t]
    return x


@pytest.mark.parametrize("phi", [0.0, 0.5, 0.9])
def test_statistical_inefficiency_matches_pymbar(phi) -> None:
    """Same autocorrelation estimator, different truncation window.

    pymbar sums g = 1 + 2 Σ_{t=1}^{T−1} (1 − t/N) C(t) with C(t) the unbiased (1/(N − t))
    autocorrelation normalised by the 1/N variance, stopping at the first t > 3 where
    C(t) ≤ 0; (1 − t/N) C(t) is exactly phasetune's ρ(t) (the 1/N estimator of
    :func:`autocorrelation_function`). So g summed over pymbar's window from phasetune's
    ρ(t) equals pymbar's g to rounding. phasetune's :func:`statistical_inefficiency`
    instead truncates at Sokal's window (the smallest W ≥ 5 τ_int(W)); the two windows
    differ by a stretch of lags where ρ(t) is mostly noise, so the two g differ within the
    estimate's own statistical error, Madras–Sokal σ(g)/g ≈ √(2(2W + 1)/N) for the longer
    window W: three of those are allowed (measured over 20 seeds: at most 2.5 %, 4.8 %,
    11 % for φ = 0, 0.5, 0.9, against allowances of 4–7 %, 7–10 %, 16–26 %). Both are also held to
    the exact g = (1 + φ)/(1 − φ) within that allowance.
    """
    n = 2**16
    x = _ar1(phi, n, seed=3)
    theirs = pymbar_statistical_inefficiency(x)

    rho = autocorrelation_function(torch.tensor(x, dtype=F64)).numpy()
    lags = np.arange(n)
    first_negative = int(np.nonzero((rho <= 0.0) & (lags > 3))[0][0])  # pymbar's stop, T
    same_window = max(1.0, 1.0 + 2.0 * rho[1:first_negative].sum())
    assert same_window == pytest.approx(theirs, rel=1e-12)

    ours = float(statistical_inefficiency(torch.tensor(x, dtype=F64)))
    tau = 0.5 + np.cumsum(rho[1:])  # τ_int(W) for W = 1, 2, …
    sokal_window = int(np.nonzero(np.arange(1, n) >= 5.0 * tau)[0][0]) + 1
    window = max(sokal_window, first_negative - 1)
    allowance = 3.0 * math.sqrt(2.0 * (2 * window + 1) / n)
    assert ours == pytest.approx(theirs, rel=allowance), (ours, theirs, window)
    exact = (1.0 + phi) / (1.0 - phi)
    assert ours == pytest.approx(exact, rel=allowance)
    assert theirs == pytest.approx(exact, rel=allowance)
