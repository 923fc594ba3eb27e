"""Melting temperature by two-phase coexistence: NPT bracketing of the interface velocity.

A solid supercell is elongated along z and its upper half melted while the lower half is
held fixed; the resulting solid|liquid box (two interfaces through the periodic boundary)
then runs in NPT at several temperatures T_i around a guess, each with independent replicas,
all in ONE batch. The cell axes relax independently (anisotropic C-rescale), so the solid
sets the cross-section and the pressure is hydrostatic.

Below T_m the solid grows, above it melts. The solid fraction x_s(t) of each box comes from
the per-atom phase classification (``phase_check``); its slope gives the interface velocity

    v = (L_z / 2) dx_s/dt        (two interfaces; v > 0: the solid grows),

which is linear in T near T_m: v(T) = a + b T, and T_m = −a/b. Each replica's temperatures
give one T_m; the error is the larger of the replicas' spread, σ = std / √R, and the
line fit's own error through every box (delta method on −a/b).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch_sim as ts
from ase import Atoms
from torch_sim.models.interface import ModelInterface
from torch_sim.state import SimState
from tqdm.auto import tqdm

from phasetune.free_energy.interface_velocity import fit_melting_point, interface_velocities
from phasetune.sampling.integrator import crescale_init, crescale_step, ensemble_targets
from phasetune.sampling.phase_check import classify_atoms, phase_fractions
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points
from phasetune.structures import PHASES
from phasetune.units import EV_PER_A3_PER_GPA, KB_EV_PER_K, fs_to_internal

log = logging.getLogger(__name__)

_LIQUID = PHASES.index("liquid")
#: melting stage: each attempt is 1.25× hotter and twice as long as the last
MELT_ATTEMPTS = 3
#: the hot stage has melted a box when this fraction of its mobile half is liquid; it is
#: judged before the quench, since regrowth from the interface while quenching is physics
MIN_MELTED_FRACTION = 0.6
SOLID_PHASES = tuple(p for p in PHASES if p != "liquid")


@dataclass(frozen=True)
class CoexistenceSettings:
    """MD settings of a coexistence run (times in fs, steps of ``timestep_fs``)."""

    timestep_fs: float = 5.0
    #: NPT run of the bulk solid that sets the lattice at (T_guess, P).
    solid_steps: int = 1000
    #: steps at ``melt_temperature_factor``·T with the lower half frozen, then
    #: ``quench_steps`` at the target T (still frozen) before the coexistence run.
    melt_steps: int = 1000
    quench_steps: int = 100
    melt_temperature_factor: float = 2.0
    #: the half to be melted is first stretched along z by this fraction
    liquid_expansion: float = 0.15
    #: NPT steps with both phases before the interface velocity is measured.
    equilibration_steps: int = 500
    production_steps: int = 4000
    stride: int = 50
    thermostat_tau_fs: float = 100.0
    barostat_tau_fs: float = 1000.0
    #: barostat coupling β_T in 1/GPa; None: twice the solid's static compressibility
    #: (a liquid near melting is softer than the cold lattice)
    compressibility_per_GPa: float | None = None
    #: the solid's supercell is repeated this many times along z.
    z_repeat: int = 2
    #: the solid supercell is first repeated along z until it is at least this long (Å), so
    #: that each slab (solid and liquid) is: with slabs much shorter than ~3 nm the two
    #: interfaces interact and the box's fate is decided by one fluctuation (Ti1 bcc, 13 and
    #: 17 Å slabs: replicas grew and melted at the same temperature 100 K from T_m)
    min_slab_A: float = 0.0
    #: solid fractions outside [saturation, 1 − saturation] end the linear regime.
    saturation: float = 0.1
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        positive = (
            "timestep_fs",
            "thermostat_tau_fs",
            "barostat_tau_fs",
            "melt_temperature_factor",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"coexistence setting {name} must be > 0")
        if self.melt_temperature_factor <= 1.0:
            raise ValueError("melt_temperature_factor must exceed 1 (the half must melt)")
        if self.z_repeat < 2:
            raise ValueError("z_repeat must be >= 2 (half the box becomes liquid)")
        if self.stride < 1 or self.production_steps < 3 * self.stride:
            raise ValueError("need at least 3 frames: production_steps >= 3 * stride")
        if not self.min_slab_A >= 0:
            raise ValueError(f"min_slab_A must be >= 0 Å, got {self.min_slab_A}")
        if not 0 <= self.saturation < 0.5:
            raise ValueError("saturation must lie in [0, 0.5)")

    def coupling(self) -> dict:
        """Thermostat and barostat settings shared by every run of the procedure."""
        return {
            "thermostat_tau_fs": self.thermostat_tau_fs,
            "barostat_tau_fs": self.barostat_tau_fs,
            "compressibility_per_GPa": self.compressibility_per_GPa,
        }

    def sampler_settings(self, **run) -> SamplerSettings:
        """Sampler settings for one run: this time step, coupling and progress, plus ``run``."""
        return SamplerSettings(
            timestep_fs=self.timestep_fs, progress=self.progress, **self.coupling(), **run
        )


class FrozenAtoms(ModelInterface):
    """A model whose forces on the masked atoms are zero (they stay put if at rest)."""

    def __init__(self, model: ModelInterface, frozen: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("frozen", frozen.to(torch.bool))
        self._device, self._dtype = model.device, model.dtype
        self._compute_forces = True
        self._compute_stress = True

    def forward(self, state: SimState, **kwargs) -> dict[str, torch.Tensor]:
        out = dict(self.model(state))
        out["forces"] = out["forces"].masked_fill(self.frozen.unsqueeze(-1), 0.0)
        return out


@dataclass
class CoexistenceResult:
    """Interface velocities and the melting temperature at one pressure.

    ``temperatures_K``, ``replica``, ``velocity_A_per_ps`` have one entry per box;
    ``solid_fraction`` is [n_frames, n_boxes], ``time_ps`` [n_frames].
    """

    solid_phase: str
    pressure_GPa: float
    temperatures_K: np.ndarray
    replica: np.ndarray
    velocity_A_per_ps: np.ndarray
    time_ps: np.ndarray
    solid_fraction: np.ndarray
    melting_temperature_K: float
    error_K: float
    replica_melting_temperatures_K: np.ndarray
    bracketed: bool
    n_atoms: int
    #: production averages per box: a check that each box sat at its (T, P)
    mean_temperature_K: np.ndarray | None = None
    mean_pressure_GPa: np.ndarray | None = None
    #: temperatures where some replicas' solids grew and others melted, and whether that
    #: is more than chance (:mod:`~phasetune.free_energy.interface_velocity`)
    disagreement_K: list[float] = field(default_factory=list)
    replicas_disagree: bool = False
    extra: dict = field(default_factory=dict)

    def describe(self) -> str:
        status = "bracketed" if self.bracketed else "EXTRAPOLATED: not a result (re-centre)"
        text = (
            f"{self.solid_phase}|liquid at {self.pressure_GPa:g} GPa: T_m = "
            f"{self.melting_temperature_K:.1f} ± {self.error_K:.1f} K ({status}; "
            f"{len(set(self.replica.tolist()))} replicas × "
            f"{len(set(self.temperatures_K.tolist()))} temperatures, {self.n_atoms} atoms/box)"
        )
        if self.replicas_disagree:
            text += (
                "; REPLICAS DISAGREE (solid grows in one, melts in another) at "
                + ", ".join(f"{t:.0f}" for t in self.disagreement_K)
                + " K: the boxes are too small along z or in cross-section for a bulk T_m"
            )
        return text

    def as_dict(self) -> dict:
        return {
            "method": "coexistence",
            "solid_phase": self.solid_phase,
            "pressure_GPa": self.pressure_GPa,
            "melting_temperature_K": self.melting_temperature_K,
            "error_K": self.error_K,
            "bracketed": self.bracketed,
            "n_atoms": self.n_atoms,
            "temperatures_K": self.temperatures_K.tolist(),
            "velocity_A_per_ps": self.velocity_A_per_ps.tolist(),
            "replica": self.replica.tolist(),
            "replica_melting_temperatures_K": self.replica_melting_temperatures_K.tolist(),
            "disagreement_K": list(self.disagreement_K),
            "replicas_disagree": self.replicas_disagree,
        }


def elongated_solid(atoms: Atoms, z_repeat: int) -> Atoms:
    """The solid supercell repeated ``z_repeat`` times along its third axis."""
    cell = np.asarray(atoms.cell.array)
    if np.abs(cell - np.diag(np.diag(cell))).max() > 1e-8:
        raise ValueError("coexistence needs an orthogonal solid cell (use build_structure)")
    return atoms.repeat((1, 1, z_repeat))


def static_compressibility_per_GPa(
    model: ModelInterface, atoms: Atoms, *, strain: float = 0.01, dtype=torch.float64
) -> float:
    """β = 1/B of the static lattice, B = V d²E/dV² by central differences at V(1 ± ε)."""
    boxes = []
    for f in (1 - strain, 1.0, 1 + strain):
        box = atoms.copy()
        box.set_cell(atoms.cell.array * f ** (1 / 3), scale_atoms=True)
        boxes.append(box)
    state = ts.io.atoms_to_state(boxes, device=model.device, dtype=dtype)
    energy = model(state)["energy"].detach().double().cpu()
    volume = atoms.get_volume()
    second = (energy[0] - 2 * energy[1] + energy[2]) / (strain * volume) ** 2
    bulk_GPa = float(volume * second) / EV_PER_A3_PER_GPA
    if not bulk_GPa > 0:
        raise ValueError(
            f"the solid is mechanically unstable at this lattice (B = {bulk_GPa:.3g} GPa); "
            "check the lattice constant"
        )
    return 1.0 / bulk_GPa


def _with_compressibility(
    settings: CoexistenceSettings, model: ModelInterface, atoms: Atoms
) -> CoexistenceSettings:
    if settings.compressibility_per_GPa is not None:
        return settings
    beta = 2.0 * static_compressibility_per_GPa(model, atoms)
    log.info("barostat coupling β_T = %.3g /GPa (twice the static lattice value)", beta)
    return dataclasses.replace(settings, compressibility_per_GPa=beta)


def melt_upper_half(
    model: ModelInterface,
    boxes: list[Atoms],
    *,
    temperatures_K: Sequence[float],
    pressures_GPa: Sequence[float],
    settings: CoexistenceSettings,
    device: torch.device,
    dtype: torch.dtype,
) -> list[Atoms]:
    """Melt the upper half (fractional z ≥ ½) of each box while the lower half stays put.

    The upper half is first stretched along z by ``liquid_expansion`` (a liquid is less
    dense than its solid), melted for ``melt_steps`` at ``melt_temperature_factor``·T in
    that fixed cell, then quenched for ``quench_steps`` to (T, P) with only L_z free
    (axial C-rescale, fast coupling), so that the liquid takes its own density instead of
    recrystallising under the pressure of the solid's. The frozen atoms are
    put back at their Cartesian positions after every step (so the barostat's affine
    rescaling moves only the liquid) and carry no momentum; the velocity-rescaling target
    is scaled by the mobile fraction, since the mobile atoms carry all the kinetic energy.
    Where less than :data:`MIN_MELTED_FRACTION` of some box's mobile atoms is liquid at the
    end of the hot stage, that stage is repeated hotter and longer (up to
    :data:`MELT_ATTEMPTS` times) before giving up; the quench runs once, after it.
    """
    stretched = []
    for box in boxes:
        box = box.copy()
        box.wrap()
        frac = box.get_scaled_positions()
        upper = frac[:, 2] >= 0.5
        e = settings.liquid_expansion
        frac[upper, 2] = 0.5 + (frac[upper, 2] - 0.5) * (1 + e)
        frac[:, 2] /= 1 + 0.5 * e
        cell = box.cell.array.copy()
        cell[2] *= 1 + 0.5 * e
        box.set_cell(cell, scale_atoms=False)
        box.set_scaled_positions(frac)
        stretched.append(box)
    boxes = stretched
    state = ts.io.atoms_to_state(boxes, device=device, dtype=dtype)
    state.rng = settings.seed + 7919
    frac_z = torch.cat([torch.as_tensor(b.get_scaled_positions(wrap=True)[:, 2]) for b in boxes])
    frozen = (frac_z < 0.5 / (1 + 0.5 * settings.liquid_expansion)).to(device)
    frozen_positions = state.positions[frozen].clone()
    mobile_fraction = torch.zeros(len(boxes), device=device, dtype=dtype).index_add(
        0, state.system_idx, (~frozen).to(dtype)
    ) / torch.bincount(state.system_idx, minlength=len(boxes)).to(dtype)
    kT = KB_EV_PER_K * torch.tensor(temperatures_K, device=device, dtype=dtype)
    pressure = EV_PER_A3_PER_GPA * torch.tensor(pressures_GPa, device=device, dtype=dtype)
    frozen_model = FrozenAtoms(model, frozen)
    coupling = settings.coupling()
    cool = ensemble_targets(
        kT=kT * mobile_fraction, pressure=pressure, cell_mode="axial", **coupling
    )
    cool = dataclasses.replace(
        cool, tau_barostat=cool.tau_barostat.clamp(max=fs_to_internal(200.0))
    )
    dt = torch.tensor(fs_to_internal(settings.timestep_fs), device=device, dtype=dtype)
    factor, melt_steps = settings.melt_temperature_factor, settings.melt_steps
    for attempt in range(MELT_ATTEMPTS):
        hot_kT = kT * factor * mobile_fraction
        hot = ensemble_targets(kT=hot_kT, pressure=pressure, cell_mode="fixed", **coupling)
        md = crescale_init(state, frozen_model, targets=hot)
        md.momenta = md.momenta.masked_fill(frozen.unsqueeze(-1), 0.0)
        for _ in tqdm(range(melt_steps), desc="melting half", disable=not settings.progress):
            md = crescale_step(md, frozen_model, dt=dt, targets=hot)
            md.positions[frozen] = frozen_positions
            md.momenta = md.momenta.masked_fill(frozen.unsqueeze(-1), 0.0)
        liquid = _mobile_liquid_fraction(md, frozen, len(boxes))
        log.info("melted halves: liquid fractions %s", [round(float(x), 2) for x in liquid])
        if float(liquid.min()) >= MIN_MELTED_FRACTION:
            break
        if attempt == MELT_ATTEMPTS - 1:
            raise RuntimeError(
                f"melting the upper half failed after {MELT_ATTEMPTS} attempts, the last "
                f"{melt_steps} steps at {factor:.2f} T (liquid fractions of the melted halves "
                f"{[round(float(x), 2) for x in liquid]}); the solid may be far above its "
                "melting point's guess, or the model unstable when hot"
            )
        log.warning(
            "melting the upper halves: liquid fractions %s after %d steps at %.2f T; "
            "trying %.2f T for %d steps",
            [round(float(x), 2) for x in liquid],
            melt_steps,
            factor,
            factor * 1.25,
            2 * melt_steps,
        )
        factor, melt_steps = factor * 1.25, 2 * melt_steps
        state.rng = settings.seed + 7919 + attempt + 1
    for _ in tqdm(range(settings.quench_steps), desc="quench", disable=not settings.progress):
        md = crescale_step(md, frozen_model, dt=dt, targets=cool)
        md.positions[frozen] = frozen_positions
        md.momenta = md.momenta.masked_fill(frozen.unsqueeze(-1), 0.0)
    return ts.io.state_to_atoms(md)


def _mobile_liquid_fraction(md: SimState, frozen: torch.Tensor, n_boxes: int) -> torch.Tensor:
    """Fraction of each box's mobile (not frozen) atoms classified liquid, [n_boxes]."""
    liquid = classify_atoms(md.positions, md.row_vector_cell, md.system_idx) == _LIQUID
    mobile = ~frozen
    count = torch.zeros(n_boxes, dtype=torch.float64, device=frozen.device)
    melted = count.index_add(0, md.system_idx, (liquid & mobile).double())
    return melted / count.index_add(0, md.system_idx, mobile.double())


def melting_temperatures_coexistence(
    model: ModelInterface,
    solid_atoms: Atoms,
    *,
    solid_phase: str,
    pressures_GPa: Sequence[float],
    guesses_K: Sequence[float],
    window: float = 0.05,
    n_temperatures: int = 3,
    n_replicas: int = 2,
    settings: CoexistenceSettings | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> list[CoexistenceResult]:
    """T_m(P) for each pressure by NPT bracketing, every box of every pressure in one batch.

    Args:
        model: the potential (a torch-sim model; pass a sampling copy of a trainable one).
        solid_atoms: the solid's orthogonal supercell (e.g. ``build_structure``); its
            lattice is rescaled to the solid's NPT average at each (guess, P).
        solid_phase: ``fcc``, ``bcc`` or ``hcp``.
        pressures_GPa, guesses_K: one T_m guess per pressure.
        window: temperatures span guess·(1 ± window).
        n_temperatures, n_replicas: boxes per pressure = n_temperatures × n_replicas.
    """
    settings = settings or CoexistenceSettings()
    if solid_phase not in SOLID_PHASES:
        raise ValueError(f"solid_phase must be one of {', '.join(SOLID_PHASES)}")
    pressures = [float(p) for p in pressures_GPa]
    guesses = [float(t) for t in guesses_K]
    if not pressures or len(pressures) != len(guesses):
        raise ValueError("give one melting-temperature guess per pressure")
    if min(guesses) <= 0:
        raise ValueError(f"temperature guesses must be > 0 K, got {guesses}")
    if not 0 < window < 0.5:
        raise ValueError(f"window must lie in (0, 0.5), got {window}")
    if n_temperatures < 2 or n_replicas < 1:
        raise ValueError("need n_temperatures >= 2 and n_replicas >= 1")
    device = torch.device(device) if device is not None else model.device
    settings = _with_compressibility(settings, model, solid_atoms)

    # 1. the bulk solid at each (guess, P): its average cell sets the coexistence lattice
    solid_points = [
        StatePoint(
            name=f"solid_{k}", phase=solid_phase, atoms=solid_atoms, temperature_K=t, pressure_GPa=p
        )
        for k, (p, t) in enumerate(zip(pressures, guesses, strict=True))
    ]
    stride = max(1, settings.solid_steps // 20)
    solid_frames, _ = sample_state_points(
        model,
        solid_points,
        settings.sampler_settings(
            equilibration_steps=settings.solid_steps // 2,
            production_steps=max(stride, settings.solid_steps - settings.solid_steps // 2),
            stride=stride,
            seed=settings.seed,
        ),
        device=device,
        dtype=dtype,
    )
    boxes, temps, box_pressures, replicas, which = [], [], [], [], []
    for k, (p, guess) in enumerate(zip(pressures, guesses, strict=True)):
        ok = solid_frames.phase_ok[:, k]
        if not bool(ok.any()):
            raise RuntimeError(
                f"the {solid_phase} solid did not stay {solid_phase} at {guess:g} K, {p:g} GPa "
                "(superheated past its stability limit?); lower the guess"
            )
        mean_cell = solid_frames.cell[ok, k].mean(0).numpy()
        solid = solid_atoms.copy()
        solid.set_cell(mean_cell, scale_atoms=True)
        slab_repeat = max(1, math.ceil(settings.min_slab_A / solid.cell.array[2, 2] - 1e-9))
        box = elongated_solid(solid, settings.z_repeat * slab_repeat)
        for t in np.linspace(guess * (1 - window), guess * (1 + window), n_temperatures):
            for r in range(n_replicas):
                boxes.append(box)
                temps.append(float(t))
                box_pressures.append(p)
                replicas.append(r)
                which.append(k)

    # 2. melt the upper halves, all boxes in one batch, each quenched to its own T
    boxes = melt_upper_half(
        model,
        boxes,
        temperatures_K=temps,
        pressures_GPa=box_pressures,
        settings=settings,
        device=device,
        dtype=dtype,
    )

    # 3. coexistence NPT, every axis free
    points = [
        StatePoint(
            name=f"coex_{i}",
            phase=solid_phase,
            atoms=b,
            temperature_K=t,
            pressure_GPa=p,
            cell_mode="anisotropic",
        )
        for i, (b, t, p) in enumerate(zip(boxes, temps, box_pressures, strict=True))
    ]
    frames, _ = sample_state_points(
        model,
        points,
        settings.sampler_settings(
            equilibration_steps=settings.equilibration_steps,
            production_steps=settings.production_steps,
            stride=settings.stride,
            seed=settings.seed + 1,
            check_phase=False,
        ),
        device=device,
        dtype=dtype,
    )
    fractions = np.stack(
        [
            1.0
            - phase_fractions(frames.positions[f], frames.cell[f], frames.system_idx)[
                :, _LIQUID
            ].numpy()
            for f in range(frames.n_frames)
        ]
    )
    time_ps = (frames.step.numpy() - frames.step.numpy()[0]) * settings.timestep_fs * 1e-3
    length_z = frames.cell[:, :, 2, 2].mean(0).numpy()
    velocities = interface_velocities(time_ps, fractions, length_z, settings.saturation)

    results = []
    temps_a, reps_a, which_a = np.array(temps), np.array(replicas), np.array(which)
    n_atoms = len(boxes[0])
    for k, p in enumerate(pressures):
        sel = which_a == k
        t_k, v_k, r_k = temps_a[sel], velocities[sel], reps_a[sel]
        fit = fit_melting_point(t_k, r_k, v_k)
        result = CoexistenceResult(
            solid_phase=solid_phase,
            pressure_GPa=p,
            temperatures_K=t_k,
            replica=r_k,
            velocity_A_per_ps=v_k,
            time_ps=time_ps,
            solid_fraction=fractions[:, sel],
            melting_temperature_K=fit.melting_temperature_K,
            error_K=fit.error_K,
            replica_melting_temperatures_K=fit.replica_melting_temperatures_K,
            bracketed=fit.bracketed,
            n_atoms=n_atoms,
            disagreement_K=fit.disagreement_K,
            replicas_disagree=fit.replicas_disagree,
            mean_temperature_K=frames.temperature[:, sel].mean(0).numpy(),
            mean_pressure_GPa=frames.pressure[:, sel].mean(0).numpy(),
        )
        if not fit.bracketed or fit.replicas_disagree:
            log.warning("%s", result.describe())
        results.append(result)
    return results


def recentred_guess(result: CoexistenceResult, guess_K: float, window: float) -> float:
    """The next window's centre for a run that did not bracket its T_m.

    The extrapolated root where there is one, else a step of two windows in the direction
    the interfaces moved (solids grew: T_m lies above); never more than three windows away.
    """
    t_m = result.melting_temperature_K
    if not (math.isfinite(t_m) and t_m > 0):
        grew = float(np.mean(result.velocity_A_per_ps)) > 0
        t_m = guess_K * (1 + 2 * window if grew else 1 - 2 * window)
    return float(np.clip(t_m, guess_K * (1 - 3 * window), guess_K * (1 + 3 * window)))


def melting_temperatures_bracketed(
    model: ModelInterface,
    solid_atoms: Atoms,
    *,
    pressures_GPa: Sequence[float],
    guesses_K: Sequence[float],
    window: float = 0.05,
    max_recentre: int = 2,
    **kwargs,
) -> list[CoexistenceResult]:
    """:func:`melting_temperatures_coexistence`, re-run on a new window where a T_m was not
    bracketed (:func:`recentred_guess`), up to ``max_recentre`` times.

    An extrapolated root is not a result: a run still unbracketed after the last re-centring
    keeps ``bracketed=False`` and says so in :meth:`CoexistenceResult.describe`.
    """
    pressures = [float(p) for p in pressures_GPa]
    guesses = [float(t) for t in guesses_K]
    results: list[CoexistenceResult | None] = [None] * len(pressures)
    pending = list(range(len(pressures)))
    for attempt in range(max_recentre + 1):
        batch = melting_temperatures_coexistence(
            model,
            solid_atoms,
            pressures_GPa=[pressures[k] for k in pending],
            guesses_K=[guesses[k] for k in pending],
            window=window,
            **kwargs,
        )
        still = []
        for k, result in zip(pending, batch, strict=True):
            results[k] = result
            if not result.bracketed:
                guesses[k] = recentred_guess(result, guesses[k], window)
                still.append(k)
        if not still or attempt == max_recentre:
            break
        log.warning(
            "re-centring %d coexistence run(s) on %s K", len(still), [guesses[k] for k in still]
        )
        pending = still
    return [r for r in results if r is not None]
