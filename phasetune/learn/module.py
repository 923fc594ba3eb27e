"""The LightningModule: the potential, the DiffTRe loss, the optimizer.

Per optimizer step (the ensembles come from :class:`~phasetune.learn.data.StatePointDataModule`),
with residuals r_k = Δg_k(θ)/tol_k (:func:`~phasetune.learn.difftre.delta_g_estimates`,
tol_k = Δs_k·tolerance_K in eV/atom) and s the RMS of each parameter tensor at θ₀:

* ``optimizer="gauss_newton"`` (default): the smallest change of the pretrained model, in
  the metric ‖(θ − θ₀)/s‖, that zeroes the linearised residuals, damped by λ:

      u = (θ − θ₀)/s,  J̃ = ∂r/∂u,  M = J̃J̃ᵀ (K×K),
      δu = −u − J̃ᵀ (M + λI)⁻¹ (r − J̃u),   capped at ‖δu‖_∞ ≤ Δ ≤ max_step,

  with Δ a trust radius (:func:`trust_radius_update`): halved below a step whose actual
  reduction of Σ r_k² on the same frames fell short of a quarter of the linear prediction;
  and after a re-sampling (:func:`link_error_radius`) shrunk while the new chain links'
  errors exceed ``link_error_fraction``·tol_k (large steps make poorly overlapping links).

  K backward passes per step (one per target); converges in a few steps and leaves
  parameters the targets do not constrain where they were (a built-in pull-back to θ₀).
  ``step_scales`` multiplies s per parameter (fnmatch pattern → factor): a prior on how
  readily each parameter may change (e.g. ``{sigma: 0.1}`` for LJ at P = 0, where σ cannot
  move T_m but its noisy reweighted gradient would otherwise take a share of each step).
  ``mean_energy_gauge=True`` adds one residual, c(θ)/mean_k(tol_k) with c the mean over all
  ensembles of [G(θ) − G(θ₀)]/N: Δg_k is blind to a shift of every phase's energy per atom,
  so the minimal-change step may shift all of them by hundreds of meV/atom (seen with MACE
  readouts), and every such shift has to be carried through the noisy BAR chains of each
  phase separately. The gauge keeps the mean energy of the sampled states at θ₀'s.
* ``optimizer="adam"``: Adam on

      loss = Σ_k r_k² + λ_sp · mean(((θ − θ₀)/s)²) + λ_d · mean_frames([(U_θ − U_θ₀)/(N kT)]²).
 Ensembles whose relative ESS falls
below ``ess_threshold`` are re-sampled before the loss is taken. Logged per step: loss,
Δg_k (meV/atom) and the standard error of its reweighted change, implied T*_k − T_k (K),
ESS per state point, re-samplings, MD steps.
Training stops early once every |Δg_k| < ``converged_fraction``·tol_k for ``patience`` steps.
With ``confirm_convergence`` (default) that must hold on frames sampled at the current θ: the
steps since the last re-sampling were fitted to the very frames that judge them (with few
independent frames a fit also follows their noise), so a streak reached on such frames makes
every state point be sampled afresh, and the run stops only if the estimate from the new
frames (their chained offsets alone, no reweighting left) is still within the bound; then no further
update is made, so the reported model is the one that was checked.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import time
from collections.abc import Sequence

import pytorch_lightning as pl
import torch

from phasetune.faults import fault_point
from phasetune.learn.anchor import Anchor
from phasetune.learn.data import ensemble_name
from phasetune.learn.difftre import (
    delta_g_estimates,
    l2_sp,
    parameter_scales,
    reweighted_gibbs_change,
    transition_loss,
)
from phasetune.targets import TransitionTarget

log = logging.getLogger(__name__)
OPTIMIZERS = ("gauss_newton", "adam")


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


#: what to do when a state point keeps too few frames in its phase
PHASE_CHANGE_POLICIES = ("skip", "stop")


def select_trainable(model: torch.nn.Module, patterns: Sequence[str] | str | None) -> list[str]:
    """Freeze every parameter not matching ``patterns`` (fnmatch; None or "all": train all).

    A string names a preset of the model (``model.trainable_patterns(name)``; MACE:
    all, readouts, last_interaction). Logs how many parameters train.
    """
    names = [name for name, _ in model.named_parameters()]
    if isinstance(patterns, str):
        if hasattr(model, "trainable_patterns"):
            patterns = model.trainable_patterns(patterns)
        elif patterns == "all":
            patterns = None
        else:
            patterns = [patterns]
    if patterns is None:
        chosen = names
    else:
        chosen = [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]
        unmatched = [p for p in patterns if not any(fnmatch.fnmatch(n, p) for n in names)]
        if unmatched:
            raise ValueError(
                f"trainable pattern(s) {unmatched} match no parameter; the model has {names}"
            )
    if not chosen:
        raise ValueError("no trainable parameters selected")
    n_total = n_train = 0
    for name, p in model.named_parameters():
        p.requires_grad_(name in chosen)
        n_total += p.numel()
        n_train += p.numel() if name in chosen else 0
    log.info("training %d of %d parameters (%d tensors)", n_train, n_total, len(chosen))
    return chosen


#: numeric loss settings: (kind, lower bound, lower bound allowed, upper bound)
_LOSS_RANGES = {
    "lr": (float, 0.0, False, math.inf),
    "damping": (float, 0.0, True, math.inf),
    "max_step": (float, 0.0, False, math.inf),
    "pullback_weight": (float, 0.0, True, math.inf),
    "offset_weight_decay": (float, 0.0, True, math.inf),
    "distill_weight": (float, 0.0, True, math.inf),
    "ess_threshold": (float, 0.0, False, 1.0),
    "converged_fraction": (float, 0.0, False, math.inf),
    "min_valid_fraction": (float, 0.0, False, 1.0),
    "patience": (int, 1, True, math.inf),
    "chunk_frames": (int, 1, True, math.inf),
    "max_nonfinite_steps": (int, 1, True, math.inf),
    "max_phase_resamples": (int, 0, True, math.inf),
}
_LOSS_CHOICES = {"optimizer": OPTIMIZERS, "on_phase_change": PHASE_CHANGE_POLICIES}
_LOSS_FLAGS = ("relative_lr", "mean_energy_gauge", "confirm_convergence")


def check_loss_settings(settings: dict) -> None:
    """Raise ``ValueError`` naming the first loss setting (a :class:`DiffTReModule` keyword)
    that is of the wrong type or out of range; cheap, so it runs before any MD."""
    for key, (kind, low, low_ok, high) in _LOSS_RANGES.items():
        if key not in settings:
            continue
        value = settings[key]
        bad = isinstance(value, bool) or not isinstance(value, int | float)
        bad = bad or (kind is int and not float(value).is_integer())
        if not bad:
            value = float(value)
            bad = not (math.isfinite(value) or high == math.inf and value == math.inf)
            bad = bad or value < low or (value == low and not low_ok) or value > high
        if bad:
            lower = f"{'>=' if low_ok else '>'} {low:g}"
            span = lower if high == math.inf else f"{lower} and <= {high:g}"
            noun = "an integer" if kind is int else "a finite number"
            raise ValueError(f"{key} must be {noun} {span}, got {settings[key]!r}")
    for key, choices in _LOSS_CHOICES.items():
        if key in settings and settings[key] not in choices:
            raise ValueError(f"{key} must be one of {', '.join(choices)}, got {settings[key]!r}")
    for key in _LOSS_FLAGS:
        if key in settings and not isinstance(settings[key], bool):
            raise ValueError(f"{key} must be true or false, got {settings[key]!r}")
    fraction = settings.get("link_error_fraction")
    if fraction is not None and (
        isinstance(fraction, bool) or not isinstance(fraction, int | float) or not fraction > 0
    ):
        raise ValueError(f"link_error_fraction must be > 0 or null, got {fraction!r}")
    if settings.get("mean_energy_gauge") and settings.get("optimizer", "gauss_newton") != (
        "gauss_newton"
    ):
        raise ValueError("mean_energy_gauge needs optimizer=gauss_newton")


class DiffTReModule(pl.LightningModule):
    """Fine-tunes ``model`` so that Δg_k(θ) = 0 at every target (T_k, P_k)."""

    def __init__(
        self,
        model: torch.nn.Module,
        targets: Sequence[TransitionTarget],
        anchors: Sequence[Anchor],
        *,
        optimizer: str = "gauss_newton",
        lr: float = 0.01,
        relative_lr: bool = True,
        damping: float = 1e-3,
        max_step: float = 0.02,
        trainable: Sequence[str] | None = None,
        step_scales: dict[str, float] | None = None,
        pullback_weight: float = 0.0,
        offset_weight_decay: float = 0.0,
        distill_weight: float = 0.0,
        ess_threshold: float = 0.9,
        converged_fraction: float = 0.5,
        patience: int = 3,
        chunk_frames: int = 16,
        max_nonfinite_steps: int = 3,
        min_valid_fraction: float = 0.5,
        on_phase_change: str = "skip",
        max_phase_resamples: int = 1,
        mean_energy_gauge: bool = False,
        confirm_convergence: bool = True,
        link_error_fraction: float | None = 0.1,
    ) -> None:
        super().__init__()
        check_loss_settings(
            {k: v for k, v in locals().items() if k not in ("self", "model", "targets", "anchors")}
        )
        if len(targets) != len(anchors):
            raise ValueError("one anchor per target")
        self.model = model
        self.targets = list(targets)
        self.anchors = list(anchors)
        self.trainable = select_trainable(model, trainable)
        self.automatic_optimization = False
        self.optimizer_name = optimizer
        self.damping = float(damping)
        self.max_step = float(max_step)
        self.lr = float(lr)
        self.relative_lr = bool(relative_lr)
        self.pullback_weight = float(pullback_weight)
        self.offset_weight_decay = float(offset_weight_decay)
        self.distill_weight = float(distill_weight)
        self.ess_threshold = float(ess_threshold)
        self.converged_fraction = float(converged_fraction)
        self.patience = int(patience)
        self.chunk_frames = int(chunk_frames)
        self.max_nonfinite_steps = int(max_nonfinite_steps)
        self.nonfinite_steps = 0
        self.min_valid_fraction = float(min_valid_fraction)
        self.on_phase_change = on_phase_change
        self.max_phase_resamples = int(max_phase_resamples)
        self.mean_energy_gauge = bool(mean_energy_gauge)
        self.confirm_convergence = bool(confirm_convergence)
        self.link_error_fraction = link_error_fraction
        self._seen_rounds: dict[str, int] = {}  # each ensemble's chain round at the last step
        self._link_ratio: float | None = None  # new links' largest error / (fraction·tol)
        self._confirm_pending = False  # re-sample every state point before the next estimate
        self.fresh_frames = False  # whether the last estimate came from frames sampled at θ
        self.phase_resamples: dict[str, int] = {}
        self.skipped: list[str] = []  # targets left out of the current step
        self._errors: dict[str, float] = {}  # standard error of each ensemble's change
        self.theta0 = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.scales = parameter_scales(model)
        for pattern, factor in (step_scales or {}).items():
            matched = [n for n in self.scales if fnmatch.fnmatch(n, pattern)]
            if not matched or not factor > 0:
                raise ValueError(
                    f"step_scales: {pattern!r} must match a parameter and be > 0 "
                    f"(parameters: {list(self.scales)})"
                )
            for name in matched:
                self.scales[name] = self.scales[name] * float(factor)
        self.pairs = [(ensemble_name(t, t.phase_a), ensemble_name(t, t.phase_b)) for t in targets]
        self.register_buffer(
            "anchor_eV", torch.tensor([a.delta_g_eV for a in anchors], dtype=torch.float64)
        )
        self.register_buffer(
            "delta_s", torch.tensor([a.delta_s_eV_per_K for a in anchors], dtype=torch.float64)
        )
        self.register_buffer(
            "tolerance_eV",
            torch.tensor([t.tolerance_K for t in targets], dtype=torch.float64) * self.delta_s,
        )
        self._converged_steps = 0
        self.history: list[dict] = []
        #: gauss_newton: largest ‖δu‖_∞ of the next step (≤ max_step), shrunk when a step
        #: did much worse on the same frames than its linear model promised
        self.trust_radius = self.max_step
        self._last_step: dict | None = None

    # ------------------------------------------------------------------ helpers
    def reweighted_change(self, ensemble) -> torch.Tensor:
        """[G(θ) − G(θ₀)]/N of one ensemble at the live θ (eV/atom, differentiable)."""
        return reweighted_gibbs_change(
            self.model, ensemble, chunk_frames=self.chunk_frames
        ).delta_g_eV

    def _lost_phase(self, datamodule) -> list[str]:
        """Ensembles with fewer than ``min_valid_fraction`` of their frames in their phase.

        Each gets up to ``max_phase_resamples`` fresh samplings from its target's starting
        structure; one still lost then either stops the run (``on_phase_change="stop"``)
        or has its target left out of this step with a warning (``"skip"``).
        """

        def lost(name: str) -> bool:
            e = datamodule.ensembles[name]
            return e.n_valid() < max(2, self.min_valid_fraction * e.frames.n_frames)

        names = [n for n in datamodule.ensembles if lost(n)]
        retry = [n for n in names if self.phase_resamples.get(n, 0) < self.max_phase_resamples]
        if retry:
            for name in retry:
                self.phase_resamples[name] = self.phase_resamples.get(name, 0) + 1
            log.warning("%s left their phase: sampling again from the start structure", retry)
            datamodule.sample(self.model, retry, cold=True)
            names = [n for n in names if lost(n)]
        for name in names:
            e = datamodule.ensembles[name]
            why = (
                f"state point {name} kept {e.n_valid()}/{e.frames.n_frames} frames in the "
                f"{e.phase} phase at {e.temperature_K:g} K, {e.pressure_GPa:g} GPa (the phase "
                "check flagged the rest: the phase melted, froze or transformed)"
            )
            if self.on_phase_change == "stop":
                raise RuntimeError(
                    f"target {e.target}: {why}. Check the structure and (T, P), or set "
                    "loss.on_phase_change=skip to leave the target out"
                )
            log.warning("target %s skipped this step: %s", e.target, why)
        return names

    def _changes(self, datamodule) -> tuple[dict, dict]:
        """Reweighted [G(θ) − G(θ₀)]/N of every ensemble; re-sample those with low ESS.

        Ensembles that left their phase contribute a constant 0 and their targets are
        recorded in ``self.skipped`` (see :meth:`_lost_phase`).
        """
        lost = set(self._lost_phase(datamodule))
        if self._confirm_pending:
            kept = [n for n in datamodule.ensembles if n not in lost]
            log.info("converged on fitted frames: sampling %d state points afresh", len(kept))
            with torch.enable_grad():  # MD with autograd forces (MACE)
                datamodule.sample(self.model, kept)
            self._confirm_pending = False
        self.skipped = sorted({datamodule.ensembles[n].target for n in lost})
        if len(self.skipped) == len(self.targets):
            raise RuntimeError(
                f"every target left its phase ({', '.join(self.skipped)}): nothing to fit"
            )
        changes, ess, self._errors = {}, {}, {}
        for name, ensemble in datamodule.ensembles.items():
            if name in lost:
                changes[name] = torch.zeros((), dtype=torch.float64)
                ess[name], self._errors[name] = float("nan"), 0.0
                continue
            rg = reweighted_gibbs_change(self.model, ensemble, chunk_frames=self.chunk_frames)
            changes[name], ess[name], self._errors[name] = (
                rg.delta_g_eV,
                rg.relative_ess,
                rg.error_eV,
            )
        low = [name for name, value in ess.items() if value < self.ess_threshold]
        if low:
            log.info("ESS below %.2f for %s: re-sampling", self.ess_threshold, ", ".join(low))
            with torch.enable_grad():  # MD with autograd forces (MACE), also from estimate()
                datamodule.sample(self.model, low)
            for name in low:
                ensemble = datamodule.ensembles[name]
                rg = reweighted_gibbs_change(self.model, ensemble, chunk_frames=self.chunk_frames)
                changes[name], ess[name] = rg.delta_g_eV, rg.relative_ess
                self._errors[name] = rg.error_eV
        self.fresh_frames = all(
            self._sampled_at_current_theta(datamodule.ensembles[n])
            for n in datamodule.ensembles
            if n not in lost
        )
        return changes, ess

    def _sampling_rounds(self) -> int | None:
        """The datamodule's sampling-round counter (None without a Trainer: never judged)."""
        trainer = self._trainer  # Lightning's property raises when no Trainer is attached
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        rounds = getattr(datamodule, "sampling_rounds", None)
        return None if rounds is None else int(rounds)

    def _new_link_error_ratio(self, datamodule) -> float | None:
        """Largest error of the chain links made since the last step, per target, over
        ``link_error_fraction``·tol (the phases' link errors in quadrature); None: no new link."""
        ensembles = getattr(datamodule, "ensembles", {})
        worst = None
        for k, pair in enumerate(self.pairs):
            variance, new = 0.0, False
            for name in pair:
                e = ensembles.get(name)
                if e is None or e.round <= self._seen_rounds.get(name, 0) or not e.history:
                    continue
                new = True
                variance += (1e-3 * float(e.history[-1]["error_meV"])) ** 2
            if new and self.link_error_fraction:
                allowed = self.link_error_fraction * float(self.tolerance_eV[k])
                ratio = math.sqrt(variance) / allowed
                worst = ratio if worst is None else max(worst, ratio)
        self._seen_rounds = {name: int(e.round) for name, e in ensembles.items()}
        return worst

    def _sampled_at_current_theta(self, ensemble) -> bool:
        """Whether ``ensemble`` was sampled with the live trainable parameters (no fit since)."""
        return all(
            torch.equal(p.detach(), ensemble.reference_params[n].to(p.device))
            for n, p in self._trainable_parameters()
        )

    def _reweighting_errors(self) -> list[float]:
        """Per target, √(σ_A² + σ_B²) (eV/atom) of its two ensembles' reweighted changes, as
        the last :meth:`_changes` left them."""
        return [math.hypot(self._errors[a], self._errors[b]) for a, b in self.pairs]

    def estimate(self) -> dict:
        """Current Δg_k (eV/atom), implied T*_k (K) and ESS, without a gradient step.

        Errors: ``reweighting_error_eV`` is that of the reweighted change alone,
        √(σ_A² + σ_B²) of the two phases' chains (BAR per re-sampling and this FEP, with the
        frames' statistical inefficiency); ``implied_T_error_K`` adds the anchor's error:
        √(σ_anchor² + σ_A² + σ_B²)/Δs.
        """
        with torch.no_grad():
            changes, ess = self._changes(self.trainer.datamodule)
            dg = delta_g_estimates(changes, anchors_eV=self.anchor_eV, pairs=self.pairs)
        chain = self._reweighting_errors()
        return {
            "delta_g_eV": dg.tolist(),
            "reweighting_error_eV": chain,
            "implied_T_K": [
                math.nan if t.name in self.skipped else t.temperature_K + float(d) / float(s)
                for t, d, s in zip(self.targets, dg, self.delta_s, strict=True)
            ],
            "implied_T_error_K": [
                math.nan if t.name in self.skipped else math.hypot(a.delta_g_error_eV, c) / float(s)
                for t, a, c, s in zip(self.targets, self.anchors, chain, self.delta_s, strict=True)
            ],
            "ess": ess,
        }

    # ---------------------------------------------------------------- Lightning
    def on_fit_start(self) -> None:
        datamodule = self.trainer.datamodule
        missing = [name for name in datamodule.points if name not in datamodule.ensembles]
        if missing:
            datamodule.sample(self.model, missing)

    def objective(
        self, changes: dict[str, torch.Tensor], datamodule
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, its target part Σ_k (Δg_k/tol_k)², Δg_k) from the reweighted changes.

        loss = Σ_k (Δg_k/tol_k)² + λ_sp · L2-SP(θ, θ₀) + λ_d · distillation(θ, θ₀);
        differentiable in θ (its gradient is the reweighted ⟨∂U/∂θ⟩ chain).
        """
        dg = delta_g_estimates(changes, anchors_eV=self.anchor_eV, pairs=self.pairs)
        # skipped targets (a phase lost) contribute nothing this step
        active = torch.tensor(
            [t.name not in self.skipped for t in self.targets], dtype=dg.dtype, device=dg.device
        )
        loss_targets = transition_loss(dg * active, self.tolerance_eV)
        loss = loss_targets
        if self.pullback_weight > 0:
            loss = loss + self.pullback_weight * l2_sp(self.model, self.theta0, self.scales)
        if self.distill_weight > 0:
            loss = loss + self.distill_weight * self._distillation(datamodule)
        return loss, loss_targets, dg

    def training_step(self, batch, batch_idx):
        fault_point("between_steps")
        start = time.perf_counter()
        datamodule = self.trainer.datamodule
        sampled_s = datamodule.md_s + datamodule.reweight_s
        changes, ess = self._changes(datamodule)
        self._link_ratio = self._new_link_error_ratio(datamodule)
        loss, loss_targets, dg = self.objective(changes, datamodule)
        if not bool(torch.isfinite(loss)):
            return self._skip_nonfinite(loss, dg, ess)
        shift_K = (dg / self.delta_s).detach()
        metrics = {"loss": loss.detach(), "loss_targets": loss_targets.detach()}
        nan = torch.tensor(float("nan"), dtype=torch.float64)
        chain = self._reweighting_errors()
        for k, target in enumerate(self.targets):
            skipped = target.name in self.skipped
            metrics[f"dg_meV/{target.name}"] = nan if skipped else 1e3 * dg[k].detach()
            # the anchor's error with the reweighting chain's: at step 0 the chain adds
            # nothing, and Δg is known as well as the anchor measured it
            total = math.hypot(self.anchors[k].delta_g_error_eV, chain[k])
            metrics[f"dg_error_meV/{target.name}"] = nan if skipped else 1e3 * total
            metrics[f"T_shift_K/{target.name}"] = nan if skipped else shift_K[k]
            metrics[f"T_implied_K/{target.name}"] = (
                nan if skipped else target.temperature_K + shift_K[k]
            )
        metrics["skipped_targets"] = float(len(self.skipped))
        for name, value in ess.items():
            metrics[f"ess/{name}"] = value
        metrics["md_restarts"] = float(len(getattr(datamodule, "md_events", [])))
        metrics["resamplings"] = float(datamodule.resamplings)
        metrics["md_steps"] = float(datamodule.md_steps)
        metrics["fresh_frames"] = float(self.fresh_frames)
        if self.optimizer_name == "gauss_newton":
            metrics["trust_radius"] = self.trust_radius
            metrics["chain_link_error"] = nan if self._link_ratio is None else self._link_ratio
        for name, p in self.model.named_parameters():
            if p.numel() == 1 and name in self.trainable:
                metrics[f"param/{name}"] = p.detach().double().reshape(())
        self.log_dict(
            {k: torch.as_tensor(v, dtype=torch.float64) for k, v in metrics.items()},
            on_step=True,
            on_epoch=False,
            batch_size=1,
        )
        row = {k: float(v) for k, v in metrics.items()}
        row["step"] = int(self.global_step)
        self.history.append(row)
        self.nonfinite_steps = 0
        if self._converged(dg):
            log.info(
                "all targets within %.2f of their tolerance%s: stopping",
                self.converged_fraction,
                " on frames sampled at this θ" if self.confirm_convergence else "",
            )
            self.trainer.should_stop = True
            return loss.detach()  # no update: the model is the one just estimated
        good = {n: p.detach().clone() for n, p in self._trainable_parameters()}
        update_start = time.perf_counter()
        self._update(loss, dg, changes)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        # wall times (logged, not kept in the history: a resumed run must equal the original)
        timing = {
            "time/resampling_s": datamodule.md_s + datamodule.reweight_s - sampled_s,
            "time/update_s": time.perf_counter() - update_start,
            "time/step_s": time.perf_counter() - start,
        }
        self.log_dict(
            {k: torch.tensor(v, dtype=torch.float64) for k, v in timing.items()},
            on_step=True,
            on_epoch=False,
            batch_size=1,
        )
        broken = [n for n, p in self._trainable_parameters() if not bool(torch.isfinite(p).all())]
        if broken:
            with torch.no_grad():
                for n, p in self._trainable_parameters():
                    p.copy_(good[n])
            log.error("step %d made %s non-finite: restored", self.global_step, broken)
        return loss.detach()

    def _converged(self, dg: torch.Tensor) -> bool:
        """Count this step's estimate into the convergence streak; True: stop now.

        A streak of ``patience`` estimates within ``converged_fraction``·tol stops the run,
        with ``confirm_convergence`` only if this one came from fresh frames; otherwise the
        next step re-samples every state point and decides (streak kept at patience − 1).
        """
        active = [k for k, t in enumerate(self.targets) if t.name not in self.skipped]
        ratio = (dg.detach()[active].abs() / self.tolerance_eV[active]).max()
        if self.skipped:
            ratio = torch.tensor(float("inf"))  # not converged while a target is left out
        self._converged_steps = self._converged_steps + 1 if ratio < self.converged_fraction else 0
        if self._converged_steps < self.patience:
            return False
        if not self.confirm_convergence or self.fresh_frames:
            return True
        self._confirm_pending = True
        self._converged_steps = self.patience - 1
        return False

    def _skip_nonfinite(self, loss: torch.Tensor, dg: torch.Tensor, ess: dict) -> None:
        """A NaN/inf loss: no update (the parameters stay the last good ones), report, and
        stop after ``max_nonfinite_steps`` such steps in a row."""
        self.nonfinite_steps += 1
        bad = [
            t.name for t, d in zip(self.targets, dg.detach(), strict=True) if not torch.isfinite(d)
        ]
        message = (
            f"step {self.global_step}: loss is {float(loss)} (non-finite Δg for "
            f"{', '.join(bad) or 'no target: the regulariser'}; ESS {ess}); the step is skipped "
            "and the parameters kept"
        )
        log.error(message)
        self.history.append({"step": int(self.global_step), "skipped": 1.0})
        if self.nonfinite_steps >= self.max_nonfinite_steps:
            raise RuntimeError(
                f"{self.nonfinite_steps} non-finite losses in a row; last: {message}. The last "
                "good parameters are in the last checkpoint"
            )
        return None

    def _trainable_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in self.model.named_parameters() if n in self.trainable]

    def _update(
        self, loss: torch.Tensor, dg: torch.Tensor, changes: dict[str, torch.Tensor]
    ) -> None:
        """One optimizer step: Adam on the loss, or the minimal-change Gauss–Newton step."""
        optimizer = self.optimizers()
        optimizer.zero_grad()
        if self.optimizer_name == "adam":
            self.manual_backward(loss)
            fault_point("optimizer_step")
            optimizer.step()
            if self.offset_weight_decay > 0:
                # decoupled weight decay of the offset δ = θ − θ₀ (AdamW on δ, as in the
                # paper): δ ← δ − lr·wd·δ after the Adam step
                with torch.no_grad():
                    for group in optimizer.param_groups:
                        for p in group["params"]:
                            theta0 = self.theta0[group["name"]].to(p)
                            p.sub_(group["lr"] * self.offset_weight_decay * (p - theta0))
            return
        params = self._trainable_parameters()
        active = torch.tensor(
            [t.name not in self.skipped for t in self.targets], dtype=dg.dtype, device=dg.device
        )
        residuals = dg * active / self.tolerance_eV
        if self.mean_energy_gauge:
            kept = [c for c in changes.values() if c.requires_grad]  # not lost
            if kept:
                gauge = torch.stack(kept).mean() / self.tolerance_eV.mean()
                residuals = torch.cat([residuals, gauge.reshape(1).to(residuals)])
        rows = []
        for k in range(len(residuals)):
            grads = torch.autograd.grad(
                residuals[k], [p for _, p in params], retain_graph=True, allow_unused=True
            )
            rows.append(
                torch.cat(
                    [
                        (torch.zeros_like(p) if g is None else g * self.scales[n].to(g)).flatten()
                        for (n, p), g in zip(params, grads, strict=True)
                    ]
                ).double()
            )
        jac = torch.stack(rows)  # ∂r/∂u, u = (θ − θ₀)/s
        u = torch.cat(
            [
                ((p.detach() - self.theta0[n].to(p)) / self.scales[n].to(p)).flatten()
                for n, p in params
            ]
        ).double()
        r = residuals.detach().double()
        m = jac @ jac.T
        # λ from the targets' rows: the gauge row's scale (every phase's whole energy shift)
        # is orders of magnitude larger, and would otherwise damp the targets away
        k = len(self.targets)
        lam = self.damping * float(torch.trace(m[:k, :k])) / k + 1e-30
        du = -u - jac.T @ torch.linalg.solve(
            m + lam * torch.eye(len(r), dtype=m.dtype), r - jac @ u
        )
        k_r = r[:k]
        rounds = self._sampling_rounds()
        last = self._last_step
        if self._link_ratio is not None:  # new frames: judge the chain links they cost
            self.trust_radius = link_error_radius(
                self.trust_radius,
                link_error=self._link_ratio,
                allowed_error=1.0,
                max_step=self.max_step,
            )
            self._link_ratio = None
        elif last is not None and rounds is not None and last["round"] == rounds:  # same frames
            self.trust_radius = trust_radius_update(
                self.trust_radius,
                reduction=last["residual_sq"] - float(k_r @ k_r),
                predicted_reduction=last["residual_sq"] - last["predicted_sq"],
                step_size=last["size"],
                max_step=self.max_step,
            )
        largest = float(du.abs().max())
        if largest > self.trust_radius:
            du = du * (self.trust_radius / largest)
        predicted = k_r + jac[:k] @ du  # the targets' linearised residuals after the step
        self._last_step = {
            "round": rounds,
            "residual_sq": float(k_r @ k_r),
            "predicted_sq": float(predicted @ predicted),
            "size": float(du.abs().max()),
        }
        offset = 0
        for n, p in params:
            size = p.numel()
            # SGD with lr = 1 applies θ ← θ − grad, so grad = −δθ = −s·δu
            p.grad = -(du[offset : offset + size].view_as(p) * self.scales[n]).to(p)
            offset += size
        fault_point("optimizer_step")
        optimizer.step()

    def _distillation(self, datamodule) -> torch.Tensor:
        """Energy distillation to θ₀ on the stored frames (per atom, in units of kT)."""
        from phasetune.learn.difftre import _energies_with, energies_on_frames

        terms = []
        for ensemble in datamodule.ensembles.values():
            if ensemble.theta0_energy is None:
                ensemble.theta0_energy = _energies_with(self.model, self.theta0, ensemble)
            u = energies_on_frames(self.model, ensemble, chunk_frames=self.chunk_frames)
            diff = (u - ensemble.theta0_energy.to(u)) / (ensemble.n_atoms * ensemble.kT_eV)
            terms.append((diff**2).mean())
        return torch.stack(terms).mean()

    def configure_optimizers(self):
        if self.optimizer_name == "gauss_newton":
            # applies the step computed in _update (grad = −δθ), and counts optimizer steps
            return torch.optim.SGD([p for _, p in self._trainable_parameters()], lr=1.0)
        groups = []
        for name, p in self.model.named_parameters():
            if name in self.trainable:
                lr = self.lr * float(self.scales[name]) if self.relative_lr else self.lr
                groups.append({"params": [p], "lr": lr, "name": name})
        return torch.optim.Adam(groups)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["phasetune"] = {
            "theta0": self.theta0,
            "scales": self.scales,
            "trainable": self.trainable,
            "anchors": [a.__dict__ for a in self.anchors],
            "targets": [t.as_dict() for t in self.targets],
            "converged_steps": self._converged_steps,
            "confirm_pending": self._confirm_pending,
            "trust_radius": self.trust_radius,
            "last_step": self._last_step,
            "seen_rounds": self._seen_rounds,
            "nonfinite_steps": self.nonfinite_steps,
            "phase_resamples": self.phase_resamples,
            "history": self.history,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        extra = checkpoint.get("phasetune", {})
        self.theta0 = extra.get("theta0", self.theta0)
        self.scales = extra.get("scales", self.scales)
        self._converged_steps = int(extra.get("converged_steps", 0))
        self._confirm_pending = bool(extra.get("confirm_pending", False))
        self.trust_radius = float(extra.get("trust_radius", self.max_step))
        self._last_step = extra.get("last_step")
        self._seen_rounds = dict(extra.get("seen_rounds", {}))
        self.nonfinite_steps = int(extra.get("nonfinite_steps", 0))
        self.phase_resamples = dict(extra.get("phase_resamples", {}))
        self.history = list(extra.get("history", []))
