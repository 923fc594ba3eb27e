"""Bennett acceptance ratio (BAR) free-energy differences between two states A and B.

ΔF = F_B − F_A (eV). Inputs are the "works" (energy differences) evaluated on samples of
each state:

* ``work_forward``  W_F,i = U_B(x_i) − U_A(x_i), x_i sampled from A (n_F samples);
* ``work_reverse``  W_R,j = U_A(y_j) − U_B(y_j), y_j sampled from B (n_R samples).

With β = 1/kT, M = ln(n_F/n_R) and the Fermi function f(x) = 1/(1 + eˣ), the maximum-
likelihood BAR estimate (Bennett, J. Comput. Phys. 22, 245 (1976); Shirts, Bair, Hooker &
Pande, Phys. Rev. Lett. 91, 140601 (2003)) solves

    Σ_i f(M + βW_F,i − βΔF) = Σ_j f(−M + βW_R,j + βΔF).

We solve it in log form, ln Σ_i f(·) − ln Σ_j f(·) = 0 with ln f(x) = −softplus(x) and
log-sum-exp, so works of any magnitude (including +inf) never overflow. The left side is
strictly increasing in ΔF, so the root is unique; it is found in float64 by scipy's
``brentq`` in a bracket grown from the two one-sided exponential-averaging estimates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import brentq
from torch import Tensor
from torch.nn.functional import softplus

from phasetune.thermo.statistics import series_inefficiency

__all__ = ["BARResult", "bennett_acceptance_ratio", "correlated_bennett_acceptance_ratio"]


@dataclass(frozen=True)
class BARResult:
    """Result of :func:`bennett_acceptance_ratio`.

    Attributes:
        delta_f: ΔF = F_B − F_A in eV (0-dim tensor).
        std_error: asymptotic standard error of ΔF in eV (0-dim tensor).
        n_iterations: root-finder iterations used.
    """

    delta_f: Tensor
    std_error: Tensor
    n_iterations: int


def _log_fermi(x: Tensor) -> Tensor:
    """ln f(x) = ln 1/(1 + eˣ) = −softplus(x), stable for any x."""
    return -softplus(x)


def _check_work(w: Tensor, name: str) -> Tensor:
    if not isinstance(w, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(w).__name__}")
    if w.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one work per sample), got shape {tuple(w.shape)}")
    if w.numel() == 0:
        raise ValueError(f"{name} is empty")
    if bool(torch.isnan(w).any()):
        raise ValueError(f"{name} contains NaN")
    return w.detach().to(torch.float64)


def _expand_bracket(h: Callable[[float], float], x: float, step: float, want_sign: int) -> float:
    """Move x by doubling steps until sign(h(x)) == want_sign (h is increasing)."""
    for _ in range(256):
        value = h(x)
        if math.isnan(value):
            raise ValueError("BAR equation is NaN; check the works for invalid values")
        if value * want_sign >= 0:
            return x
        x += step
        step *= 2.0
    raise RuntimeError(
        "could not bracket the BAR solution; the forward and reverse works may not overlap"
    )


def bennett_acceptance_ratio(
    work_forward: Tensor,
    work_reverse: Tensor,
    kT_eV: float | Tensor,
    *,
    tol: float = 1e-12,
    max_iter: int = 200,
) -> BARResult:
    """BAR estimate of ΔF = F_B − F_A and its asymptotic standard error.

    Solves (see the module docstring) for x = βΔF

        h(x) = ln Σ_i f(M + βW_F,i − x) − ln Σ_j f(−M + βW_R,j + x) = 0,   M = ln(n_F/n_R),

    h being strictly increasing (h'(x) = Σ_i p_i σ(M + βW_F,i − x) + Σ_j q_j σ(−M + βW_R,j + x)
    > 0, p and q the normalised Fermi factors, σ = 1 − f the logistic function).

    The error is the asymptotic variance of Shirts et al. (2003), from the Fermi-function
    averages at the solution, assuming independent samples:

        σ²(ΔF) = (kT)² [ (⟨f_F²⟩_F/⟨f_F⟩_F² − 1)/n_F + (⟨f_R²⟩_R/⟨f_R⟩_R² − 1)/n_R ],

    f_F = f(M + βW_F − βΔF), f_R = f(−M + βW_R + βΔF). For correlated samples, pass
    decorrelated subsamples (see :mod:`phasetune.thermo.statistics`).

    Args:
        work_forward: U_B − U_A on samples of A, eV, 1-D.
        work_reverse: U_A − U_B on samples of B, eV, 1-D.
        kT_eV: thermal energy k_B·T in eV (scalar; both states at the same temperature).
        tol: convergence tolerance on βΔF (relative to max(1, |βΔF|)).
        max_iter: maximum number of root-finder iterations.

    Returns:
        :class:`BARResult` with ΔF and its standard error in eV (dtype of ``work_forward``),
        and the iteration count. Not differentiable (inputs are detached).

    Raises:
        ValueError: on malformed inputs or non-positive kT.
        RuntimeError: if the root finder does not converge within ``max_iter`` iterations.
    """
    out_dtype = work_forward.dtype if isinstance(work_forward, Tensor) else torch.float64
    w_f = _check_work(work_forward, "work_forward")
    w_r = _check_work(work_reverse, "work_reverse").to(w_f.device)
    kT_t = torch.as_tensor(kT_eV, dtype=torch.float64)
    if kT_t.numel() != 1:
        raise ValueError("kT_eV must be a scalar for bennett_acceptance_ratio")
    kT = float(kT_t)
    if not kT > 0:
        raise ValueError("kT_eV must be strictly positive")

    n_f, n_r = w_f.numel(), w_r.numel()
    m = math.log(n_f / n_r)
    a = m + w_f / kT  # forward Fermi arguments are a − x
    b = -m + w_r / kT  # reverse Fermi arguments are b + x

    def h(x: float) -> float:
        return float(torch.logsumexp(_log_fermi(a - x), 0) - torch.logsumexp(_log_fermi(b + x), 0))

    # One-sided exponential-averaging estimates of βΔF bound a sensible starting bracket.
    x_fwd = -(float(torch.logsumexp(-w_f / kT, 0)) - math.log(n_f))
    x_rev = float(torch.logsumexp(-w_r / kT, 0)) - math.log(n_r)
    starts = [v for v in (x_fwd, x_rev) if math.isfinite(v)]
    if not starts:
        starts = [0.0]
    lo, hi = min(starts) - 1.0, max(starts) + 1.0
    lo = _expand_bracket(h, lo, -max(hi - lo, 1.0), want_sign=-1)
    hi = _expand_bracket(h, hi, max(hi - lo, 1.0), want_sign=1)
    # h is increasing, so the bracket holds exactly one root: Brent's method finds it
    x, info = brentq(
        h,
        lo,
        hi,
        xtol=tol,
        rtol=max(tol, 4 * np.finfo(float).eps),
        maxiter=max_iter,
        full_output=True,
        disp=False,
    )
    if not info.converged:
        raise RuntimeError(f"BAR did not converge in {max_iter} iterations (βΔF ≈ {x:.6g})")
    n_iter = info.iterations

    # Asymptotic variance from the Fermi-function averages at the solution.
    def rel_var(log_f: Tensor) -> Tensor:
        n = log_f.numel()
        # ⟨f²⟩/⟨f⟩² = n · Σf² / (Σf)², in log space.
        log_ratio = torch.logsumexp(2.0 * log_f, 0) - 2.0 * torch.logsumexp(log_f, 0)
        return (torch.exp(log_ratio + math.log(n)) - 1.0).clamp_min(0.0) / n

    var_x = rel_var(_log_fermi(a - x)) + rel_var(_log_fermi(b + x))
    delta_f = torch.tensor(kT * x, dtype=out_dtype, device=w_f.device)
    std_error = (kT * torch.sqrt(var_x)).to(out_dtype)
    return BARResult(delta_f=delta_f, std_error=std_error, n_iterations=n_iter)


def correlated_bennett_acceptance_ratio(
    work_forward: Tensor, work_reverse: Tensor, kT_eV: float | Tensor
) -> tuple[BARResult, float]:
    """BAR over time-ordered, correlated frames: the error scaled by √g.

    The asymptotic error of :func:`bennett_acceptance_ratio` assumes independent samples;
    consecutive MD frames are not. It is multiplied by √g, g the larger statistical
    inefficiency of the two work series. Returns the result (scaled error) and g.
    """
    result = bennett_acceptance_ratio(work_forward, work_reverse, kT_eV)
    g = max(series_inefficiency(work_forward), series_inefficiency(work_reverse))
    scaled = BARResult(
        delta_f=result.delta_f,
        std_error=result.std_error * math.sqrt(g),
        n_iterations=result.n_iterations,
    )
    return scaled, g
