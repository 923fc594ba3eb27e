"""Batched sampling of many (phase, T, P) state points in one torch-sim batch.

Each state point is a starting structure of a phase with its own temperature, pressure and
cell mode; all run together through :func:`~phasetune.sampling.integrator.crescale_step`.
After ``equilibration_steps`` a frame is stored every ``stride`` steps (positions, cell,
potential and kinetic energy, volume, temperature, pressure, enthalpy) and checked for
phase identity; flagged frames stay in the record with ``phase_ok = False``.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import torch
import torch_sim as ts
from ase import Atoms
from tqdm.auto import tqdm

from phasetune.faults import fault_point
from phasetune.sampling.frames import FRAME_ARRAYS, Frames
from phasetune.sampling.integrator import (
    CELL_MODES,
    EnsembleTargets,
    crescale_init,
    crescale_step,
    ensemble_targets,
    internal_pressure_tensor,
)
from phasetune.sampling.noise import noise_for
from phasetune.sampling.phase_check import LIQUID_INDEX
from phasetune.sampling.stability import StabilityGuard
from phasetune.settings import SamplerSettings
from phasetune.structures import PHASES
from phasetune.units import (
    EV_PER_A3_PER_GPA,
    KB_EV_PER_K,
    fs_to_internal,
    internal_to_gpa,
)

log = logging.getLogger(__name__)

#: Pressures beyond this magnitude (GPa) are treated as input errors.
MAX_ABS_PRESSURE_GPA = 1000.0
#: a melt stage that leaves a liquid unmelted is repeated, each time
#: :data:`MELT_RETRY_HEATING` × hotter and twice as long, at most this many times in all
MELT_ATTEMPTS = 3
MELT_RETRY_HEATING = 1.25


@dataclass(frozen=True)
class StatePoint:
    """One thermodynamic state point of one phase.

    Args:
        name: label used in logs and files.
        phase: expected phase, one of ``PHASES`` (checked on every frame).
        atoms: starting structure (periodic supercell).
        temperature_K: set temperature in K.
        pressure_GPa: set pressure in GPa (ignored for ``cell_mode="fixed"``).
        cell_mode: ``"auto"`` (isotropic for liquid, fcc, bcc; anisotropic for hcp),
            ``"isotropic"``, ``"anisotropic"`` or ``"fixed"`` (NVT).
        seed: the seed of this state point's noise stream (None: the run's seed;
            either way combined with the name, :func:`phasetune.sampling.noise.state_point_seed`).
    """

    name: str
    phase: str
    atoms: Atoms
    temperature_K: float
    pressure_GPa: float = 0.0
    cell_mode: str = "auto"
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ValueError(
                f"state point {self.name!r}: unknown phase {self.phase!r}; "
                f"choose one of {', '.join(PHASES)}"
            )
        if not self.temperature_K > 0:
            raise ValueError(
                f"state point {self.name!r}: temperature_K must be > 0, got {self.temperature_K}"
            )
        if abs(self.pressure_GPa) > MAX_ABS_PRESSURE_GPA:
            raise ValueError(
                f"state point {self.name!r}: pressure_GPa={self.pressure_GPa} is beyond "
                f"±{MAX_ABS_PRESSURE_GPA:g} GPa; give the pressure in GPa"
            )
        if self.cell_mode != "auto" and self.cell_mode not in CELL_MODES:
            raise ValueError(
                f"state point {self.name!r}: cell_mode {self.cell_mode!r} is not one of "
                f"auto, {', '.join(CELL_MODES)}"
            )
        if len(self.atoms) == 0 or not all(self.atoms.pbc):
            raise ValueError(f"state point {self.name!r}: atoms must be a non-empty periodic cell")

    @property
    def resolved_cell_mode(self) -> str:
        if self.cell_mode != "auto":
            return self.cell_mode
        return "anisotropic" if self.phase == "hcp" else "isotropic"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "phase": self.phase,
            "temperature_K": float(self.temperature_K),
            "pressure_GPa": float(self.pressure_GPa),
            "cell_mode": self.resolved_cell_mode,
            "n_atoms": len(self.atoms),
        }


def _targets(
    state_points: list[StatePoint], settings: SamplerSettings, device, dtype
) -> EnsembleTargets:
    return ensemble_targets(
        kT=torch.tensor(
            [KB_EV_PER_K * sp.temperature_K for sp in state_points], device=device, dtype=dtype
        ),
        pressure=torch.tensor(
            [sp.pressure_GPa * EV_PER_A3_PER_GPA for sp in state_points],
            device=device,
            dtype=dtype,
        ),
        cell_mode=torch.tensor(
            [CELL_MODES[sp.resolved_cell_mode] for sp in state_points], device=device
        ),
        thermostat_tau_fs=settings.thermostat_tau_fs,
        barostat_tau_fs=settings.barostat_tau_fs,
        compressibility_per_GPa=settings.compressibility_per_GPa,
    )


def _phase_check(md, expected: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    from phasetune.sampling.phase_check import check_phase

    with torch.no_grad():
        result = check_phase(md.positions, md.row_vector_cell, md.system_idx, expected)
    return result.ok, result.fractions


def reset_neighbor_lists(model: torch.nn.Module) -> None:
    """Drop cached neighbour lists (attributes with a ``reset()``, e.g. a Verlet list), so
    that what the model computes next depends on its inputs alone, not on earlier calls."""
    for module in model.modules():
        cached = getattr(module, "neighbors", None)
        if callable(getattr(cached, "reset", None)):
            cached.reset()


def sample_state_points(
    model: torch.nn.Module,
    state_points: list[StatePoint],
    settings: SamplerSettings,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> tuple[Frames, ts.SimState]:
    """Run all ``state_points`` in one batch; return the frames and the final MD state.

    ``model`` is used as given (pass :func:`sampling_copy` of a trainable model). The run
    is reproducible from ``settings.seed``; with ``settings.random_streams="state_point"`` (the
    default) each state point's frames depend on its own settings, name and the seed only,
    not on the rest of the batch (:mod:`phasetune.sampling.noise`).
    """
    if not state_points:
        raise ValueError("no state points to sample")
    names = [sp.name for sp in state_points]
    if len(set(names)) != len(names):
        raise ValueError(f"state point names must be unique, got {names}")
    device = torch.device(device) if device is not None else model.device
    reset_neighbor_lists(model)  # the run depends on its inputs only (reproducible resumes)
    state = ts.io.atoms_to_state([sp.atoms for sp in state_points], device=device, dtype=dtype)
    state.rng = settings.seed
    noise = noise_for(
        settings.random_streams,
        settings.seed,
        names,
        seeds=[sp.seed for sp in state_points],
    )
    targets = _targets(state_points, settings, device, dtype)
    liquid = torch.tensor([sp.phase == "liquid" for sp in state_points], device=device)
    melt_kT = torch.where(liquid, targets.kT * settings.melt_temperature_factor, targets.kT)
    # liquids melt at fixed cell (the starting density): hot NPT at P ≈ 0 can boil them
    fixed = torch.full_like(targets.cell_mode, CELL_MODES["fixed"])
    melt_targets = dataclasses.replace(
        targets, kT=melt_kT, cell_mode=torch.where(liquid, fixed, targets.cell_mode)
    )
    expected = [sp.phase for sp in state_points]
    dt = torch.tensor(fs_to_internal(settings.timestep_fs), device=device, dtype=dtype)

    md = crescale_init(
        state, model, targets=melt_targets if settings.melt_steps else targets, noise=noise
    )
    records: dict[str, list[torch.Tensor]] = {k: [] for k in FRAME_ARRAYS}
    metadata = {"timestep_fs": settings.timestep_fs, "seed": settings.seed}

    def collected() -> Frames:
        return Frames(
            **{k: torch.stack(v) for k, v in records.items()},
            system_idx=md.system_idx.cpu(),
            atomic_numbers=md.atomic_numbers.cpu(),
            masses=md.masses.cpu(),
            state_points=[sp.as_dict() for sp in state_points],
            metadata=dict(metadata),
        )

    guard = StabilityGuard.start(md, names, dt, settings.stability)
    melt = _MeltStage(settings, liquid, names)
    equilibration_steps = settings.equilibration_steps
    total = equilibration_steps + settings.production_steps
    bar = tqdm(total=total, desc="sampling", disable=not settings.progress, unit="step")
    # no torch.no_grad() here: models that take forces by autograd (MACE) need grad mode
    step = 0
    while step < total:
        step_targets = melt_targets if step < melt.end else targets
        md = crescale_step(
            md,
            model,
            dt=guard.dt,
            targets=step_targets,
            thermostat=settings.thermostat,
            noise=noise,
        )
        if settings.stability.enabled:
            md = guard.hold_stopped(md)
            bad, reasons = guard.unstable(md, step_targets.kT)
            if bool(bad.any()):
                md = guard.restart(md, bad, reasons, step + 1)
                metadata["md_events"] = list(guard.events)
        if step + 1 == melt.end and settings.check_phase:
            extra = melt.judge(md)
            if extra:  # everyone equilibrates longer while the unmelted liquids melt again
                melt_targets = dataclasses.replace(
                    melt_targets,
                    kT=torch.where(melt.retry, targets.kT * melt.factor, targets.kT),
                    cell_mode=torch.where(melt.retry, fixed, targets.cell_mode),
                )
                equilibration_steps += extra
                total += extra
                bar.total = total
                metadata["melt_attempts"] = melt.attempt
        if (step + 1) % settings.stride == 0:
            guard.snapshot(md, ~guard.stopped)
        if step == total // 2:
            fault_point("sampling")
        production = step - equilibration_steps + 1
        if production > 0 and production % settings.stride == 0:
            _record(records, md, targets, step, expected, settings.check_phase)
            # a stopped system's frames are never valid
            records["phase_ok"][-1] = records["phase_ok"][-1] & ~guard.stopped
            n_frames = len(records["step"])
            if settings.frames_path and n_frames % settings.save_every_frames == 0:
                collected().save(settings.frames_path)
            if settings.progress:
                bar.set_postfix(
                    T=f"{float(records['temperature'][-1].mean()):.0f}K",
                    frames=n_frames,
                )
        bar.update(1)
        step += 1
    bar.close()
    frames = collected()
    if settings.frames_path:
        frames.save(settings.frames_path)
    bad = (~frames.phase_ok).sum(0)
    for k, sp in enumerate(state_points):
        if int(bad[k]):
            log.warning(
                "%s: %d/%d frames left the %s phase and are excluded",
                sp.name,
                int(bad[k]),
                frames.n_frames,
                sp.phase,
            )
    return frames, md


class _MeltStage:
    """When the liquids' melt stage ends, and which liquids must melt again (hotter, longer).

    A liquid has melted when it passes the liquid phase check at the end of the hot stage.
    """

    def __init__(self, settings: SamplerSettings, liquid: torch.Tensor, names: list[str]):
        self.settings, self.liquid, self.names = settings, liquid, names
        self.end, self.length = settings.melt_steps, settings.melt_steps
        self.factor = settings.melt_temperature_factor
        self.attempt = 1
        self.retry = torch.zeros_like(liquid)

    def judge(self, md) -> int:
        """Steps to add for another attempt (0: all melted); raises after the last one."""
        if not self.end or not bool(self.liquid.any()):
            return 0
        ok, fractions = _phase_check(md, ["liquid"] * len(self.names))
        unmelted = self.liquid & ~ok.to(self.liquid.device)
        if not bool(unmelted.any()):
            return 0
        report = ", ".join(
            f"{self.names[k]} {float(fractions[k, LIQUID_INDEX]):.2f}"
            for k in unmelted.nonzero().flatten().tolist()
        )
        if self.attempt == MELT_ATTEMPTS:
            raise RuntimeError(
                f"liquids did not melt after {MELT_ATTEMPTS} attempts, the last "
                f"{self.length} steps at {self.factor:.2f} T (liquid fraction: {report}); "
                "start them from a lower density (the liquid's lattice_A) or raise "
                "sampler.melt_steps / sampler.melt_temperature_factor"
            )
        self.factor *= MELT_RETRY_HEATING
        self.length *= 2
        self.attempt += 1
        self.retry = unmelted
        log.warning(
            "melt stage left liquids unmelted (liquid fraction: %s); melting them again at "
            "%.2f T for %d steps",
            report,
            self.factor,
            self.length,
        )
        self.end += self.length
        return self.length


def _record(records, md, targets, step, expected, check) -> None:
    volume = torch.linalg.det(md.cell)
    kinetic = 0.5 * torch.zeros_like(volume).index_add(
        0, md.system_idx, (md.momenta**2 / md.masses.unsqueeze(-1)).sum(-1)
    )
    dof = md.get_number_of_degrees_of_freedom().to(volume.dtype)
    pressure_tensor = internal_pressure_tensor(md, volume)
    if check:
        ok, fractions = _phase_check(md, expected)
    else:
        ok = torch.ones_like(volume, dtype=torch.bool)
        fractions = torch.full((volume.shape[0], len(PHASES)), float("nan"), dtype=volume.dtype)
    records["positions"].append(md.positions.detach().cpu().clone())
    records["cell"].append(md.row_vector_cell.detach().cpu().clone())
    records["potential_energy"].append(md.energy.detach().cpu().clone())
    records["kinetic_energy"].append(kinetic.cpu())
    records["volume"].append(volume.cpu())
    records["temperature"].append((2.0 * kinetic / (dof * KB_EV_PER_K)).cpu())
    records["pressure"].append(
        internal_to_gpa(1.0) * torch.diagonal(pressure_tensor, dim1=-2, dim2=-1).sum(-1).cpu() / 3
    )
    records["enthalpy"].append((md.energy + kinetic + targets.pressure * volume).cpu())
    records["phase_ok"].append(ok.cpu())
    records["phase_fractions"].append(fractions.cpu().to(volume.dtype))
    records["step"].append(torch.tensor(step + 1))
