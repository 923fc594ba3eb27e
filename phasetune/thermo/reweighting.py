"""Free-energy perturbation and importance reweighting (the core of DiffTRe).

Frames x_i, i = 1..N, sampled in the reference ensemble of a potential U_ref are reused for a
perturbed potential U_θ through the energy differences ΔU_i = U_θ(x_i) − U_ref(x_i) (eV).
A series of frames is a 1-D tensor ``[n_frames]``. Batches of series are accepted too, but
only with ``frames_dim=`` saying which dimension indexes frames: a
:class:`~phasetune.sampling.frames.Frames` stores energies as ``[frames, systems]``, and
reducing that over the wrong dimension would silently give per-frame values
(``frames_dim=0`` is right for it). Internally frames go last, ``[..., n_frames]``, and
thermal energies ``kT_eV`` broadcast against the remaining (batch) dimensions.

All reductions over frames use ``logsumexp``/``softmax``, so energy differences of many
thousands of kT neither overflow nor underflow, and all functions are differentiable with
autograd in float64 and float32.

Effective sample size: phasetune decides whether to re-sample a trajectory by comparing
:func:`relative_effective_sample_size` (N_eff / N, in (0, 1]) with a threshold (default 0.9),
computed with the Kish form N_eff = 1 / Σ w². The entropy form exp(−Σ w ln w), used by
chemtrain / DiffTRe (Thaler & Zavadlav, Nat. Commun. 12, 6884 (2021)), is available too.
Both forms equal N for uniform weights and 1 when a single frame carries all the weight.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "effective_sample_size",
    "free_energy_perturbation",
    "free_energy_perturbation_error",
    "relative_effective_sample_size",
    "reweighted_average",
    "reweighting_weights",
]

ESSForm = Literal["kish", "entropy"]


def _check_frames(delta_u: Tensor, name: str = "delta_u") -> None:
    if not isinstance(delta_u, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(delta_u).__name__}")
    if delta_u.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (frames on the last one)")
    if delta_u.shape[-1] == 0:
        raise ValueError(f"{name} has no frames (last dimension is empty)")
    if not delta_u.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {delta_u.dtype}")


def _frames_last(x: Tensor, frames_dim: int | None, name: str = "delta_u") -> Tensor:
    """``x`` with its frame dimension last; a batch needs ``frames_dim`` (ValueError)."""
    if x.ndim <= 1:
        _check_frames(x, name)
        return x
    if frames_dim is None:
        raise ValueError(
            f"{name} has shape {tuple(x.shape)}: say which dimension indexes frames with "
            "frames_dim= (a Frames' energies are [frames, systems]: frames_dim=0), or pass "
            "one series of frames as a 1-D tensor"
        )
    moved = torch.movedim(x, frames_dim, -1)
    _check_frames(moved, name)
    return moved


def _kT_for_frames(kT_eV: float | Tensor, delta_u: Tensor) -> tuple[Tensor, Tensor]:
    """kT as a tensor of delta_u's dtype: (as given, with a trailing frame dimension)."""
    kT = torch.as_tensor(kT_eV, dtype=delta_u.dtype, device=delta_u.device)
    if not bool(torch.all(kT > 0)):
        raise ValueError("kT_eV must be strictly positive")
    try:
        torch.broadcast_shapes(kT.shape, delta_u.shape[:-1])
    except RuntimeError as err:
        raise ValueError(
            f"kT_eV of shape {tuple(kT.shape)} does not broadcast against the leading "
            f"(batch) dimensions {tuple(delta_u.shape[:-1])} of delta_u "
            f"{tuple(delta_u.shape)}; frames must be on the last dimension"
        ) from err
    return kT, (kT.unsqueeze(-1) if kT.ndim > 0 else kT)


def _per_atom(value: Tensor, n_atoms: int | Tensor | None) -> Tensor:
    if n_atoms is None:
        return value
    n = torch.as_tensor(n_atoms, dtype=value.dtype, device=value.device)
    if not bool(torch.all(n > 0)):
        raise ValueError("n_atoms must be positive")
    return value / n


def free_energy_perturbation(
    delta_u: Tensor,
    kT_eV: float | Tensor,
    n_atoms: int | Tensor | None = None,
    *,
    frames_dim: int | None = None,
) -> Tensor:
    """Zwanzig free-energy perturbation estimate ΔF = F_θ − F_ref (eV, or eV/atom).

    Implements

        ΔF = −kT · ln ⟨exp(−ΔU / kT)⟩_ref = −kT · [logsumexp_i(−ΔU_i / kT) − ln N],

    with ΔU_i = U_θ(x_i) − U_ref(x_i) for frames x_i drawn from the reference ensemble.

    Args:
        delta_u: energy differences in eV: ``[n_frames]``, or a batch with ``frames_dim``.
        kT_eV: thermal energy k_B·T in eV; scalar or broadcastable to the batch dimensions.
        n_atoms: if given, the result is divided by it (free energy per atom).
        frames_dim: the frame dimension of a batch (required when ``delta_u`` is not 1-D).

    Returns:
        ΔF: a scalar for one series, else the batch shape (broadcast with kT). Differentiable; its
        gradient with respect to ΔU_i is the reweighting weight w_i (see
        :func:`reweighting_weights`).
    """
    delta_u = _frames_last(delta_u, frames_dim)
    kT, kT_frames = _kT_for_frames(kT_eV, delta_u)
    log_mean = torch.logsumexp(-delta_u / kT_frames, dim=-1) - math.log(delta_u.shape[-1])
    delta_f = -kT * log_mean
    return _per_atom(delta_f, n_atoms)


def free_energy_perturbation_error(
    delta_u: Tensor,
    kT_eV: float | Tensor,
    n_atoms: int | Tensor | None = None,
    *,
    frames_dim: int | None = None,
) -> Tensor:
    """Delta-method standard error of :func:`free_energy_perturbation` (independent frames).

    With e_i = exp(−ΔU_i / kT),

        σ_ΔF ≈ kT · sqrt( Var(e) / N ) / ⟨e⟩,

    (Var with Bessel's correction). Computed stably by shifting the exponent by its maximum
    (i.e. by min ΔU), which cancels in the ratio. For correlated frames, scale by the square
    root of the statistical inefficiency of e (see :mod:`phasetune.thermo.statistics`).

    Args:
        delta_u: energy differences in eV, ``[n_frames]`` with n_frames ≥ 2, or a batch
            with ``frames_dim``.
        kT_eV: thermal energy in eV; scalar or broadcastable to the batch dimensions.
        n_atoms: if given, the error is divided by it (per atom).
        frames_dim: the frame dimension of a batch (required when ``delta_u`` is not 1-D).

    Returns:
        σ_ΔF in eV (or eV/atom): a scalar for one series, else the batch shape.
    """
    delta_u = _frames_last(delta_u, frames_dim)
    n = delta_u.shape[-1]
    if n < 2:
        raise ValueError("free_energy_perturbation_error needs at least 2 frames")
    kT, kT_frames = _kT_for_frames(kT_eV, delta_u)
    x = -delta_u / kT_frames
    shifted = torch.exp(x - x.amax(dim=-1, keepdim=True))
    mean = shifted.mean(dim=-1)
    var = shifted.var(dim=-1, correction=1)
    sigma = kT * torch.sqrt(var / n) / mean
    return _per_atom(sigma, n_atoms)


def reweighting_weights(
    delta_u: Tensor, kT_eV: float | Tensor, *, frames_dim: int | None = None
) -> Tensor:
    """Normalised importance weights of the reference frames for the perturbed potential.

    Implements w_i = exp(−ΔU_i / kT) / Σ_j exp(−ΔU_j / kT) (a softmax over frames). Same
    shape as ``delta_u`` (``frames_dim`` required for a batch, as in
    :func:`free_energy_perturbation`), and the weights of each series sum to 1.
    Differentiable.
    """
    moved = _frames_last(delta_u, frames_dim)
    _, kT_frames = _kT_for_frames(kT_eV, moved)
    weights = torch.softmax(-moved / kT_frames, dim=-1)
    return weights if delta_u.ndim <= 1 else torch.movedim(weights, -1, frames_dim)


def effective_sample_size(
    weights: Tensor, form: ESSForm = "kish", *, frames_dim: int | None = None
) -> Tensor:
    """Effective number of frames N_eff of a set of importance weights (last dimension).

    Implements, with weights normalised to Σ w_i = 1 (they are normalised here first):

    * ``form="kish"`` (default, used for phasetune's resampling decision):
      N_eff = 1 / Σ_i w_i²  (Kish 1965);
    * ``form="entropy"`` (chemtrain / DiffTRe): N_eff = exp(−Σ_i w_i ln w_i), with
      0 · ln 0 = 0.

    Both equal N for uniform weights and 1 for a single non-zero weight; Kish ≤ entropy.

    Args:
        weights: non-negative weights, ``[n_frames]`` or a batch with ``frames_dim``.
        form: ``"kish"`` or ``"entropy"``.
        frames_dim: the frame dimension of a batch (required when ``weights`` is not 1-D).

    Returns:
        N_eff: a scalar for one series, else the batch shape.
    """
    weights = _frames_last(weights, frames_dim, "weights")
    w = weights / weights.sum(dim=-1, keepdim=True)
    if form == "kish":
        return 1.0 / (w * w).sum(dim=-1)
    if form == "entropy":
        return torch.exp(-torch.xlogy(w, w).sum(dim=-1))
    raise ValueError(f"unknown effective-sample-size form {form!r}; use 'kish' or 'entropy'")


def relative_effective_sample_size(
    weights: Tensor, form: ESSForm = "kish", *, frames_dim: int | None = None
) -> Tensor:
    """Relative effective sample size N_eff / N ∈ (0, 1] (see :func:`effective_sample_size`).

    phasetune re-samples a trajectory when this (Kish form) drops below its threshold
    (default 0.9).
    """
    weights = _frames_last(weights, frames_dim, "weights")
    return effective_sample_size(weights, form=form, frames_dim=-1) / weights.shape[-1]


def reweighted_average(observable: Tensor, weights: Tensor) -> Tensor:
    """Reweighted ensemble average ⟨O⟩_θ = Σ_i w_i O_i.

    Args:
        observable: per-frame observable, shape ``[..., n_frames, *obs_shape]``. It must
            have as many leading ``...`` dimensions as ``weights`` (size-1 dimensions
            broadcast), so the frame dimension is ``weights.ndim - 1`` in both.
        weights: normalised weights (e.g. from :func:`reweighting_weights`), shape
            ``[..., n_frames]``.

    Returns:
        Tensor of shape ``[..., *obs_shape]``. Differentiable with respect to both inputs.
    """
    _check_frames(weights, "weights")
    if observable.ndim < weights.ndim:
        raise ValueError(
            f"observable {tuple(observable.shape)} has fewer dimensions than weights "
            f"{tuple(weights.shape)}; expected observable shape [..., n_frames, *obs_shape]"
        )
    frame_dim = weights.ndim - 1
    if observable.shape[frame_dim] != weights.shape[-1]:
        raise ValueError(
            f"observable has {observable.shape[frame_dim]} frames on dimension {frame_dim}, "
            f"weights have {weights.shape[-1]}"
        )
    w = weights.reshape(weights.shape + (1,) * (observable.ndim - weights.ndim))
    return (w.to(observable.dtype) * observable).sum(dim=frame_dim)
