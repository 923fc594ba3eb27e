"""The settings of the sampler and of the transition measurements, torch-free.

Plain dataclasses with their checks (``__post_init__``), used by the physics modules
(:mod:`phasetune.sampling`, :mod:`phasetune.free_energy`, :mod:`phasetune.learn.anchor`
re-export them) and, as Hydra structured configs, by the shipped configs
(:func:`phasetune.configs.register_schemas`): the dataclass is the schema, so a key it does
not have or a value of the wrong type is refused when the config is composed, before any
work. Torch-free, so that ``--help`` and the preflight checks stay light. Times in fs, steps
count time steps of ``timestep_fs``, pressures in GPa, temperatures in K.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Thermostats of :func:`phasetune.sampling.integrator.crescale_step` (its ``THERMOSTATS``).
THERMOSTAT_NAMES = ("vrescale", "langevin")
#: where the MD noise comes from (:mod:`phasetune.sampling.noise`): one stream per state point
#: (its frames do not depend on what else is in the batch) or torch-sim's one per batch
RANDOM_STREAMS = ("state_point", "batch")
#: Finite-size treatments of :func:`phasetune.free_energy.solid.solid_free_energy`.
FINITE_SIZE_CORRECTIONS = ("none", "harmonic", "auto", "extrapolate")
#: how the model's T* is measured; "auto": coexistence for solid|liquid targets, free
#: energies (Frenkel–Ladd, liquid TI, Gibbs–Helmholtz) for solid|solid ones; "melting":
#: coexistence for solid|liquid targets, the melting of the competing solids for solid|solid
#: ones (needs the target's structures.liquid and melting_guesses_K)
ANCHOR_METHODS = ("auto", "coexistence", "free_energy", "melting")


@dataclass(frozen=True)
class StabilitySettings:
    """Thresholds of :class:`phasetune.sampling.stability.StabilityGuard` (see that module)."""

    enabled: bool = True
    max_temperature_factor: float = 5.0
    max_displacement_factor: float = 8.0
    max_volume_step_factor: float = 1.5
    max_retries: int = 3
    timestep_factor: float = 0.5
    #: the costlier checks (temperature, displacement, volume) every this many steps
    check_every: int = 5

    def __post_init__(self) -> None:
        if not self.max_temperature_factor > 1:
            raise ValueError("stability.max_temperature_factor must be > 1")
        if not self.max_displacement_factor > 1:
            raise ValueError("stability.max_displacement_factor must be > 1")
        if not self.max_volume_step_factor > 1:
            raise ValueError("stability.max_volume_step_factor must be > 1")
        if self.max_retries < 0:
            raise ValueError("stability.max_retries must be >= 0")
        if self.check_every < 1:
            raise ValueError("stability.check_every must be >= 1")
        if not 0 < self.timestep_factor < 1:
            raise ValueError("stability.timestep_factor must be in (0, 1)")


@dataclass
class SamplerSettings:
    """MD settings shared by all state points of a batch (times in fs)."""

    timestep_fs: float = 5.0
    equilibration_steps: int = 1000
    production_steps: int = 2000
    stride: int = 20
    thermostat_tau_fs: float = 100.0
    barostat_tau_fs: float = 1000.0
    #: "vrescale" (global, gentle on dynamics) or "langevin" (per atom; cold solids)
    thermostat: str = "vrescale"
    #: β_T guess in 1/GPa, sets the barostat's coupling strength only (not the ensemble).
    compressibility_per_GPa: float = 0.05
    #: liquids melt first at ``melt_temperature_factor``·T for this many steps, at fixed
    #: cell (the starting structure sets the density), then equilibrate in NPT. With
    #: ``check_phase``, a liquid that has not melted by then is melted again, hotter and
    #: longer (:data:`phasetune.sampling.sampler.MELT_ATTEMPTS`); the other systems
    #: equilibrate meanwhile.
    melt_steps: int = 0
    melt_temperature_factor: float = 2.0
    seed: int = 0
    #: "state_point": each state point draws its noise from its own stream, seeded from
    #: ``seed`` and its name, so it samples the same frames alone, in any batch, on any rank
    #: or in a separate job (unless a liquid must melt again: the whole batch then
    #: equilibrates longer); "batch": one generator for the batch (torch-sim's convention)
    random_streams: str = "state_point"
    check_phase: bool = True
    progress: bool = True
    #: if set, the frames so far are written (atomically) to this HDF5 file every
    #: ``save_every_frames`` frames and at the end, so a crash loses at most that many frames.
    frames_path: str | None = None
    save_every_frames: int = 10
    #: unstable-MD detection and per-system restarts (``phasetune.sampling.stability``)
    stability: StabilitySettings = field(default_factory=StabilitySettings)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.stability, StabilitySettings):
            self.stability = StabilitySettings(**dict(self.stability))
        for name in ("timestep_fs", "thermostat_tau_fs", "barostat_tau_fs"):
            if not getattr(self, name) > 0:
                raise ValueError(f"sampler setting {name} must be > 0, got {getattr(self, name)}")
        if self.stride < 1 or self.production_steps < self.stride:
            raise ValueError(
                f"need stride >= 1 and production_steps >= stride, got stride={self.stride}, "
                f"production_steps={self.production_steps}"
            )
        if self.thermostat not in THERMOSTAT_NAMES:
            raise ValueError(
                f"unknown thermostat {self.thermostat!r}; choose one of "
                f"{', '.join(THERMOSTAT_NAMES)}"
            )
        if self.save_every_frames < 1:
            raise ValueError(f"save_every_frames must be >= 1, got {self.save_every_frames}")
        if self.random_streams not in RANDOM_STREAMS:
            raise ValueError(
                f"unknown random_streams {self.random_streams!r}; choose one of "
                f"{', '.join(RANDOM_STREAMS)}"
            )
        if self.equilibration_steps < 0 or self.melt_steps < 0:
            raise ValueError("equilibration_steps and melt_steps must be >= 0")
        if self.melt_steps > self.equilibration_steps:
            raise ValueError(
                f"melt_steps ({self.melt_steps}) must not exceed equilibration_steps "
                f"({self.equilibration_steps})"
            )


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
    #: directory of finished results (JSON, keyed by the model, the solid, P, the guess and
    #: every setting above but ``progress``): a run whose key is there reads it instead of
    #: measuring (:mod:`phasetune.free_energy.coexistence_cache`); None: no cache
    cache_dir: str | None = None
    #: "k/n": measure only the boxes i with i mod n = k (temperatures × replicas × pressures,
    #: in that order), store each in ``cache_dir`` and stop; jobs 0/n … (n−1)/n split the
    #: boxes, and a run without a share then reads them all and fits. None: every box.
    box_share: str | None = None

    def share(self) -> tuple[int, int] | None:
        """``box_share`` as (k, n), or None."""
        if self.box_share is None:
            return None
        k, n = (int(x) for x in str(self.box_share).split("/"))
        return k, n

    def __post_init__(self) -> None:
        if self.box_share is not None:
            try:
                k, n = self.share()
            except ValueError:
                raise ValueError(
                    f"coexistence.box_share must read k/n (e.g. 0/4), got {self.box_share!r}"
                ) from None
            if not 0 <= k < n:
                raise ValueError(f"coexistence.box_share k/n needs 0 <= k < n, got {k}/{n}")
            if self.cache_dir is None:
                raise ValueError(
                    "coexistence.box_share needs coexistence.cache_dir: a directory every job "
                    "of the split writes its boxes to"
                )
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


@dataclass(frozen=True)
class FrenkelLaddSettings:
    """Settings of the NPT run (steps of ``timestep_fs``) and of the switching."""

    timestep_fs: float = 5.0
    npt_equilibration_steps: int = 1000
    npt_production_steps: int = 2000
    npt_stride: int = 20
    switching_equilibration_steps: int = 500
    switching_steps: int = 2000
    n_replicas: int = 4
    #: each replica switches in the cell and on the sites of its own NPT run (one batch), so
    #: their spread includes the noise of a short run's average cell; false: all share one
    #: (Ti1 hcp/bcc at 1155 K, 18 ps: shared cells scattered 1.5-1.8x their stated errors
    #: across seeds, bench/RESULTS.md)
    independent_cells: bool = False
    friction_time_fs: float = 100.0
    barostat_tau_fs: float = 1000.0
    compressibility_per_GPa: float = 0.05
    seed: int = 0
    progress: bool = True
    #: "none"; "harmonic": subtract the crystal's harmonic finite-size error F_h(N) − F_h(∞)
    #: (:func:`phasetune.free_energy.phonons.harmonic_finite_size_error_eV`; raises where
    #: phasetune cannot compute it, e.g. a mechanically unstable lattice); "auto": harmonic
    #: where it can, else none;
    #: "extrapolate": a second, larger box and G/N extrapolated in 1/N (twice the cost)
    finite_size_correction: str = "none"
    #: N₂/N₁ (at least) of the larger box for "extrapolate", ≥ 1.5: the extrapolation multiplies
    #: the errors by about N₂/(N₂ − N₁). 1.7 keeps the common boxes cubic: bcc 250 → 432, hcp
    #: 240 → 448, fcc 108 → 256 and 256 → 500 (fcc 32 needs 3.3 to reach the cubic 108; a
    #: box of another shape has another finite-size coefficient).
    extrapolation_size_factor: float = 1.7

    def __post_init__(self) -> None:
        if self.finite_size_correction not in FINITE_SIZE_CORRECTIONS:
            raise ValueError(
                f"finite_size_correction must be one of {', '.join(FINITE_SIZE_CORRECTIONS)}, "
                f"got {self.finite_size_correction!r}"
            )
        if not self.extrapolation_size_factor >= 1.5:
            raise ValueError(
                f"extrapolation_size_factor must be >= 1.5, got {self.extrapolation_size_factor!r}"
            )
        if self.n_replicas < 2:
            raise ValueError("n_replicas must be >= 2 (the error comes from their spread)")
        if self.switching_steps < 1 or self.npt_production_steps < 2 * self.npt_stride:
            raise ValueError("need switching_steps >= 1 and at least 2 NPT frames")


@dataclass
class AnchorSettings:
    """How the model's transition temperatures are measured (anchor and final check)."""

    method: str = "coexistence"
    #: coexistence temperatures: guess·(1 ± window), n_temperatures × n_replicas boxes
    window: float = 0.08
    n_temperatures: int = 3
    n_replicas: int = 2
    #: re-centre and repeat when T* falls outside the window (at most this often)
    max_recentre: int = 2
    coexistence: CoexistenceSettings = field(default_factory=CoexistenceSettings)
    enthalpy: SamplerSettings = field(
        default_factory=lambda: SamplerSettings(
            timestep_fs=10.0, equilibration_steps=500, melt_steps=300, production_steps=1500
        )
    )
    solid: FrenkelLaddSettings = field(default_factory=FrenkelLaddSettings)
    liquid: SamplerSettings = field(default_factory=lambda: SamplerSettings(melt_steps=300))
    liquid_reference_temperature_K: float | None = None
    #: free-energy route: the Gibbs–Helmholtz enthalpies at guess × these factors
    enthalpy_temperature_factors: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    #: the anchor's Gibbs–Helmholtz step from T* to T_k: its enthalpy temperatures spread
    #: this much (relative) beyond [T*, T_k]
    enthalpy_margin: float = 0.02
    #: free-energy route: warn when T*'s estimated systematic error exceeds this (K)
    systematic_tolerance_K: float = 15.0

    def __post_init__(self) -> None:
        if self.method not in ANCHOR_METHODS:
            raise ValueError(f"anchor method must be one of {ANCHOR_METHODS}, got {self.method!r}")
        if not 0 < self.window < 0.5:
            raise ValueError(f"anchor window must be in (0, 0.5), got {self.window}")
        if self.n_temperatures < 2 or self.n_replicas < 1 or self.max_recentre < 0:
            raise ValueError(
                "anchor needs n_temperatures >= 2, n_replicas >= 1 and max_recentre >= 0, got "
                f"{self.n_temperatures}, {self.n_replicas}, {self.max_recentre}"
            )
        if not self.systematic_tolerance_K > 0:
            raise ValueError(
                f"systematic_tolerance_K must be > 0, got {self.systematic_tolerance_K}"
            )
        factors = [float(f) for f in self.enthalpy_temperature_factors]
        if len(set(factors)) < 2 or not all(f > 0 for f in factors):
            raise ValueError(
                "enthalpy_temperature_factors must hold at least two different factors > 0 "
                f"(a line Δh(T) is fitted), got {self.enthalpy_temperature_factors}"
            )
        self.enthalpy_temperature_factors = factors
