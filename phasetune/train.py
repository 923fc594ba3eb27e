"""``phasetune``: fine-tune a potential so its transition temperatures match experiment.

    phasetune                                    # CPU demo: LJ argon → T_m = 83.8 K
    phasetune targets=my_targets model=my_model trainer.max_steps=200
    phasetune -m optimizer.lr=0.01,0.02               # multirun: one output dir + logger per job

``train(cfg)`` is a plain function: anchors (measured, cached), DiffTRe under a Lightning
Trainer, then the trained model's transition temperatures re-measured independently
(coexistence or free energies, never the reweighted estimate) into a before/after table
(``report.csv``, ``report.json``), a phase-diagram plot (``phase_diagram.png``) and the
trained weights (``trained_model.pt``, a state dict: load with ``weights_only=True``).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
import zipfile
from pathlib import Path

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from phasetune.config_check import ConfigError, ensure_writable
from phasetune.configs import restores_process_state, torch_dtype
from phasetune.learn.anchor import TransitionMeasurement, compute_anchors, measure_transitions
from phasetune.learn.checkpoint import AtomicCheckpointIO, previous_path
from phasetune.learn.data import StatePointDataModule
from phasetune.learn.module import DiffTReModule, check_module_settings
from phasetune.learn.optimizers import check_optimizer
from phasetune.learn.progress import steps_progress_bar
from phasetune.learn.validation import diffusion_before_after, plot_diffusion, write_diffusion
from phasetune.preflight import build_settings, check_common
from phasetune.report.plots import plot_ess_history, plot_report
from phasetune.report.rows import format_table, met_verdict, write_report
from phasetune.targets import load_targets
from phasetune.third_party import quiet_lightning

log = logging.getLogger(__name__)


def report_rows(targets, anchors, after, estimates) -> list[dict]:
    """One row per target: experiment, model before, reweighted estimate, re-measured after."""
    rows = []
    for k, (target, anchor, measured) in enumerate(zip(targets, anchors, after, strict=True)):
        t_after = measured.transition_temperature_K
        rows.append(
            {
                "target": target.name,
                "phases": f"{target.phase_a}|{target.phase_b}",
                "pressure_GPa": target.pressure_GPa,
                "experiment_K": target.temperature_K,
                "tolerance_K": target.tolerance_K,
                "before_K": anchor.model_transition_K,
                "before_error_K": anchor.model_transition_error_K,
                "reweighted_K": estimates["implied_T_K"][k],
                "reweighted_error_K": estimates["implied_T_error_K"][k],
                "after_K": t_after,
                "after_error_K": measured.error_K,
                "after_method": measured.method,
                "met": met_verdict(
                    after_K=t_after,
                    after_error_K=measured.error_K,
                    experiment_K=target.temperature_K,
                    tolerance_K=target.tolerance_K,
                ),
                "source": target.source,
            }
        )
    return rows


def log_media(logger, rows: list[dict], images: dict[str, Path]) -> None:
    """To wandb: the phase diagram and ESS plots, and the before/after table of targets."""
    if type(logger).__name__ != "WandbLogger":
        return
    for key, path in images.items():
        if path.exists():
            logger.log_image(key=key, images=[str(path)])
    columns = list(rows[0]) if rows else []
    logger.log_table(key="targets", columns=columns, data=[[r[c] for c in columns] for r in rows])


def _multirun_names() -> tuple[str | None, str | None]:
    """(group, name) of a Hydra multirun job, else (None, None)."""
    try:
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
    except ValueError:  # not under @hydra.main (library use)
        return None, None
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None, None
    group = Path(str(hydra_cfg.sweep.dir)).name
    name = hydra_cfg.job.override_dirname or f"job{hydra_cfg.job.num}"
    return group, name


def make_logger(cfg: DictConfig, output_dir: Path):
    """The configured Lightning logger (False: none). wandb without a reachable server logs
    offline (``wandb sync`` uploads it later) and says so; WANDB_MODE is respected."""
    if not cfg.get("logger"):
        return False
    kwargs = {"save_dir": str(output_dir)}
    if str(cfg.logger.get("_target_", "")).endswith("WandbLogger"):
        from phasetune.config_check import wandb_reachable

        mode = os.environ.get("WANDB_MODE", "").lower()
        offline = bool(cfg.logger.get("offline", False)) or mode in ("offline", "dryrun")
        if mode != "disabled" and not offline and not wandb_reachable():
            message = (
                "wandb: the server cannot be reached (no network?); logging offline to "
                f"{output_dir}/wandb; upload later with `wandb sync {output_dir}/wandb/offline-*`"
            )
            log.warning(message)
            kwargs["offline"] = True
        group, name = _multirun_names()  # one wandb run per job, grouped by sweep
        if group and not cfg.logger.get("group"):
            kwargs["group"] = group
        if name and not cfg.logger.get("name"):
            kwargs["name"] = name
    return instantiate(cfg.logger, **kwargs)


def validate_diffusion(cfg, validation, targets, model_before, model, device, dtype) -> list[dict]:
    """Liquid D before and after fine-tuning at ``validation.diffusion`` (see validation.py)."""
    liquid_targets = [t for t in targets if "liquid" in t.phases]
    if not liquid_targets:
        log.warning("validation.diffusion needs a target with a liquid phase: skipped")
        return []
    settings = instantiate(validation["sampler"]) if "sampler" in validation else None
    settings = settings or instantiate(cfg.sampler)
    rows = diffusion_before_after(
        {"before": model_before, "after": model},
        validation["diffusion"],
        liquid_targets[0].atoms("liquid"),
        settings,
        device=device,
        dtype=dtype,
    )
    for r in rows:
        log.info(
            f"D at {r['temperature_K']:g} K: experiment {r['experiment_m2_per_s']:.3g}, before "
            f"{r['before_m2_per_s']:.3g}, after {r['after_m2_per_s']:.3g} m²/s"
        )
    return rows


def resume_path(cfg: DictConfig, checkpoints: Path) -> str | None:
    """``ckpt_path``: null (fresh), a file, or ``last`` (this run dir's last checkpoint,
    falling back to the one before it when it is unreadable; fresh if there is none)."""
    wanted = cfg.get("ckpt_path")
    if wanted in (None, "", "null"):
        return None
    if wanted == "last":
        last = checkpoints / "last.ckpt"
        if last.exists() or previous_path(last).exists():
            log.info("resuming from %s", last)
            return str(last)
        log.info("ckpt_path=last but %s has no checkpoint: starting fresh", checkpoints)
        return None
    if not Path(wanted).exists():
        raise FileNotFoundError(f"ckpt_path={wanted}: no such checkpoint file")
    return str(wanted)


def resolve_device(cfg: DictConfig) -> str:
    """``device: auto`` → cuda when the Trainer runs on a GPU, else cpu."""
    device = str(cfg.device)
    if device == "auto":
        accelerator = str(cfg.trainer.get("accelerator", "cpu"))
        device = "cuda" if accelerator in ("gpu", "cuda") else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(
            f"device {device!r} requested (trainer=gpu?) but torch sees no CUDA device; "
            "run on a GPU machine or use the default CPU trainer"
        )
    return device


def build_model(cfg: DictConfig, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """``cfg.model`` instantiated; a loader's own error (missing file, offline, unknown
    element or name) is raised as itself, not wrapped in Hydra's InstantiationException."""
    from hydra.errors import InstantiationException

    try:
        return instantiate(cfg.model, device=device, dtype=dtype)
    except InstantiationException as err:
        if isinstance(err.__cause__, (FileNotFoundError, ValueError)):
            raise err.__cause__ from None
        raise


@restores_process_state
def train(cfg: DictConfig, output_dir: str | Path) -> dict:
    """Anchor, fine-tune, re-measure, report. Returns the summary written to summary.json."""
    output_dir = Path(output_dir)
    start = time.perf_counter()
    preflight_train(cfg)
    torch.set_num_threads(int(cfg.threads))
    dtype = torch_dtype(cfg.dtype)
    ensure_writable(output_dir)
    pl.seed_everything(int(cfg.seed), workers=False, verbose=False)
    device = resolve_device(cfg)
    model = build_model(cfg, device, dtype)
    validation = OmegaConf.to_container(cfg.get("validation") or {}, resolve=True)
    model_before = copy.deepcopy(model) if validation.get("diffusion") else None
    targets = load_targets(OmegaConf.to_container(cfg.targets, resolve=True))
    anchor_settings = instantiate(cfg.anchor.settings)
    guesses = dict(cfg.anchor.get("guesses_K") or {})
    unknown = sorted(set(guesses) - {t.name for t in targets})
    if unknown:
        log.warning("anchor.guesses_K names no target: %s (ignored)", unknown)
    timing = {"setup": time.perf_counter() - start}
    anchors = compute_anchors(
        model,
        targets,
        anchor_settings,
        cache_dir=cfg.anchor.cache_dir,
        guesses_K=[guesses.get(t.name) for t in targets],
        device=device,
        dtype=dtype,
    )
    timing["anchors"] = time.perf_counter() - start - sum(timing.values())
    datamodule = StatePointDataModule(
        targets,
        instantiate(cfg.sampler),
        frames_dir=output_dir / "frames",
        warm_equilibration_steps=cfg.get("warm_equilibration_steps"),
        chain=cfg.get("chain", "bar"),
        device=device,
        dtype=dtype,
    )
    module = DiffTReModule(
        model,
        targets,
        anchors,
        optimizer=instantiate(cfg.optimizer),
        **OmegaConf.to_container(cfg.loss),
        **OmegaConf.to_container(cfg.convergence),
    )
    resampling = instantiate(cfg.resampling)
    logger = make_logger(cfg, output_dir)
    checkpoints = output_dir / "checkpoints"
    trainer_kwargs = OmegaConf.to_container(cfg.trainer)
    callbacks = [
        resampling,
        pl.callbacks.ModelCheckpoint(
            dirpath=checkpoints, save_last=True, save_top_k=0, every_n_train_steps=1
        ),
    ]
    if trainer_kwargs.get("enable_progress_bar", True):
        callbacks.append(steps_progress_bar())
    fit_start = time.perf_counter()
    with quiet_lightning():
        trainer = pl.Trainer(
            **trainer_kwargs,
            logger=logger,
            default_root_dir=str(output_dir),
            plugins=[AtomicCheckpointIO()],
            callbacks=callbacks,
        )
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume_path(cfg, checkpoints))
    if not trainer.is_global_zero:  # a DDP rank: rank 0 measures and reports
        return {}
    estimates = module.final_estimate or module.estimate(
        resampling.prepare(datamodule, module, differentiable=False)
    )
    totals = datamodule.totals or datamodule.gather_totals()
    timing["fine_tuning"] = time.perf_counter() - fit_start
    timing["of_which_md"] = datamodule.md_s
    timing["of_which_chaining"] = datamodule.reweight_s
    remeasure_start = time.perf_counter()
    torch.save(model.state_dict(), output_dir / "trained_model.pt")
    after = None
    if cfg.get("remeasure", True):
        try:
            after = measure_transitions(
                model,
                targets,
                anchor_settings,
                guesses_K=estimates["implied_T_K"],
                device=device,
                dtype=dtype,
            )
        except RuntimeError as err:  # the trained model is saved; report what failed
            log.error("re-measuring the trained model failed: %s", err)
    if after is None:
        method = "skipped" if not cfg.get("remeasure", True) else "failed"
        after = [
            TransitionMeasurement(t.name, t.pressure_GPa, math.nan, math.nan, method, False)
            for t in targets
        ]
    timing["remeasure"] = time.perf_counter() - remeasure_start
    rows = report_rows(targets, anchors, after, estimates)
    write_report(rows, output_dir)
    images = {}
    if cfg.plot:
        images["phase_diagram"] = plot_report(
            rows, module.history, output_dir / "phase_diagram.png"
        )
        images["ess_history"] = plot_ess_history(
            module.history, output_dir / "ess_history.png", threshold=resampling.ess_threshold
        )
    diffusion_rows = []
    if model_before is not None:
        diffusion_rows = validate_diffusion(
            cfg, validation, targets, model_before, model, device, dtype
        )
        if diffusion_rows:
            write_diffusion(diffusion_rows, output_dir)
            if cfg.plot:
                images["diffusion"] = plot_diffusion(diffusion_rows, output_dir / "diffusion.png")
    log_media(logger, rows, images)
    summary = {
        "rows": rows,
        "steps": int(trainer.global_step),
        "resamplings": totals["resamplings"],
        "md_steps": totals["md_steps"],
        "atom_steps": totals["atom_steps"],
        "md_events": totals["md_events"],
        # each state point's free-energy chain: one entry per re-sampling (BAR, one-sided)
        "chains": totals["chains"],
        "diffusion": diffusion_rows,
        # the independent re-measurement box by box (temperatures, interface velocities,
        # converted fractions, ...), so that its fit can be checked or redone afterwards
        "remeasurement": [{"target": m.target, "method": m.method, **m.details} for m in after],
        "wall_s": time.perf_counter() - start,
        "timing_s": timing,
        "parameters": {
            name: p.detach().cpu().tolist()
            for name, p in model.named_parameters()
            if p.numel() <= 16
        },
        "all_met": all(r["met"] == "yes" for r in rows),
    }
    with open(output_dir / "summary.json", "w") as handle:
        json.dump(summary, handle, indent=2, default=float)
    log.info(format_table(rows))
    log.info(
        f"{summary['steps']} optimizer steps, {summary['resamplings']} re-samplings, "
        f"{summary['md_steps']} MD steps; {summary['wall_s']:.0f} s. Report, plot and model "
        f"in {output_dir}"
    )
    log.info(
        f"time: anchors {timing['anchors']:.0f} s, fine-tuning {timing['fine_tuning']:.0f} s "
        f"(MD {timing['of_which_md']:.0f} s, chaining {timing['of_which_chaining']:.0f} s), "
        f"re-measurement {timing['remeasure']:.0f} s"
    )
    if type(logger).__name__ == "WandbLogger":
        import wandb

        wandb.finish()  # one run per job: a multirun's next job starts a new one
    if totals["md_events"]:
        log.warning(
            f"{len(totals['md_events'])} unstable-MD event(s) were caught and handled (systems "
            "restarted with a smaller time step, or stopped): see md_events in summary.json"
        )
    if cfg.get("remeasure", True) and not all(math.isfinite(r["after_K"]) for r in rows):
        log.warning("some re-measurements failed (NaN): see report.json")
    return summary


def preflight_train(cfg: DictConfig) -> None:
    """Every value of a ``train`` config checked without running anything (ConfigError)."""
    check_common(cfg)
    build_settings("sampler", cfg.sampler)
    anchor = build_settings("anchor.settings", cfg.anchor.settings)
    if anchor.coexistence.box_share is not None:
        raise ConfigError(
            "anchor.settings.coexistence.box_share: the anchor measures its targets in one "
            "run; split a phasetune-measure run's boxes instead"
        )
    build_settings("resampling", cfg.resampling, separator=".")
    try:
        optimizer = check_optimizer(build_settings("optimizer", cfg.optimizer))
    except ValueError as err:
        raise ConfigError(f"optimizer.{err}") from None
    for group in ("loss", "convergence"):
        try:
            check_module_settings(**OmegaConf.to_container(cfg[group], resolve=True))
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{group}.{err}") from None
    if cfg.loss.mean_energy_gauge and not getattr(optimizer, "fits_residuals", False):
        raise ConfigError(
            "loss.mean_energy_gauge needs an optimizer that fits residuals (optimizer=gauss_newton)"
        )
    devices = cfg.trainer.get("devices", 1)
    n_targets = len(cfg.get("targets") or [])
    if isinstance(devices, int) and devices > max(n_targets, 1):
        raise ConfigError(
            f"trainer.devices={devices}: each DDP rank samples whole targets and this run has "
            f"{n_targets}; use at most {n_targets} device{'s' if n_targets != 1 else ''}"
        )
    ckpt = cfg.get("ckpt_path")
    if ckpt not in (None, "last"):
        path = Path(str(ckpt))
        if not path.is_file():
            raise ConfigError(f"ckpt_path={ckpt}: no such file (a checkpoint, 'last' or null)")
        if not zipfile.is_zipfile(path):
            raise ConfigError(f"ckpt_path={ckpt}: not a checkpoint file (torch.save format)")
