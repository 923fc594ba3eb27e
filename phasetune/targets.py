"""Experimental targets of the fine-tuning: phase transitions at (T, P), checked on load.

A transition target says: phases A and B coexist at ``temperature_K`` and ``pressure_GPa``
(Δg = g_B − g_A = 0 there), to within ``tolerance_K``. Each phase needs a starting
structure. Optionally the model's own transition temperature at that pressure can be given
(``model_transition_K``): then the anchor Δg(θ₀) comes from Gibbs–Helmholtz instead of a
measurement.

YAML form (a Hydra group, ``phasetune/conf/targets/``)::

    targets:
      - name: argon_triple_point
        phases: [fcc, liquid]
        temperature_K: 83.8
        pressure_GPa: 0.0
        tolerance_K: 1.0
        source: "CRC Handbook, triple point of Ar"
        structures:
          fcc: {element: Ar, lattice_A: 5.40, n_atoms: 108}
          liquid: {element: Ar, lattice_A: 5.65, n_atoms: 108}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ase import Atoms

from phasetune.sampling.sampler import MAX_ABS_PRESSURE_GPA
from phasetune.structures import PHASES, build_structure

SOLID_PHASES = tuple(p for p in PHASES if p != "liquid")


@dataclass(frozen=True)
class PhaseStructure:
    """Starting structure of one phase: a ``build_structure`` recipe."""

    element: str
    lattice_A: float
    n_atoms: int
    c_over_a: float | None = None

    def build(self, phase: str) -> Atoms:
        return build_structure(
            phase,
            element=self.element,
            lattice_A=self.lattice_A,
            n_atoms=self.n_atoms,
            c_over_a=self.c_over_a,
        )


@dataclass(frozen=True)
class TransitionTarget:
    """Phases A and B coexist at (T, P) within ``tolerance_K`` (Δg = g_B − g_A = 0)."""

    name: str
    phase_a: str
    phase_b: str
    temperature_K: float
    pressure_GPa: float
    tolerance_K: float
    structures: Mapping[str, PhaseStructure]
    source: str = ""
    #: the model's own transition temperature at ``pressure_GPa`` if known (K): anchor by
    #: Gibbs–Helmholtz instead of measuring it
    model_transition_K: float | None = None
    #: its statistical error (K), carried into σ(Δg) of the anchor
    model_transition_error_K: float = 0.0
    #: with ``model_transition_K``: the model's latent heat Δh = h_B − h_A at T* (eV/atom),
    #: e.g. from the same measurement; the anchor is then Δg(T) = Δh (1 − T/T*) (constant
    #: Δh, exact when Δc_p = 0) and needs no MD
    model_latent_heat_eV: float | None = None
    #: its statistical error (eV/atom)
    model_latent_heat_error_eV: float = 0.0
    #: melting-point guesses of [A, B] for a solid|solid target measured by the melting of
    #: the competing solids (anchor method=melting; needs ``structures.liquid``)
    melting_guesses_K: tuple[float, float] | None = None
    extra: dict = field(default_factory=dict)

    @property
    def phases(self) -> tuple[str, str]:
        return (self.phase_a, self.phase_b)

    @property
    def is_melting(self) -> bool:
        return self.phase_b == "liquid" and self.phase_a in SOLID_PHASES

    def atoms(self, phase: str) -> Atoms:
        return self.structures[phase].build(phase)

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "phases": [self.phase_a, self.phase_b],
            "temperature_K": self.temperature_K,
            "pressure_GPa": self.pressure_GPa,
            "tolerance_K": self.tolerance_K,
            "source": self.source,
            "model_transition_K": self.model_transition_K,
            "model_transition_error_K": self.model_transition_error_K,
            "model_latent_heat_eV": self.model_latent_heat_eV,
            "model_latent_heat_error_eV": self.model_latent_heat_error_eV,
            "melting_guesses_K": self.melting_guesses_K,
            "structures": {
                phase: {
                    "element": s.element,
                    "lattice_A": s.lattice_A,
                    "n_atoms": s.n_atoms,
                    "c_over_a": s.c_over_a,
                }
                for phase, s in self.structures.items()
            },
        }


class TargetError(ValueError):
    """A target definition is invalid; the message names the target and the field."""


def _field(entry: Mapping, key: str, where: str):
    if key not in entry or entry[key] is None:
        raise TargetError(f"{where}: missing field {key!r}")
    return entry[key]


def _number(entry: Mapping, key: str, where: str, default=None) -> float | None:
    value = entry.get(key, default)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise TargetError(f"{where}: field {key!r} must be a number, got {value!r}") from None


def target_from_dict(entry: Mapping, index: int = 0) -> TransitionTarget:
    """Validate one target entry (a dict from YAML); errors name the field."""
    entry = dict(entry)
    where = f"targets[{index}]" + (f" ({entry['name']})" if entry.get("name") else "")
    known = {
        "name",
        "phases",
        "temperature_K",
        "pressure_GPa",
        "tolerance_K",
        "source",
        "structures",
        "model_transition_K",
        "model_transition_error_K",
        "model_latent_heat_eV",
        "model_latent_heat_error_eV",
        "melting_guesses_K",
    }
    unknown = sorted(set(entry) - known)
    if unknown:
        raise TargetError(f"{where}: unknown field(s) {unknown}; known: {sorted(known)}")
    phases = list(_field(entry, "phases", where))
    if len(phases) != 2:
        raise TargetError(f"{where}: field 'phases' needs exactly two phases, got {phases}")
    for phase in phases:
        if phase not in PHASES:
            raise TargetError(
                f"{where}: field 'phases': unknown phase {phase!r}; choose from {', '.join(PHASES)}"
            )
    if phases[0] == phases[1]:
        raise TargetError(f"{where}: field 'phases': A and B are both {phases[0]!r}")
    if phases[0] == "liquid":
        raise TargetError(
            f"{where}: field 'phases': put the liquid second ([solid, liquid]) so that "
            "Δg = g_liquid − g_solid > 0 below the melting point"
        )
    temperature = _number(entry, "temperature_K", where)
    if temperature is None:
        raise TargetError(f"{where}: missing field 'temperature_K'")
    if not temperature > 0:
        raise TargetError(f"{where}: field 'temperature_K' must be > 0 K, got {temperature}")
    pressure = _number(entry, "pressure_GPa", where, default=0.0)
    if abs(pressure) > MAX_ABS_PRESSURE_GPA:
        raise TargetError(
            f"{where}: field 'pressure_GPa' = {pressure} is beyond ±{MAX_ABS_PRESSURE_GPA:g}; "
            "give the pressure in GPa"
        )
    tolerance = _number(entry, "tolerance_K", where, default=1.0)
    if not tolerance > 0:
        raise TargetError(f"{where}: field 'tolerance_K' must be > 0 K, got {tolerance}")
    model_t = _number(entry, "model_transition_K", where)
    if model_t is not None and not model_t > 0:
        raise TargetError(f"{where}: field 'model_transition_K' must be > 0 K, got {model_t}")
    model_t_error = _number(entry, "model_transition_error_K", where, default=0.0)
    if not model_t_error >= 0:
        raise TargetError(
            f"{where}: field 'model_transition_error_K' must be >= 0 K, got {model_t_error}"
        )
    latent_heat = _number(entry, "model_latent_heat_eV", where)
    if latent_heat is not None and model_t is None:
        raise TargetError(
            f"{where}: field 'model_latent_heat_eV' is the latent heat at model_transition_K: "
            "give that too"
        )
    if latent_heat is not None and not latent_heat > 0:
        raise TargetError(
            f"{where}: field 'model_latent_heat_eV' = {latent_heat} must be > 0 eV/atom "
            "(h_B − h_A with the phases ordered [low-T phase, high-T phase])"
        )
    latent_heat_error = _number(entry, "model_latent_heat_error_eV", where, default=0.0)
    if not latent_heat_error >= 0:
        raise TargetError(
            f"{where}: field 'model_latent_heat_error_eV' must be >= 0, got {latent_heat_error}"
        )
    raw_structures = dict(_field(entry, "structures", where))
    structures = {}
    extra = ["liquid"] if "liquid" not in phases and raw_structures.get("liquid") else []
    for phase in phases + extra:
        if phase not in raw_structures or raw_structures[phase] is None:
            raise TargetError(
                f"{where}: field 'structures' has no entry for phase {phase!r} "
                "(give element, lattice_A, n_atoms)"
            )
        spec = dict(raw_structures[phase])
        sub = f"{where}: structures.{phase}"
        lattice = _number(spec, "lattice_A", sub)
        n_atoms = _number(spec, "n_atoms", sub)
        if lattice is None or n_atoms is None or "element" not in spec:
            raise TargetError(f"{sub}: needs element, lattice_A and n_atoms")
        if not lattice > 0 or not n_atoms >= 1:
            raise TargetError(f"{sub}: lattice_A and n_atoms must be positive")
        structures[phase] = PhaseStructure(
            element=str(spec["element"]),
            lattice_A=lattice,
            n_atoms=int(n_atoms),
            c_over_a=_number(spec, "c_over_a", sub),
        )
    melting_guesses = entry.get("melting_guesses_K")
    if melting_guesses is not None:
        try:
            melting_guesses = tuple(float(t) for t in melting_guesses)
        except (TypeError, ValueError):
            melting_guesses = ()
        if len(melting_guesses) != 2 or min(melting_guesses) <= 0 or "liquid" in phases:
            raise TargetError(
                f"{where}: field 'melting_guesses_K' takes two positive melting-point guesses "
                "(K), one per solid of a solid|solid target"
            )
    name = str(entry.get("name") or f"{phases[0]}_{phases[1]}_{pressure:g}GPa")
    target = TransitionTarget(
        name=name,
        phase_a=phases[0],
        phase_b=phases[1],
        temperature_K=temperature,
        pressure_GPa=pressure,
        tolerance_K=tolerance,
        structures=structures,
        source=str(entry.get("source", "")),
        model_transition_K=model_t,
        model_transition_error_K=model_t_error,
        model_latent_heat_eV=latent_heat,
        model_latent_heat_error_eV=latent_heat_error,
        melting_guesses_K=melting_guesses,
    )
    for phase in phases + extra:  # build once now so that a bad structure fails at load time
        try:
            target.atoms(phase)
        except Exception as err:  # noqa: BLE001 - re-raised with the field named
            raise TargetError(f"{where}: structures.{phase}: {err}") from err
    return target


def load_targets(entries: Iterable[Mapping]) -> list[TransitionTarget]:
    """Validate a list of target entries; names must be unique."""
    targets = [target_from_dict(entry, k) for k, entry in enumerate(entries)]
    if not targets:
        raise TargetError("no targets given (targets: [...] is empty)")
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise TargetError(f"target names must be unique, got {names}")
    return targets
