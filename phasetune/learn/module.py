"""The LightningModule: the potential and the DiffTRe loss; it steps the optimizer it is given.

Each ``training_step`` receives a :class:`~phasetune.learn.resampling.StepBatch`: the
reweighted changes [G(θ) − G(θ₀)]/N of every ensemble at the live θ, after the re-sampling
that :class:`~phasetune.learn.resampling.Resampling` decided. With residuals
r_k = Δg_k(θ)/tol_k (:func:`~phasetune.learn.difftre.delta_g_estimates`,
tol_k = Δs_k·tolerance_K in eV/atom) and s the RMS of each parameter tensor at θ₀
(times ``step_scales``: a prior on how readily each parameter may change, e.g.
``{sigma: 0.1}`` for LJ at P = 0, where σ cannot move T_m but its noisy reweighted gradient
would otherwise take a share of each step):

* an optimizer that fits residuals (``fits_residuals``; the default
  :class:`~phasetune.learn.optimizers.DampedGaussNewton`) gets them through its closure;
  ``mean_energy_gauge=True`` adds one residual, c(θ)/mean_k(tol_k) with c the mean over all
  ensembles of [G(θ) − G(θ₀)]/N: Δg_k is blind to a shift of every phase's energy per atom,
  so the minimal-change step may shift all of them by hundreds of meV/atom (seen with MACE
  readouts), and every such shift has to be carried through the noisy BAR chains of each
  phase separately. The gauge keeps the mean energy of the sampled states at θ₀'s.
* a loss optimizer (:class:`~phasetune.learn.optimizers.OffsetAdam`, torch's own) minimises

      loss = Σ_k r_k² + λ_sp · mean(((θ − θ₀)/s)²) + λ_d · mean_frames([(U_θ − U_θ₀)/(N kT)]²).

Logged per step: loss, Δg_k (meV/atom) with its error, implied T*_k − T_k (K), ESS per state
point, re-samplings, MD steps. Training stops once every |Δg_k| < ``converged_fraction``·tol_k
for ``patience`` steps. With ``confirm_convergence`` (default) that must hold on frames
sampled at the current θ: the steps since the last re-sampling were fitted to the very frames
that judge them (with few independent frames a fit also follows their noise), so a streak
reached on such frames returns ``confirm_convergence`` (every state point is then sampled
afresh before the next step), and the run stops only if the estimate from the new frames
(their chained offsets alone, no reweighting left) is still within the bound; then no further
update is made, so the reported model is the one that was checked.
"""

from __future__ import annotations

import fnmatch
import logging
import math
import time
from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch

from phasetune.faults import fault_point
from phasetune.learn.anchor import Anchor
from phasetune.learn.checks import check_flag, check_number
from phasetune.learn.data import ensemble_name
from phasetune.learn.difftre import (
    ReweightedGibbs,
    delta_g_estimates,
    l2_sp,
    parameter_scales,
    reweighted_gibbs_change,
    transition_loss,
)
from phasetune.learn.distributed import sum_across
from phasetune.learn.optimizers import DampedGaussNewton
from phasetune.learn.resampling import Resampling, StepBatch
from phasetune.targets import TransitionTarget

log = logging.getLogger(__name__)


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


def check_module_settings(
    *,
    trainable=None,
    step_scales=None,
    pullback_weight=0.0,
    distill_weight=0.0,
    mean_energy_gauge=False,
    chunk_frames=16,
    max_nonfinite_steps=3,
    converged_fraction=0.5,
    patience=3,
    confirm_convergence=True,
) -> dict:
    """The module's loss and convergence settings checked (ValueError naming the first bad
    key), cheap enough to run before any MD; returns the numeric ones and flags, typed.
    ``trainable`` and ``step_scales`` are checked against the model it trains."""
    return {
        "pullback_weight": check_number("pullback_weight", pullback_weight, low=0.0),
        "distill_weight": check_number("distill_weight", distill_weight, low=0.0),
        "mean_energy_gauge": check_flag("mean_energy_gauge", mean_energy_gauge),
        "chunk_frames": int(check_number("chunk_frames", chunk_frames, low=1, integer=True)),
        "max_nonfinite_steps": int(
            check_number("max_nonfinite_steps", max_nonfinite_steps, low=1, integer=True)
        ),
        "converged_fraction": check_number(
            "converged_fraction", converged_fraction, low=0.0, low_ok=False
        ),
        "patience": int(check_number("patience", patience, low=1, integer=True)),
        "confirm_convergence": check_flag("confirm_convergence", confirm_convergence),
    }


class DiffTReModule(pl.LightningModule):
    """Fine-tunes ``model`` so that Δg_k(θ) = 0 at every target (T_k, P_k).

    ``optimizer``: a factory ``(named_parameters, *, theta0, scales, n_targets) → Optimizer``
    (a ``functools.partial`` of a class in :mod:`phasetune.learn.optimizers`; Hydra's
    ``optimizer`` config group gives one).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        targets: Sequence[TransitionTarget],
        anchors: Sequence[Anchor],
        *,
        optimizer: Callable[..., torch.optim.Optimizer] = DampedGaussNewton,
        trainable: Sequence[str] | str | None = None,
        step_scales: dict[str, float] | None = None,
        pullback_weight: float = 0.0,
        distill_weight: float = 0.0,
        mean_energy_gauge: bool = False,
        chunk_frames: int = 16,
        max_nonfinite_steps: int = 3,
        converged_fraction: float = 0.5,
        patience: int = 3,
        confirm_convergence: bool = True,
    ) -> None:
        super().__init__()
        settings = check_module_settings(
            pullback_weight=pullback_weight,
            distill_weight=distill_weight,
            mean_energy_gauge=mean_energy_gauge,
            chunk_frames=chunk_frames,
            max_nonfinite_steps=max_nonfinite_steps,
            converged_fraction=converged_fraction,
            patience=patience,
            confirm_convergence=confirm_convergence,
        )
        for key, value in settings.items():
            setattr(self, key, value)
        if len(targets) != len(anchors):
            raise ValueError("one anchor per target")
        self.model = model
        self.targets = list(targets)
        self.anchors = list(anchors)
        self.trainable = select_trainable(model, trainable)
        self.automatic_optimization = False
        self.optimizer_factory = optimizer
        self.nonfinite_steps = 0
        self.skipped: list[str] = []  # targets left out of the current step
        self.lost: set[str] = set()  # ensembles that lost their phase (this step)
        self.final_estimate: dict | None = None  # set at the end of training (Resampling)
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

    # ------------------------------------------------------------------ helpers
    def reweight(self, ensemble) -> ReweightedGibbs:
        """[G(θ) − G(θ₀)]/N of one ensemble at the live θ (eV/atom, differentiable), its
        relative ESS and error."""
        return reweighted_gibbs_change(self.model, ensemble, chunk_frames=self.chunk_frames)

    def reweighted_change(self, ensemble) -> torch.Tensor:
        """[G(θ) − G(θ₀)]/N of one ensemble at the live θ (eV/atom, differentiable)."""
        return self.reweight(ensemble).delta_g_eV

    def trainable_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        """(name, parameter) of the parameters that train, in the model's order."""
        return [(n, p) for n, p in self.model.named_parameters() if n in self.trainable]

    def _reweighting_errors(self) -> list[float]:
        """Per target, √(σ_A² + σ_B²) (eV/atom) of its two ensembles' reweighted changes."""
        return [math.hypot(self._errors[a], self._errors[b]) for a, b in self.pairs]

    def estimate(self, batch: StepBatch) -> dict:
        """Δg_k (eV/atom), implied T*_k (K) and ESS from a prepared batch, without a step
        (``Resampling.prepare(datamodule, module, differentiable=False)`` gives one).

        Errors: ``reweighting_error_eV`` is that of the reweighted change alone,
        √(σ_A² + σ_B²) of the two phases' chains (BAR per re-sampling and this FEP, with the
        frames' statistical inefficiency); ``implied_T_error_K`` adds the anchor's error:
        √(σ_anchor² + σ_A² + σ_B²)/Δs.
        """
        self.skipped, self._errors, self.lost = list(batch.skipped), dict(batch.errors), batch.lost
        with torch.no_grad():
            dg = delta_g_estimates(batch.changes, anchors_eV=self.anchor_eV, pairs=self.pairs)
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
            "ess": dict(batch.ess),
        }

    # ---------------------------------------------------------------- the loss
    def _active(self, like: torch.Tensor) -> torch.Tensor:
        """1 for each target in this step, 0 for one left out (a phase lost)."""
        return torch.tensor(
            [t.name not in self.skipped for t in self.targets], dtype=like.dtype, device=like.device
        )

    def objective(
        self, changes: dict[str, torch.Tensor], ensembles: dict
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, its target part Σ_k (Δg_k/tol_k)², Δg_k) from the reweighted changes.

        loss = Σ_k (Δg_k/tol_k)² + λ_sp · L2-SP(θ, θ₀) + λ_d · distillation(θ, θ₀);
        differentiable in θ (its gradient is the reweighted ⟨∂U/∂θ⟩ chain). Under DDP the
        value is the whole loss on every rank; the gradient of the target and distillation
        parts is this rank's share (its ensembles), that of the pull-back the whole
        (``self._loss_parts`` keeps them apart for :meth:`step_optimizer`).
        """
        dg = delta_g_estimates(changes, anchors_eV=self.anchor_eV, pairs=self.pairs)
        loss_targets = transition_loss(dg * self._active(dg), self.tolerance_eV)
        shared = torch.zeros((), dtype=loss_targets.dtype)
        share = loss_targets
        if self.pullback_weight > 0:
            shared = self.pullback_weight * l2_sp(self.model, self.theta0, self.scales)
        if self.distill_weight > 0:
            mine = self.distill_weight * self._distillation(ensembles, n_total=len(changes))
            everyone = sum_across(mine.detach())
            share = share + mine + (everyone - mine.detach())
        self._loss_parts = (share, shared)
        return share + shared, loss_targets, dg

    def residuals(self, dg: torch.Tensor, changes: dict[str, torch.Tensor]) -> torch.Tensor:
        """r_k = Δg_k/tol_k (0 for a target left out), plus the gauge row when asked for."""
        residuals = dg * self._active(dg) / self.tolerance_eV
        if self.mean_energy_gauge:
            kept = [c for name, c in changes.items() if name not in self.lost]
            if kept:
                gauge = torch.stack(kept).mean() / self.tolerance_eV.mean()
                residuals = torch.cat([residuals, gauge.reshape(1).to(residuals)])
        return residuals

    # ---------------------------------------------------------------- Lightning
    def training_step(self, batch: StepBatch, batch_idx: int):
        fault_point("between_steps")
        start = time.perf_counter()
        self.skipped, self._errors, self.lost = list(batch.skipped), dict(batch.errors), batch.lost
        loss, loss_targets, dg = self.objective(batch.changes, batch.ensembles)
        if not bool(torch.isfinite(loss)):
            return self._skip_nonfinite(loss, dg, batch.ess)
        optimizer = self.optimizers()
        self._log_step(batch, loss, loss_targets, dg, optimizer)
        stop, confirm = self._converged(dg, fresh=batch.fresh_frames)
        if stop:
            log.info(
                "all targets within %.2f of their tolerance%s: stopping",
                self.converged_fraction,
                " on frames sampled at this θ" if self.confirm_convergence else "",
            )
            self.trainer.should_stop = True
            return {"loss": loss.detach()}  # no update: the model is the one just estimated
        good = {n: p.detach().clone() for n, p in self.trainable_parameters()}
        update_start = time.perf_counter()
        self.step_optimizer(optimizer, loss, dg, batch.changes)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        # wall times (logged, not kept in the history: a resumed run must equal the original)
        timing = {
            "time/resampling_s": batch.sampling_s,
            "time/update_s": time.perf_counter() - update_start,
            "time/step_s": time.perf_counter() - start + batch.sampling_s,
        }
        self.log_dict(
            {k: torch.tensor(v, dtype=torch.float64) for k, v in timing.items()},
            on_step=True,
            on_epoch=False,
            batch_size=1,
        )
        broken = [n for n, p in self.trainable_parameters() if not bool(torch.isfinite(p).all())]
        if broken:
            with torch.no_grad():
                for n, p in self.trainable_parameters():
                    p.copy_(good[n])
            log.error("step %d made %s non-finite: restored", self.global_step, broken)
        return {"loss": loss.detach(), "confirm_convergence": confirm}

    def _log_step(self, batch, loss, loss_targets, dg, optimizer) -> None:
        """The step's metrics to the logger and to ``history`` (one row per step)."""
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
        for name, value in batch.ess.items():
            metrics[f"ess/{name}"] = value
        metrics.update(batch.counters)
        metrics["fresh_frames"] = float(batch.fresh_frames)
        radius = getattr(getattr(optimizer, "optimizer", optimizer), "trust_radius", None)
        if radius is not None:
            metrics["trust_radius"] = radius
            metrics["chain_link_error"] = nan if batch.link_error is None else batch.link_error
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

    def _converged(self, dg: torch.Tensor, *, fresh: bool) -> tuple[bool, bool]:
        """Count this step's estimate into the convergence streak: (stop now, confirm first).

        A streak of ``patience`` estimates within ``converged_fraction``·tol stops the run,
        with ``confirm_convergence`` only if this one came from ``fresh`` frames; otherwise
        every state point is sampled afresh for the next step, which decides (the streak is
        kept at patience − 1).
        """
        active = [k for k, t in enumerate(self.targets) if t.name not in self.skipped]
        ratio = (dg.detach()[active].abs() / self.tolerance_eV[active]).max()
        if self.skipped:
            ratio = torch.tensor(float("inf"))  # not converged while a target is left out
        self._converged_steps = self._converged_steps + 1 if ratio < self.converged_fraction else 0
        if self._converged_steps < self.patience:
            return False, False
        if not self.confirm_convergence or fresh:
            return True, False
        self._converged_steps = self.patience - 1
        return False, True

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

    def step_optimizer(
        self, optimizer, loss: torch.Tensor, dg: torch.Tensor, changes: dict[str, torch.Tensor]
    ) -> None:
        """One step of ``optimizer``: its closure gives the residuals to an optimizer that
        fits them (``fits_residuals``), else sets the loss gradient (torch's convention): the
        gradient of this rank's share summed over the DDP ranks, plus the pull-back's."""
        inner = getattr(optimizer, "optimizer", optimizer)  # Lightning wraps it

        def closure() -> torch.Tensor:
            if getattr(inner, "fits_residuals", False):
                return self.residuals(dg, changes)
            optimizer.zero_grad()
            params = [p for _, p in self.trainable_parameters()]
            share, shared = self._loss_parts
            for part, summed in ((share, True), (shared, False)):
                if not part.requires_grad:
                    continue
                grads = torch.autograd.grad(part, params, retain_graph=True, allow_unused=True)
                flat = torch.cat(
                    [
                        (torch.zeros_like(p) if g is None else g).flatten()
                        for p, g in zip(params, grads, strict=True)
                    ]
                )
                flat = sum_across(flat) if summed else flat  # one exchange for all tensors
                for p, g in zip(params, flat.split([p.numel() for p in params]), strict=True):
                    g = g.view_as(p)
                    p.grad = g if p.grad is None else p.grad + g
            return loss

        fault_point("optimizer_step")
        optimizer.step(closure=closure)

    def _distillation(self, ensembles: dict, *, n_total: int | None = None) -> torch.Tensor:
        """Energy distillation to θ₀ on the stored frames (per atom, in units of kT): the sum
        over ``ensembles`` divided by ``n_total`` (all ensembles of the run; default: these)."""
        from phasetune.learn.difftre import _energies_with, energies_on_frames

        terms = []
        for ensemble in ensembles.values():
            if ensemble.theta0_energy is None:
                ensemble.theta0_energy = _energies_with(self.model, self.theta0, ensemble)
            u = energies_on_frames(self.model, ensemble, chunk_frames=self.chunk_frames)
            diff = (u - ensemble.theta0_energy.to(u)) / (ensemble.n_atoms * ensemble.kT_eV)
            terms.append((diff**2).mean())
        return torch.stack(terms).sum() / (n_total or len(terms))

    def on_fit_start(self) -> None:
        if not any(isinstance(c, Resampling) for c in self.trainer.callbacks):
            raise ValueError(
                "DiffTReModule needs a Resampling callback to prepare its ensembles: "
                "pl.Trainer(callbacks=[Resampling(...)])"
            )

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(
            self.trainable_parameters(),
            theta0=self.theta0,
            scales=self.scales,
            n_targets=len(self.targets),
        )
        if self.mean_energy_gauge and not getattr(optimizer, "fits_residuals", False):
            raise ValueError("loss.mean_energy_gauge needs an optimizer that fits residuals")
        return optimizer

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["phasetune"] = {
            "theta0": self.theta0,
            "scales": self.scales,
            "trainable": self.trainable,
            "anchors": [a.__dict__ for a in self.anchors],
            "targets": [t.as_dict() for t in self.targets],
            "converged_steps": self._converged_steps,
            "nonfinite_steps": self.nonfinite_steps,
            "history": self.history,
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        extra = checkpoint.get("phasetune", {})
        self.theta0 = extra.get("theta0", self.theta0)
        self.scales = extra.get("scales", self.scales)
        self._converged_steps = int(extra.get("converged_steps", 0))
        self.nonfinite_steps = int(extra.get("nonfinite_steps", 0))
        self.history = list(extra.get("history", []))
