"""Re-sampling policy: which state points are sampled again before an optimizer step.

One owner for every decision that draws new frames (the DataModule draws them and chains
their free energies; :class:`Resampling` decides when), run by Lightning as a callback
before each ``training_step``, which then receives a :class:`StepBatch` with everything the
loss needs:

* **first sampling** of every state point (``on_fit_start``);
* **lost phase**: an ensemble with fewer than ``min_valid_fraction`` of its frames in its
  phase gets up to ``max_phase_resamples`` fresh samplings from its target's start structure;
  one still lost either stops the run (``on_phase_change="stop"``) or has its target left out
  of the step with a warning (``"skip"``);
* **effective sample size**: an ensemble whose relative ESS at the live θ,
  N_eff/N = (Σw)²/(N Σw²) with w ∝ exp(−β[U_θ − U_ref]), is below ``ess_threshold`` is
  sampled again at θ (warm-started) and chained;
* **convergence confirmation**: when the module reports a converged streak reached on
  frames it was fitted to (``training_step`` returns ``confirm_convergence``), every state
  point is sampled afresh before the next step;
* **chain-link errors**: the new links' errors, per target in units of its tolerance, are
  handed to an optimizer that judges them (``on_new_frames``, the Gauss–Newton trust radius).

The reweighted changes [G(θ) − G(θ₀)]/N are computed here (they give the ESS) and passed on
with their autograd graph, so each step reweights every ensemble once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import pytorch_lightning as pl
import torch

from phasetune.learn.checks import check_choice, check_number
from phasetune.learn.distributed import (
    any_across,
    disable_gradient_averaging,
    gather_items,
    gather_mapping,
)

#: what to do when a state point keeps too few frames in its phase
PHASE_CHANGE_POLICIES = ("skip", "stop")

log = logging.getLogger(__name__)


class StepBatch:
    """What one optimizer step works on (filled by :meth:`Resampling.prepare`).

    ``changes``: ensemble name → [G(θ) − G(θ₀)]/N (eV/atom; differentiable for the ensembles
    this process reweights, a number for those of other DDP ranks; 0 for a lost ensemble), in
    the run's order of state points; ``ess`` and ``errors`` (eV/atom) per ensemble; ``lost``:
    ensembles that lost their phase; ``skipped``: targets left out (a phase lost);
    ``ensembles``: this process's ensembles; ``fresh_frames``: every kept ensemble was
    sampled at the live θ;
    ``new_frames`` and ``link_error`` (tolerance units, None: no new link): what changed since
    the last step; ``counters``: the DataModule's sampling totals; ``sampling_s``: wall
    seconds this preparation spent in MD and chaining.
    """

    def __init__(self, step: int = 0) -> None:
        self.step = step
        self.ensembles: dict = {}
        self.changes: dict[str, torch.Tensor] = {}
        self.ess: dict[str, float] = {}
        self.errors: dict[str, float] = {}
        self.skipped: list[str] = []
        self.lost: set[str] = set()
        self.fresh_frames = False
        self.new_frames = False
        self.link_error: float | None = None
        self.counters: dict[str, float] = {}
        self.sampling_s = 0.0


def new_link_error(
    ensembles: dict, pairs: Sequence[tuple[str, str]], tolerances_eV: Sequence[float], seen: dict
) -> float | None:
    """Largest error of the chain links made since ``seen`` (name → chain round), per target
    √(σ_A² + σ_B²) of its phases' newest links over its tolerance; None: no new link.
    ``seen`` is updated to the ensembles' current rounds."""
    worst = None
    for (a, b), tolerance in zip(pairs, tolerances_eV, strict=True):
        variance, new = 0.0, False
        for name in (a, b):
            e = ensembles.get(name)
            if e is None or e.round <= seen.get(name, 0) or not e.history:
                continue
            new = True
            variance += (1e-3 * float(e.history[-1]["error_meV"])) ** 2
        if new:
            ratio = math.sqrt(variance) / float(tolerance)
            worst = ratio if worst is None else max(worst, ratio)
    seen.clear()
    seen.update({name: int(e.round) for name, e in ensembles.items()})
    return worst


class Resampling(pl.Callback):
    """Decides and triggers re-sampling before each step (module docstring)."""

    def __init__(
        self,
        *,
        ess_threshold: float = 0.9,
        min_valid_fraction: float = 0.5,
        on_phase_change: str = "skip",
        max_phase_resamples: int = 1,
    ) -> None:
        check_number("ess_threshold", ess_threshold, low=0.0, low_ok=False, high=1.0)
        check_number("min_valid_fraction", min_valid_fraction, low=0.0, low_ok=False, high=1.0)
        check_choice("on_phase_change", on_phase_change, PHASE_CHANGE_POLICIES)
        check_number("max_phase_resamples", max_phase_resamples, low=0, integer=True)
        self.ess_threshold = float(ess_threshold)
        self.min_valid_fraction = float(min_valid_fraction)
        self.on_phase_change = on_phase_change
        self.max_phase_resamples = int(max_phase_resamples)
        self.phase_resamples: dict[str, int] = {}
        self.confirm_pending = False  # sample every state point before the next step
        self.seen_rounds: dict[str, int] = {}  # each ensemble's chain round at the last step
        self.last_samplings: dict[str, int] | None = None  # sampling counts at the last step

    # ------------------------------------------------------------------ policy
    def _lost_phase(self, datamodule, model: torch.nn.Module) -> list[str]:
        """Ensembles with fewer than ``min_valid_fraction`` of their frames in their phase,
        after their fresh samplings (the policy of the module docstring)."""

        def lost(name: str) -> bool:
            e = datamodule.ensembles[name]
            return e.n_valid() < max(2, self.min_valid_fraction * e.frames.n_frames)

        names = [n for n in datamodule.ensembles if lost(n)]
        retry = [n for n in names if self.phase_resamples.get(n, 0) < self.max_phase_resamples]
        if retry:
            for name in retry:
                self.phase_resamples[name] = self.phase_resamples.get(name, 0) + 1
            log.warning("%s left their phase: sampling again from the start structure", retry)
            with torch.enable_grad():  # MD with autograd forces (MACE)
                datamodule.sample(model, retry, cold=True)
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
                    "resampling.on_phase_change=skip to leave the target out"
                )
            log.warning("target %s skipped this step: %s", e.target, why)
        return names

    def prepare(
        self, datamodule, module, batch: StepBatch | None = None, *, differentiable: bool = True
    ) -> StepBatch:
        """Re-sample what the policy asks for, then reweight every ensemble to the live θ of
        ``module`` (a :class:`~phasetune.learn.module.DiffTReModule`); fills ``batch``."""
        batch = StepBatch() if batch is None else batch
        md_before = datamodule.md_s + datamodule.reweight_s
        model = module.model
        lost = set(self._lost_phase(datamodule, model))
        if self.confirm_pending:
            kept = [n for n in datamodule.ensembles if n not in lost]
            log.info("converged on fitted frames: sampling %d state points afresh", len(kept))
            with torch.enable_grad():
                datamodule.sample(model, kept)
            self.confirm_pending = False
        batch.lost = set(gather_items(sorted(lost)))
        batch.skipped = sorted(set(gather_items([datamodule.ensembles[n].target for n in lost])))
        if len(batch.skipped) == len(module.targets):
            raise RuntimeError(
                f"every target left its phase ({', '.join(batch.skipped)}): nothing to fit"
            )
        with torch.set_grad_enabled(differentiable):
            for name, ensemble in datamodule.ensembles.items():
                if name in lost:
                    batch.changes[name] = torch.zeros((), dtype=torch.float64)
                    batch.ess[name], batch.errors[name] = math.nan, 0.0
                    continue
                self._reweight(module, ensemble, batch)
            low = [n for n, value in batch.ess.items() if value < self.ess_threshold]
            if low:
                log.info("ESS below %.2f for %s: re-sampling", self.ess_threshold, ", ".join(low))
                with torch.enable_grad():  # MD with autograd forces (MACE)
                    datamodule.sample(model, low)
                for name in low:
                    self._reweight(module, datamodule.ensembles[name], batch)
        self._gather(datamodule, batch)
        live = {n: p.detach() for n, p in module.trainable_parameters()}
        fresh = all(
            all(torch.equal(p, e.reference_params[n].to(p.device)) for n, p in live.items())
            for name, e in datamodule.ensembles.items()
            if name not in lost
        )
        batch.fresh_frames = not any_across(not fresh)
        batch.ensembles = datamodule.ensembles
        errors = gather_items(
            [
                new_link_error(
                    datamodule.ensembles,
                    module.pairs,
                    module.tolerance_eV.tolist(),
                    self.seen_rounds,
                )
            ]
        )
        errors = [e for e in errors if e is not None]
        batch.link_error = max(errors) if errors else None
        samplings = gather_mapping(datamodule.samplings)
        batch.new_frames = samplings != self.last_samplings
        self.last_samplings = samplings
        counts = gather_items(
            [[len(datamodule.md_events), datamodule.resamplings, datamodule.md_steps]]
        )
        batch.counters = {
            key: float(sum(c[i] for c in counts))
            for i, key in enumerate(("md_restarts", "resamplings", "md_steps"))
        }
        batch.sampling_s = datamodule.md_s + datamodule.reweight_s - md_before
        return batch

    @staticmethod
    def _gather(datamodule, batch: StepBatch) -> None:
        """Under DDP: the other ranks' changes (as numbers), ESS and errors, so that every
        rank holds every ensemble's, in the run's order of state points."""
        values = gather_mapping({n: float(c.detach()) for n, c in batch.changes.items()})
        batch.ess = gather_mapping(batch.ess)
        batch.errors = gather_mapping(batch.errors)
        batch.changes = {
            name: batch.changes[name]
            if name in batch.changes
            else torch.tensor(values[name], dtype=torch.float64)
            for name in datamodule.all_points
            if name in values
        }

    @staticmethod
    def _reweight(module, ensemble, batch: StepBatch) -> None:
        rg = module.reweight(ensemble)
        batch.changes[ensemble.name] = rg.delta_g_eV
        batch.ess[ensemble.name] = rg.relative_ess
        batch.errors[ensemble.name] = rg.error_eV

    # --------------------------------------------------------------- Lightning
    def on_fit_start(self, trainer, pl_module) -> None:
        disable_gradient_averaging(trainer)
        datamodule = trainer.datamodule
        missing = [name for name in datamodule.points if name not in datamodule.ensembles]
        if missing:
            with torch.enable_grad():
                datamodule.sample(pl_module.model, missing)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        started = time.perf_counter()
        self.prepare(trainer.datamodule, pl_module, batch)
        if batch.new_frames:
            for optimizer in trainer.optimizers:
                notify = getattr(optimizer, "on_new_frames", None)
                if notify is not None:
                    notify(link_error=batch.link_error)
        log.debug("step inputs prepared in %.2f s", time.perf_counter() - started)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if isinstance(outputs, dict) and outputs.get("confirm_convergence"):
            self.confirm_pending = True

    def on_train_end(self, trainer, pl_module) -> None:
        """The trained model's reweighted estimate and the run's totals, while every DDP rank
        is still there to contribute (``pl_module.final_estimate``, ``datamodule.totals``)."""
        datamodule = trainer.datamodule
        batch = self.prepare(datamodule, pl_module, differentiable=False)
        pl_module.final_estimate = pl_module.estimate(batch)
        datamodule.gather_totals()

    def state_dict(self) -> dict:
        return {
            "phase_resamples": gather_mapping(self.phase_resamples),
            "confirm_pending": self.confirm_pending,
            "seen_rounds": gather_mapping(self.seen_rounds),
            "last_samplings": self.last_samplings,
        }

    def load_state_dict(self, state: dict) -> None:
        self.phase_resamples = dict(state.get("phase_resamples", {}))
        self.confirm_pending = bool(state.get("confirm_pending", False))
        self.seen_rounds = dict(state.get("seen_rounds", {}))
        self.last_samplings = state.get("last_samplings")
