"""Thermodynamics of first-order phase transitions between two phases A and B.

Convention: Δ always means phase B minus phase A, Δx = x_B − x_A (e.g. A = solid,
B = liquid gives Δh > 0, the latent heat, and usually Δv > 0). Quantities are per atom or
per formula unit, consistently: Δg, Δh in eV, Δv in Å³, temperatures in K, pressures in
GPa.

At coexistence Δg(T*) = 0, and the Gibbs–Helmholtz relation ∂(Δg/T)/∂T = −Δh/T² carries
Δg to other temperatures at fixed pressure.
"""

from __future__ import annotations

import torch
from torch import Tensor

from phasetune.units import EV_PER_A3_PER_GPA

__all__ = [
    "clausius_clapeyron_slope_K_per_GPa",
    "gibbs_helmholtz_delta_g",
    "transition_temperature",
]


def _as_float_tensor(value: float | Tensor, like: Tensor | None = None) -> Tensor:
    if isinstance(value, Tensor):
        if value.is_floating_point():
            return value
        return value.to(like.dtype if like is not None else torch.get_default_dtype())
    dtype = like.dtype if like is not None else torch.float64
    device = like.device if like is not None else None
    return torch.as_tensor(value, dtype=dtype, device=device)


def _require_positive(t: Tensor, name: str) -> None:
    if not bool(torch.all(t > 0)):
        raise ValueError(f"{name} must be > 0 K (absolute temperature), got {t.detach()}")


def gibbs_helmholtz_delta_g(
    temperature_K: float | Tensor,
    *,
    coexistence_temperature_K: float | Tensor,
    temperatures_K: Tensor,
    delta_h_eV: Tensor,
    degree: int = 1,
) -> Tensor:
    """Δg(T) = g_B − g_A from Δg(T*) = 0 and Δh sampled at several temperatures.

    Integrates the Gibbs–Helmholtz equation at fixed pressure from the coexistence point,

        Δg(T)/T = −∫_{T*}^{T} Δh(T')/T'² dT',

    with Δh(T') the least-squares polynomial of degree ``degree`` through the samples
    (degree 0: constant Δh; degree 1: constant Δc_p). The fit is done in u = T'/T*,
    Δh(T') = Σ_k b_k u^k, and the integral is analytic:

        Δg(T) = −u · Σ_k b_k I_k(u),  u = T/T*,
        I_1(u) = ln u,  I_k(u) = (u^{k−1} − 1)/(k − 1) for k ≠ 1.

    E.g. for Δh = Δh₀ + Δc_p (T − T*):
    Δg(T) = Δh₀ (1 − T/T*) + Δc_p [(T − T*) − T ln(T/T*)].

    Args:
        temperature_K: temperature(s) T at which to evaluate Δg, scalar or any shape.
        coexistence_temperature_K: T*, where Δg = 0; float or tensor broadcastable to the
            batch shape ``delta_h_eV.shape[:-1]``.
        temperatures_K: sample temperatures T'_m, shape ``[n]``, n ≥ degree + 1.
        delta_h_eV: Δh at those temperatures, shape ``[..., n]`` (leading dimensions are
            independent transitions).
        degree: polynomial degree of the Δh(T') fit.

    Returns:
        Δg(T) in eV (units of delta_h_eV), shape
        ``delta_h_eV.shape[:-1] + temperature_K.shape`` (every transition at every T).
        Differentiable with respect to ``delta_h_eV``, ``temperature_K`` and
        ``coexistence_temperature_K``.
    """
    if degree < 0:
        raise ValueError(f"degree must be ≥ 0, got {degree}")
    if not isinstance(delta_h_eV, Tensor):
        raise TypeError("delta_h_eV must be a torch.Tensor")
    if delta_h_eV.ndim == 0:
        raise ValueError("delta_h_eV must have shape [..., n_temperatures]")
    temps = _as_float_tensor(temperatures_K, delta_h_eV).to(delta_h_eV.dtype)
    if temps.ndim != 1 or temps.shape[0] != delta_h_eV.shape[-1]:
        raise ValueError(
            f"temperatures_K must be 1-D with one entry per Δh sample; got shape "
            f"{tuple(temps.shape)} for delta_h_eV of shape {tuple(delta_h_eV.shape)}"
        )
    if temps.shape[0] < degree + 1:
        raise ValueError(
            f"a degree-{degree} fit needs at least {degree + 1} temperatures, got {temps.shape[0]}"
        )
    t_star = _as_float_tensor(coexistence_temperature_K, delta_h_eV).to(delta_h_eV.dtype)
    temperature = _as_float_tensor(temperature_K, delta_h_eV).to(delta_h_eV.dtype)
    _require_positive(temps, "temperatures_K")
    _require_positive(t_star, "coexistence_temperature_K")
    _require_positive(temperature, "temperature_K")

    batch = delta_h_eV.shape[:-1]
    try:
        t_star = t_star.expand(batch)
    except RuntimeError as err:
        raise ValueError(
            f"coexistence_temperature_K of shape {tuple(t_star.shape)} does not broadcast to "
            f"the batch shape {tuple(batch)} of delta_h_eV"
        ) from err

    # Least-squares fit Δh = Σ_k b_k (T'/T*)^k; pinv keeps it differentiable in Δh.
    powers = torch.arange(degree + 1, device=temps.device)
    vander = (temps / t_star.unsqueeze(-1)).unsqueeze(-1) ** powers  # [..., n, degree+1]
    coeffs = (torch.linalg.pinv(vander) @ delta_h_eV.unsqueeze(-1)).squeeze(-1)

    # Outer structure: batch dimensions of Δh first, then those of temperature_K.
    expand = (1,) * temperature.ndim
    u = temperature / t_star.reshape(batch + expand)
    log_u = torch.log(u)
    integral = torch.zeros_like(u)
    for k in range(degree + 1):
        i_k = log_u if k == 1 else (u ** (k - 1) - 1.0) / (k - 1)
        integral = integral + coeffs[..., k].reshape(batch + expand) * i_k
    return -u * integral


def transition_temperature(
    *,
    temperature_K: float | Tensor,
    delta_g_eV: float | Tensor,
    delta_h_eV: float | Tensor,
    delta_g_error_eV: float | Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Coexistence temperature T* implied by Δg and Δh measured at one temperature T.

    Assuming Δh constant between T and T*, Gibbs–Helmholtz gives
    Δg(T)/T = Δh (1/T − 1/T*), hence

        T* = T · Δh / (Δh − Δg),

    and the error propagated from σ_Δg (Δh treated as exact) is

        σ_T* = |∂T*/∂Δg| σ_Δg = T |Δh| / (Δh − Δg)² · σ_Δg.

    A negative T* means Δg and Δh imply no transition under this assumption.

    Args:
        temperature_K: T (> 0), scalar or tensor.
        delta_g_eV: Δg = g_B − g_A at T.
        delta_h_eV: Δh = h_B − h_A at T.
        delta_g_error_eV: optional standard error of Δg.

    Returns:
        ``(T*, σ_T*)`` in K; σ_T* is None when no ``delta_g_error_eV`` is given.
        Differentiable with respect to all tensor inputs.

    Raises:
        ValueError: if T ≤ 0, if Δh − Δg is (numerically) zero, or shapes do not broadcast.
    """
    ref = next((v for v in (delta_g_eV, delta_h_eV, temperature_K) if isinstance(v, Tensor)), None)
    dg = _as_float_tensor(delta_g_eV, ref)
    dh = _as_float_tensor(delta_h_eV, ref).to(dg.dtype)
    temperature = _as_float_tensor(temperature_K, ref).to(dg.dtype)
    try:
        torch.broadcast_shapes(temperature.shape, dg.shape, dh.shape)
    except RuntimeError as err:
        raise ValueError(
            f"shapes of temperature_K {tuple(temperature.shape)}, delta_g_eV "
            f"{tuple(dg.shape)} and delta_h_eV {tuple(dh.shape)} do not broadcast"
        ) from err
    _require_positive(temperature, "temperature_K")
    denom = dh - dg
    scale = torch.maximum(dh.abs(), dg.abs())
    tiny = torch.finfo(dg.dtype).tiny
    if bool(torch.any(denom.abs() <= 1e3 * torch.finfo(dg.dtype).eps * scale + tiny)):
        raise ValueError(
            "Δh − Δg is zero to working precision: the constant-Δh extrapolation puts the "
            "transition at infinite temperature (no finite T* where Δg = 0)"
        )
    t_star = temperature * dh / denom
    if delta_g_error_eV is None:
        return t_star, None
    sigma = _as_float_tensor(delta_g_error_eV, dg).to(dg.dtype)
    return t_star, temperature * dh.abs() / denom**2 * sigma.abs()


def clausius_clapeyron_slope_K_per_GPa(
    *,
    temperature_K: float | Tensor,
    delta_v_A3: float | Tensor,
    delta_h_eV: float | Tensor,
) -> Tensor:
    """Slope of the coexistence line dT*/dP in K/GPa (Clausius–Clapeyron).

    Implements dT/dP = T Δv / Δh (= Δv/Δs with Δs = Δh/T at coexistence). T Δv/Δh comes in
    K·Å³/eV = K per (eV/Å³); multiplying by ``EV_PER_A3_PER_GPA`` (1 GPa in eV/Å³) gives
    K/GPa. Δv and Δh are B − A and must be per the same amount (per atom, or per cell).
    With Δv > 0 and Δh > 0 (e.g. melting of most solids) the slope is positive.
    """
    ref = next((v for v in (delta_h_eV, delta_v_A3, temperature_K) if isinstance(v, Tensor)), None)
    dh = _as_float_tensor(delta_h_eV, ref)
    dv = _as_float_tensor(delta_v_A3, dh).to(dh.dtype)
    temperature = _as_float_tensor(temperature_K, dh).to(dh.dtype)
    _require_positive(temperature, "temperature_K")
    if bool(torch.any(dh == 0)):
        raise ValueError("delta_h_eV must be non-zero (no latent heat ⇒ no first-order slope)")
    return temperature * dv / dh * EV_PER_A3_PER_GPA
