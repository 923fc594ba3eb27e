"""The halves rule for runs that still relax: errors that cover independent runs' scatter."""

from __future__ import annotations

import math

import pytest
import torch

from phasetune.thermo import (
    drift_inflated_error,
    mean_and_drift_aware_error,
    standard_error_of_mean,
)


def _ar1(n_runs: int, n_frames: int, phi: float, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(n_runs, n_frames, generator=generator, dtype=torch.float64)
    series = torch.empty_like(noise)
    series[:, 0] = noise[:, 0]
    for i in range(1, n_frames):
        series[:, i] = phi * series[:, i - 1] + math.sqrt(1 - phi**2) * noise[:, i]
    return series


def test_the_halves_rule_by_hand():
    # |d| = 0.5 > 2 · 2 · 0.1: drifting, √(0.1² + 0.4²) = 0.4123
    assert drift_inflated_error(0.05, 0.1, 0.5) == pytest.approx(math.hypot(0.1, 0.4))
    # |d| = 0.3 < 0.4: stationary, the stationary error unchanged
    assert drift_inflated_error(0.05, 0.1, -0.3) == 0.05
    # a stationary error already larger than the drift's is kept
    assert drift_inflated_error(1.0, 0.1, 0.5) == 1.0
    # too short to split: σ/√n of the whole series
    x = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert mean_and_drift_aware_error(x) == pytest.approx((3.0, float(x.std() / math.sqrt(5))))
    assert math.isnan(mean_and_drift_aware_error(torch.tensor([1.0]))[1])


@pytest.mark.parametrize(("phi", "method"), [(0.0, "blocking"), (0.6, "autocorrelation")])
def test_a_stationary_run_keeps_its_error(phi, method):
    """Stationary AR(1) runs (200 frames, 400 runs): the rule never lowers an error, leaves
    at least 90 % of the runs at their stationary error (the 2σ_d threshold: ≈ 5 % by
    chance), and the errors cover the true mean 0 at 2σ as often as a normal error should."""
    series = _ar1(400, 200, phi, seed=11)
    stated = torch.tensor(
        [mean_and_drift_aware_error(s, method=method)[1] for s in series], dtype=torch.float64
    )
    plain = standard_error_of_mean(series, method=method)
    assert bool((stated >= plain * (1 - 1e-9)).all())
    inflated = float((stated > plain * (1 + 1e-9)).double().mean())
    assert inflated < 0.1, inflated
    covered = float((series.mean(dim=1).abs() < 2 * stated).double().mean())
    assert 0.92 < covered < 0.995, covered


@pytest.mark.parametrize("n_frames", [20, 200])
def test_runs_that_still_relax_get_errors_that_cover_their_scatter(n_frames):
    """Each run relaxes from its own start (offset a·e^{−t/τ}, a random per run, τ a third
    of the run) on top of fast noise, as a cell still settling after a short equilibration:
    the means scatter by the offsets, which blocking cannot see (20 frames: the smoke test's
    enthalpy runs); the halves' difference does."""
    generator = torch.Generator().manual_seed(5)
    t = torch.arange(n_frames, dtype=torch.float64)
    amplitude = 0.02 * torch.randn(400, 1, generator=generator, dtype=torch.float64)
    noise = 0.004 * torch.randn(400, n_frames, generator=generator, dtype=torch.float64)
    series = amplitude * torch.exp(-t / (n_frames / 3)) + noise
    spread = float(series.mean(dim=1).std())
    stated = torch.tensor([mean_and_drift_aware_error(s)[1] for s in series])
    plain = torch.tensor([float(standard_error_of_mean(s)) for s in series])
    assert float(plain.pow(2).mean().sqrt()) < 0.5 * spread  # what blocking misses
    assert 0.7 * spread < float(stated.pow(2).mean().sqrt()) < 2.0 * spread, spread
