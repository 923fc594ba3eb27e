"""Error analysis of correlated time series (MD / MC observables).

Conventions: for a stationary series x_t, t = 0..N−1, with normalised autocorrelation
function ρ(t) = C(t)/C(0),

* integrated autocorrelation time  τ_int = 1/2 + Σ_{t≥1} ρ(t)   (white noise: τ_int = 1/2);
* statistical inefficiency          g = 1 + 2 Σ_{t≥1} ρ(t) = 2 τ_int   (white noise: g = 1);
* effective number of samples       N_eff = N / g;
* standard error of the mean        σ_x̄ = sqrt(Var(x) · g / N).

All functions take a tensor of shape ``[..., N]`` (time on the last dimension, leading
dimensions are independent series) and return a tensor of shape ``[...]``. They are
statistics of the data, not differentiable (inputs are detached).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "DRIFT_BIAS_PER_HALVES_DIFFERENCE",
    "DRIFT_SIGNIFICANCE",
    "autocorrelation_function",
    "blocking_standard_error",
    "drift_inflated_error",
    "effective_number_of_samples",
    "integrated_autocorrelation_time",
    "mean_and_drift_aware_error",
    "series_inefficiency",
    "standard_error_of_mean",
    "statistical_inefficiency",
]

#: bias of a whole run's mean per unit of its halves' difference, for an exponential
#: relaxation with τ a third of the run (mean off by 0.32 a, halves differ by 0.40 a)
DRIFT_BIAS_PER_HALVES_DIFFERENCE = 0.8
#: halves that differ by more than this many σ of their difference count as drifting
DRIFT_SIGNIFICANCE = 2.0


def _check_series(x: Tensor, min_len: int = 2) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension (time on the last one)")
    if x.shape[-1] < min_len:
        raise ValueError(f"time series needs at least {min_len} samples, got {x.shape[-1]}")
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    return x.detach()


def _per_series(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """Apply a 1-D → scalar function to every series along the last dimension."""
    if x.ndim == 1:
        return fn(x)
    flat = x.reshape(-1, x.shape[-1])
    return torch.stack([fn(row) for row in flat]).reshape(x.shape[:-1])


def autocorrelation_function(x: Tensor) -> Tensor:
    """Normalised autocorrelation ρ(t) = C(t)/C(0) along the last dimension, via FFT.

    Uses the (positive-definite) estimator C(t) = (1/N) Σ_{s=0}^{N−1−t} δx_s δx_{s+t},
    δx = x − x̄, computed with a zero-padded FFT in O(N log N). A constant series gives
    ρ(0) = 1 and ρ(t>0) = 0. Shape ``[..., N]``.
    """
    x = _check_series(x, min_len=1)
    n = x.shape[-1]
    dx = x - x.mean(dim=-1, keepdim=True)
    n_fft = 1 << (2 * n - 1).bit_length()
    spec = torch.fft.rfft(dx, n=n_fft, dim=-1)
    acov = torch.fft.irfft(spec * spec.conj(), n=n_fft, dim=-1)[..., :n] / n
    c0 = acov[..., :1]
    rho = torch.where(c0 > 0, acov / torch.where(c0 > 0, c0, 1.0), torch.zeros_like(acov))
    rho[..., 0] = 1.0
    return rho


def integrated_autocorrelation_time(x: Tensor, *, window_factor: float = 5.0) -> Tensor:
    """Integrated autocorrelation time τ_int = 1/2 + Σ_{t=1}^{W} ρ(t) (in frames).

    Note the convention: τ_int = 1/2 for white noise; the statistical inefficiency is
    g = 2 τ_int (:func:`statistical_inefficiency`).

    The window W is chosen automatically as in Sokal (1997): the smallest W with
    W ≥ c · τ_int(W), c = ``window_factor`` (default 5). ρ(t) is from
    :func:`autocorrelation_function` (FFT). If no such W < N exists (series too short for
    its correlation time) the full sum up to N−1 is used, which underestimates τ_int.

    Args:
        x: time series, shape ``[..., N]`` with N ≥ 2.
        window_factor: Sokal's c.

    Returns:
        τ_int in units of the sampling interval, shape ``[...]``.
    """
    x = _check_series(x)
    rho = autocorrelation_function(x)

    def one(r: Tensor) -> Tensor:
        tau = 0.5 + torch.cumsum(r[1:], dim=0)  # tau[W-1] = τ_int(W), W = 1..N-1
        windows = torch.arange(1, r.numel(), dtype=r.dtype, device=r.device)
        ok = torch.nonzero(windows >= window_factor * tau)
        idx = int(ok[0, 0]) if ok.numel() > 0 else r.numel() - 2
        return tau[idx]

    return _per_series(one, rho)


def statistical_inefficiency(x: Tensor, *, window_factor: float = 5.0) -> Tensor:
    """Statistical inefficiency g = 2 τ_int = 1 + 2 Σ_{t=1}^{W} ρ(t), clamped to g ≥ 1.

    g is the factor by which correlation inflates the variance of the mean,
    Var(x̄) = Var(x) · g / N. The clamp (anticorrelated or noisy estimates can give g < 1)
    keeps error bars conservative. See :func:`integrated_autocorrelation_time`.
    """
    return (2.0 * integrated_autocorrelation_time(x, window_factor=window_factor)).clamp_min(1.0)


def series_inefficiency(series: Tensor) -> float:
    """g ≥ 1 of one time-ordered series as a float; 1 when it is too short (< 4 samples) or
    not finite, where no correlation can be estimated."""
    if series.numel() < 4 or not bool(torch.isfinite(series).all()):
        return 1.0
    return float(statistical_inefficiency(series.detach().double().cpu()))


def effective_number_of_samples(x: Tensor, *, window_factor: float = 5.0) -> Tensor:
    """Effective number of independent samples N_eff = N / g, g from statistical_inefficiency."""
    x = _check_series(x)
    return x.shape[-1] / statistical_inefficiency(x, window_factor=window_factor)


def _chi2_quantile_99(dof: int) -> float:
    """0.99 quantile of χ²(dof) (scipy)."""
    from scipy.stats import chi2

    return float(chi2.ppf(0.99, dof))


def _blocking_one(x: Tensor, min_blocks: int) -> Tensor:
    """Blocking standard error of one 1-D series (see blocking_standard_error)."""
    levels_se: list[Tensor] = []
    levels_m: list[float] = []  # n_k · ρ_k(1)² per level (lag-1 test statistic)
    y = x
    while y.numel() >= min_blocks:
        n = y.numel()
        dy = y - y.mean()
        var = (dy * dy).sum() / n
        if var > 0:
            rho1 = float((dy[:-1] * dy[1:]).sum() / n / var)
            levels_m.append(n * rho1 * rho1)
            levels_se.append(torch.sqrt(var / (n - 1)))
        else:
            levels_m.append(0.0)
            levels_se.append(torch.zeros((), dtype=y.dtype, device=y.device))
        if n % 2 == 1:
            y = y[1:]  # drop the oldest sample so that blocks pair up
        y = 0.5 * (y[0::2] + y[1::2])
    if not levels_se:
        raise ValueError(f"blocking needs at least min_blocks={min_blocks} samples")
    # M_j = Σ_{k≥j} n_k ρ_k(1)² is ~χ²(#levels ≥ j) once blocks are uncorrelated.
    n_levels = len(levels_m)
    tail = 0.0
    tails = [0.0] * n_levels
    for k in range(n_levels - 1, -1, -1):
        tail += levels_m[k]
        tails[k] = tail
    for j in range(n_levels):
        if tails[j] < _chi2_quantile_99(n_levels - j):
            return levels_se[j]
    return levels_se[-1]


def blocking_standard_error(x: Tensor, *, min_blocks: int = 16) -> Tensor:
    """Standard error of the mean by Flyvbjerg–Petersen blocking with automatic plateau.

    Blocking (Flyvbjerg & Petersen, J. Chem. Phys. 91, 461 (1989)): repeatedly replace the
    series by the means of consecutive pairs (an odd sample out is dropped from the start).
    At level k, with n_k blocks of variance s_k² (1/n_k normalisation), the estimate

        σ_k = sqrt(s_k² / (n_k − 1))

    grows with k and plateaus at the true σ_x̄ once blocks are longer than the correlation
    time. Plateau criterion (Jonsson, Phys. Rev. E 98, 043304 (2018)): the blocks at level
    k are uncorrelated when their lag-1 autocorrelation ρ_k(1) is consistent with zero; we
    take the first level j at which M_j = Σ_{k≥j} n_k ρ_k(1)² is below the 0.99 quantile
    of χ² with (number of levels ≥ j) degrees of freedom (Wilson–Hilferty approximation).
    Only levels with at least ``min_blocks`` blocks are used; if none passes, the last one
    is returned (the series is then too short for a reliable error). Because the first
    acceptable level is taken, the estimate can sit a few percent below the asymptotic
    plateau for strongly correlated data (≈ 5% for an AR(1) series with g = 19, N = 2¹⁶).

    Args:
        x: time series, shape ``[..., N]`` with N ≥ ``min_blocks``.
        min_blocks: smallest number of blocks a level may have.

    Returns:
        σ_x̄, shape ``[...]``, in the units of x.
    """
    if min_blocks < 2:
        raise ValueError("min_blocks must be at least 2")
    x = _check_series(x, min_len=min_blocks)
    return _per_series(lambda row: _blocking_one(row, min_blocks), x)


def standard_error_of_mean(
    x: Tensor, method: Literal["blocking", "autocorrelation"] = "blocking"
) -> Tensor:
    """Standard error of the time average of a correlated series.

    * ``"blocking"``: :func:`blocking_standard_error`;
    * ``"autocorrelation"``: σ_x̄ = sqrt(Var(x) · g / N) with g from
      :func:`statistical_inefficiency` and Var with Bessel's correction.

    Shape ``[..., N]`` → ``[...]``.
    """
    if method == "blocking":
        return blocking_standard_error(x)
    if method == "autocorrelation":
        x = _check_series(x)
        g = statistical_inefficiency(x)
        return torch.sqrt(x.var(dim=-1, correction=1) * g / x.shape[-1])
    raise ValueError(f"unknown method {method!r}; use 'blocking' or 'autocorrelation'")


def drift_inflated_error(
    stationary_error: float, noise_error: float, halves_difference: float
) -> float:
    """A run's standard error with the halves rule for drift.

    A run that still relaxes (a cell that settles after equilibration, a liquid whose density
    drifts after its melt stage) drifts more slowly than its own length can resolve as a
    correlation; independent runs then scatter by the drift, which no within-run error sees.
    With d = x̄₂ − x̄₁ the difference of the estimates from the run's two halves and σ_noise
    the whole run's error with each half's own mean removed (so that the drift does not pass
    for correlation), the halves' difference has σ_d = 2 σ_noise (each half's estimate has
    √2 σ_noise). A run with |d| > 2 σ_d drifts, and its error is

        max(σ_stationary, √(σ_noise² + (0.8 d)²))

    (0.8: the whole run's bias per unit of d for an exponential relaxation with τ a third of
    the run). A stationary run keeps σ_stationary 95 % of the time. Fluctuations slower than
    the within-run error resolves, but no drift, also trip the rule, and 0.8 |d| then
    overshoots (|d|/2 would match independent halves): the error errs on the safe side
    (measured on ti_small's enthalpies and volumes, bench/RESULTS.md).
    """
    if not abs(halves_difference) > DRIFT_SIGNIFICANCE * 2 * noise_error:
        return stationary_error
    return max(
        stationary_error,
        math.hypot(noise_error, DRIFT_BIAS_PER_HALVES_DIFFERENCE * halves_difference),
    )


def mean_and_drift_aware_error(
    x: Tensor, method: Literal["blocking", "autocorrelation"] = "blocking"
) -> tuple[float, float]:
    """Mean of one time-ordered series and its standard error, inflated for drift.

    σ_stationary is :func:`standard_error_of_mean` (``method``) where the series allows it
    (blocking needs 16 frames), else σ/√n (a lower bound); σ_noise the same of the series
    with each half's mean removed; then :func:`drift_inflated_error`. Fewer than 8 frames
    have no halves to compare: σ_stationary. One frame: (x, nan).
    """
    x = x.detach().double().flatten()
    n = x.numel()
    if n < 2:
        return (float(x[0]) if n else math.nan), math.nan

    def error(series: Tensor) -> float:
        if method == "blocking" and series.numel() < 16:
            return float(series.std(correction=1) / series.numel() ** 0.5)
        return float(standard_error_of_mean(series, method=method))

    stationary = error(x)
    if n < 8:
        return float(x.mean()), stationary
    half = n // 2
    first, second = x[:half], x[n - half :]
    centred = torch.cat([first - first.mean(), second - second.mean()])
    difference = float(second.mean() - first.mean())
    return float(x.mean()), drift_inflated_error(stationary, error(centred), difference)
