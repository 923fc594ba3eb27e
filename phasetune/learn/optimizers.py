"""The optimizers of DiffTRe fine-tuning, as ``torch.optim.Optimizer`` s.

Both act on the trainable parameters θ of a pretrained model with θ₀ and the per-tensor
scale s (RMS of each tensor at θ₀, times ``step_scales``) given, so that u = (θ − θ₀)/s is
the change measured in units of the pretrained values.

* :class:`DampedGaussNewton` fits residuals r_k = Δg_k/tol_k (one per target, optionally a
  gauge row): its ``step(closure)`` takes a closure that returns the residual vector
  (differentiable in θ), not a loss. It takes the smallest change of the pretrained model, in
  the metric ‖u‖, that zeroes the linearised residuals, damped by λ:

      J̃ = ∂r/∂u,  M = J̃J̃ᵀ (K×K),  λ = damping · tr(M_targets)/K,
      δu = −u − J̃ᵀ (M + λI)⁻¹ (r − J̃u),   capped at ‖δu‖_∞ ≤ Δ ≤ max_step,

  one backward pass per residual. Δ is a trust radius: on the same frames
  (:func:`trust_radius_update`) it halves below a step whose actual reduction of Σ r_k² fell
  short of a quarter of the linear prediction; after new frames (:meth:`on_new_frames`,
  :func:`link_error_radius`) it shrinks while the new chain links' errors exceed
  ``link_error_fraction`` of the tolerance, and doubles while they stay below a quarter of
  it. Δ starts at ``initial_step`` (default max_step/4): a link spans the whole first step
  before its error is known, and a 2 % step of LJ's σ gave a link that erred by its whole
  tolerance, biasing the fit by 1–2 K in three of three runs (bench/RESULTS.md).
  Parameters the residuals do not constrain stay at θ₀ (a built-in pull-back).
* :class:`OffsetAdam`: Adam with each tensor's learning rate lr·s (``relative_lr``) and a
  decoupled weight decay of the offset θ − θ₀ (AdamW on the offset, as in the DiffTTC paper):
  a loss optimizer, ``step(closure)`` as in torch.

torch has no Gauss–Newton (``torch.optim.LBFGS`` is quasi-Newton on a scalar loss, without a
minimal-change metric or a trust radius), hence the first; the second is torch's Adam plus
the offset decay, which AdamW applies to θ, not to θ − θ₀.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from phasetune.learn.checks import check_flag, check_number
from phasetune.learn.distributed import sum_across

#: key of the optimizer-wide state (a string key survives ``Optimizer.state_dict``)
_TRUST = "trust_region"


def trust_radius_update(
    radius: float,
    *,
    reduction: float,
    predicted_reduction: float,
    step_size: float,
    max_step: float,
) -> float:
    """The next step's cap from how the last one did (a trust region on ‖δu‖_∞).

    ρ = (actual reduction of Σ r_k²) / (the reduction its linear model predicted), both on
    the same frames. ρ < ¼: the linearisation failed at that size, so the next cap is half
    the step taken (the minimal-change step, which re-projects from θ₀ each time, can
    otherwise jump between two parameter sets for ever); ρ > ¾ with the step at the cap:
    twice the cap, at most ``max_step``; else unchanged. Steps that promised less than 0.01
    (residuals are in units of the tolerance: noise-level changes) are not judged, and the cap
    stays ≥ max_step/64.
    """
    if not predicted_reduction > 0.01:
        return radius
    rho = reduction / predicted_reduction
    if rho < 0.25:
        return max(0.5 * step_size, max_step / 64)
    if rho > 0.75 and step_size >= 0.99 * radius:
        return min(2.0 * radius, max_step)
    return radius


def link_error_radius(
    radius: float, *, link_error: float, allowed_error: float, max_step: float
) -> float:
    """The next step's cap from the error of the chain links the last steps cost.

    A re-sampled state point is chained to its old frames (BAR) at an error that grows fast
    with the parameter change the link spans (two-pressure LJ test: 0.16 meV/atom after one
    link of a 2 % step, 0.03 after nine of 0.5 %, against a 0.2 meV/atom tolerance); links
    whose error nears the tolerance turn the fit into a random walk. With
    ratio = link_error/allowed_error (both in units of the target's tolerance): ratio > 1
    shrinks the cap by √ratio (the error grows ≈ ∝ step² there), at most 4× at once;
    ratio < ¼ doubles it, up to ``max_step``; the cap stays ≥ max_step/64.
    """
    if not (link_error > 0 and allowed_error > 0):  # no link, or NaN
        return radius
    ratio = link_error / allowed_error
    if ratio > 1:
        return max(radius / min(math.sqrt(ratio), 4.0), max_step / 64)
    if ratio < 0.25:
        return min(2.0 * radius, max_step)
    return radius


def _groups(
    named_params: Iterable[tuple[str, torch.nn.Parameter]],
    theta0: dict[str, torch.Tensor],
    scales: dict[str, torch.Tensor],
) -> tuple[list[dict], list[tuple[torch.Tensor, torch.Tensor]]]:
    """One param group per tensor (named), and each group's (θ₀, s). θ₀ and s stay out of
    the groups, which ``state_dict`` saves: the module's checkpoint holds them already."""
    named = list(named_params)
    groups = [{"params": [p], "name": n} for n, p in named]
    return groups, [(theta0[n], scales[n]) for n, _ in named]


def check_optimizer(factory) -> torch.optim.Optimizer:
    """``factory`` (an optimizer config's partial) built on one dummy parameter, so that its
    settings' own checks run before any work (ValueError naming the key)."""
    zero = torch.zeros(1, dtype=torch.float64)
    return factory(
        [("check", torch.nn.Parameter(zero.clone()))],
        theta0={"check": zero},
        scales={"check": torch.ones(1, dtype=torch.float64)},
        n_targets=1,
    )


class DampedGaussNewton(torch.optim.Optimizer):
    """Minimal-change damped Gauss–Newton on residuals, with a trust radius (module docstring).

    ``step(closure)``: ``closure()`` returns the residual vector r (first ``n_targets``
    entries the targets' Δg_k/tol_k, any further rows extra residuals such as a gauge), built
    with autograd from the parameters. Under DDP every rank has the whole r but the autograd
    graph of its own share only; the Jacobian is summed over the ranks (rows a rank has no
    graph for are zero there). ``link_error_fraction``: the chain-link error, in
    units of the target tolerance, that :meth:`on_new_frames` holds the links to (None: off).
    ``initial_step``: the first step's cap (None: max_step/4).
    """

    fits_residuals = True

    def __init__(
        self,
        named_params: Iterable[tuple[str, torch.nn.Parameter]],
        *,
        theta0: dict[str, torch.Tensor],
        scales: dict[str, torch.Tensor],
        n_targets: int,
        damping: float = 1e-3,
        max_step: float = 0.02,
        link_error_fraction: float | None = 0.1,
        initial_step: float | None = None,
    ) -> None:
        check_number("damping", damping, low=0.0)
        check_number("max_step", max_step, low=0.0, low_ok=False)
        if initial_step is None:
            initial_step = max_step / 4
        check_number("initial_step", initial_step, low=0.0, low_ok=False)
        if initial_step > max_step:
            raise ValueError(
                f"initial_step must not exceed max_step, got {initial_step} > {max_step}"
            )
        if link_error_fraction is not None:
            try:
                check_number("link_error_fraction", link_error_fraction, low=0.0, low_ok=False)
            except ValueError:
                raise ValueError(
                    f"link_error_fraction must be > 0 or null, got {link_error_fraction!r}"
                ) from None
        groups, self.reference = _groups(named_params, theta0, scales)
        super().__init__(groups, {})
        self.n_targets = int(n_targets)
        self.damping = float(damping)
        self.max_step = float(max_step)
        self.link_error_fraction = link_error_fraction
        self.state[_TRUST] = {
            "radius": float(initial_step),
            "last_step": None,  # the last step's residuals and prediction, for ρ
            "new_frames": False,  # frames changed since the last step
            "link_ratio": None,  # their chain links' error / (fraction · tol)
        }

    @property
    def trust_radius(self) -> float:
        """The next step's cap on ‖δu‖_∞."""
        return float(self.state[_TRUST]["radius"])

    @property
    def last_step(self) -> dict | None:
        """The last step: its residual Σr², predicted Σr² and ‖δu‖_∞ (None before the first)."""
        return self.state[_TRUST]["last_step"]

    def on_new_frames(self, *, link_error: float | None) -> None:
        """The frames the residuals are estimated on changed (re-sampling); ``link_error``:
        the largest new chain-link error over the targets, in units of their tolerance
        (None: no link judged). The next step is not judged against the last one's
        prediction (other frames); a link error sets the cap instead."""
        state = self.state[_TRUST]
        state["new_frames"] = True
        if link_error is not None and self.link_error_fraction:
            state["link_ratio"] = link_error / self.link_error_fraction

    def _update_radius(self, target_residuals: torch.Tensor) -> None:
        state = self.state[_TRUST]
        last = state["last_step"]
        if state["link_ratio"] is not None:  # new frames: judge the chain links they cost
            state["radius"] = link_error_radius(
                state["radius"],
                link_error=state["link_ratio"],
                allowed_error=1.0,
                max_step=self.max_step,
            )
        elif last is not None and not state["new_frames"]:  # the same frames as the last step
            state["radius"] = trust_radius_update(
                state["radius"],
                reduction=last["residual_sq"] - float(target_residuals @ target_residuals),
                predicted_reduction=last["residual_sq"] - last["predicted_sq"],
                step_size=last["size"],
                max_step=self.max_step,
            )
        state["link_ratio"], state["new_frames"] = None, False

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        with torch.enable_grad():
            residuals = closure()
        params = [g["params"][0] for g in self.param_groups]
        scales = [s for _, s in self.reference]
        rows = []
        for k in range(len(residuals)):
            if not residuals[k].requires_grad:  # another rank's target, or no frames left
                rows.append(torch.cat([torch.zeros_like(p).flatten() for p in params]).double())
                continue
            grads = torch.autograd.grad(residuals[k], params, retain_graph=True, allow_unused=True)
            rows.append(
                torch.cat(
                    [
                        (torch.zeros_like(p) if g is None else g * s.to(g)).flatten()
                        for s, p, g in zip(scales, params, grads, strict=True)
                    ]
                ).double()
            )
        jac = sum_across(torch.stack(rows))  # ∂r/∂u
        with torch.no_grad():
            u = torch.cat(
                [
                    ((p - t0.to(p)) / s.to(p)).flatten()
                    for (t0, s), p in zip(self.reference, params, strict=True)
                ]
            ).double()
            r = residuals.detach().double()
            m = jac @ jac.T
            # λ from the targets' rows: a gauge row (every phase's whole energy shift) is
            # orders of magnitude larger, and would otherwise damp the targets away
            k = self.n_targets
            lam = self.damping * float(torch.trace(m[:k, :k])) / k + 1e-30
            du = -u - jac.T @ torch.linalg.solve(
                m + lam * torch.eye(len(r), dtype=m.dtype), r - jac @ u
            )
            self._update_radius(r[:k])
            radius = self.trust_radius
            largest = float(du.abs().max())
            if largest > radius:
                du = du * (radius / largest)
            predicted = r[:k] + jac[:k] @ du  # the targets' linearised residuals after the step
            self.state[_TRUST]["last_step"] = {
                "residual_sq": float(r[:k] @ r[:k]),
                "predicted_sq": float(predicted @ predicted),
                "size": float(du.abs().max()),
            }
            offset = 0
            for s, p in zip(scales, params, strict=True):
                size = p.numel()
                p.add_((du[offset : offset + size].view_as(p) * s).to(p))
                offset += size
        return residuals.detach()


class OffsetAdam(torch.optim.Adam):
    """Adam with learning rates relative to each tensor's scale and weight decay of θ − θ₀.

    After each Adam update, δ = θ − θ₀ ← δ − lr·wd·δ (decoupled, as AdamW does for θ).
    ``relative_lr``: each tensor's rate is lr·s, so that every tensor moves by the same
    fraction of its pretrained size.
    """

    fits_residuals = False

    def __init__(
        self,
        named_params: Iterable[tuple[str, torch.nn.Parameter]],
        *,
        theta0: dict[str, torch.Tensor],
        scales: dict[str, torch.Tensor],
        n_targets: int | None = None,
        lr: float = 0.01,
        relative_lr: bool = True,
        offset_weight_decay: float = 0.0,
    ) -> None:
        check_number("lr", lr, low=0.0, low_ok=False)
        check_flag("relative_lr", relative_lr)
        check_number("offset_weight_decay", offset_weight_decay, low=0.0)
        groups, self.reference = _groups(named_params, theta0, scales)
        for group, (_, scale) in zip(groups, self.reference, strict=True):
            group["lr"] = lr * float(scale) if relative_lr else lr
        super().__init__(groups)
        self.offset_weight_decay = float(offset_weight_decay)

    def step(self, closure: Callable[[], torch.Tensor] | None = None):  # type: ignore[override]
        loss = super().step(closure)
        if self.offset_weight_decay > 0:
            with torch.no_grad():
                for group, (theta0, _) in zip(self.param_groups, self.reference, strict=True):
                    for p in group["params"]:
                        p.sub_(group["lr"] * self.offset_weight_decay * (p - theta0.to(p)))
        return loss
