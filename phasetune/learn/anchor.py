"""The anchor of each target: Δg_k(θ₀) = g_B − g_A of the pretrained model at (T_k, P_k).

DiffTRe only estimates how Δg changes with θ; its value at θ₀ comes from a free-energy
measurement of the model itself. Route: the model's own transition temperature T*₀ at P_k
(two-phase coexistence for solid|liquid, or Frenkel–Ladd / liquid TI + Gibbs–Helmholtz
for any pair; or given by the user), then Gibbs–Helmholtz along the isobar from
Δg(T*₀) = 0 to T_k with the NPT enthalpies of both phases:

    Δg(T_k) = −T_k ∫_{T*₀}^{T_k} Δh(T')/T'² dT',      Δs = Δh(T*₀)/T*₀.

Its error is σ(Δg) = Δs·σ(T*₀). Δs converts a tolerance in K to one in eV/atom and a
Δg estimate to the implied T* − T_k ≈ Δg/Δs.

Results are cached as JSON under ``cache_dir``, keyed by a hash of the model's weights, the
target's physics and the measurement settings: a second run with the same model and
settings measures nothing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path

import numpy as np
import torch

from phasetune.free_energy.measurement import TransitionMeasurement, measure_transitions
from phasetune.free_energy.transition import (
    delta_g_curve,
    enthalpies,
)
from phasetune.potentials.base import sampling_copy
from phasetune.potentials.fingerprint import model_fingerprint
from phasetune.settings import AnchorSettings
from phasetune.targets import TransitionTarget

log = logging.getLogger(__name__)
__all__ = [
    "Anchor",
    "AnchorSettings",
    "TransitionMeasurement",
    "anchor_from_transition",
    "compute_anchors",
    "measure_transitions",
]


@dataclass
class Anchor:
    """Δg_k(θ₀) at the target's (T, P) in eV/atom, and the transition entropy Δs."""

    target: str
    temperature_K: float
    pressure_GPa: float
    model_transition_K: float
    model_transition_error_K: float
    delta_g_eV: float
    delta_g_error_eV: float
    delta_s_eV_per_K: float
    method: str
    enthalpy_temperatures_K: list[float] = field(default_factory=list)
    delta_h_eV: list[float] = field(default_factory=list)
    #: the part of ``delta_g_error_eV`` from the enthalpies (the Gibbs–Helmholtz integral's,
    #: or a given latent heat's); the rest is T*'s, |Δs| σ_T*
    enthalpy_error_eV: float = 0.0

    def describe(self) -> str:
        return (
            f"{self.target}: model T* = {self.model_transition_K:.2f} ± "
            f"{self.model_transition_error_K:.2f} K ({self.method}) → Δg({self.temperature_K:g} K)"
            f" = {self.delta_g_eV * 1e3:+.3f} ± {self.delta_g_error_eV * 1e3:.3f} meV/atom, "
            f"Δs = {self.delta_s_eV_per_K * 1e6:.2f} μeV/K/atom"
        )


def _plain(obj):
    if is_dataclass(obj):
        return {k: _plain(v) for k, v in asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return obj


#: bumped when an anchor's content changes meaning (2: Δg's error includes the
#: Gibbs–Helmholtz integral's; 3: enthalpy errors include drift), so that older cached
#: anchors are measured again
ANCHOR_FORMAT = 3


def _cache_key(model: torch.nn.Module, target: TransitionTarget, settings: AnchorSettings) -> str:
    physics = target.as_dict()
    for key in ("name", "tolerance_K", "source"):
        physics.pop(key)
    if physics["model_latent_heat_eV"] is None:  # keys of anchors without one stay as they were
        physics.pop("model_latent_heat_eV")
        physics.pop("model_latent_heat_error_eV")
    settings_dict = _plain(settings)
    for block in ("coexistence", "enthalpy", "solid", "liquid"):
        settings_dict[block].pop("progress", None)
        settings_dict[block].pop("frames_path", None)
        settings_dict[block].pop("cache_dir", None)
    payload = json.dumps(
        [ANCHOR_FORMAT, model_fingerprint(model), physics, settings_dict], sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def anchor_from_transition(
    model: torch.nn.Module,
    target: TransitionTarget,
    *,
    transition_K: float,
    transition_error_K: float,
    method: str,
    settings: AnchorSettings,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> Anchor:
    """Δg(T_k) by Gibbs–Helmholtz from Δg(T*) = 0, with enthalpies sampled in NPT.

    Its error combines T*'s (|Δs| σ_T*) with the Gibbs–Helmholtz integral's from the
    enthalpies' own errors, which a given T* (σ_T* = 0) does not remove.
    """
    if not (math.isfinite(transition_K) and transition_K > 0):
        raise RuntimeError(
            f"target {target.name}: the model's transition temperature could not be measured "
            f"({transition_K}); give it as model_transition_K in the target, or widen the "
            "anchor window"
        )
    if target.model_latent_heat_eV is not None:
        return _anchor_from_latent_heat(target, transition_K, transition_error_K, method)
    lo = min(transition_K, target.temperature_K) * (1 - settings.enthalpy_margin)
    hi = max(transition_K, target.temperature_K) * (1 + settings.enthalpy_margin)
    temperatures = [float(t) for t in np.linspace(lo, hi, 3)]
    h = enthalpies(
        sampling_copy(model),
        {phase: target.atoms(phase) for phase in target.phases},
        temperatures_K=temperatures,
        pressure_GPa=target.pressure_GPa,
        settings=settings.enthalpy,
        device=device,
        dtype=dtype,
    )
    delta_h = h[target.phase_b][0] - h[target.phase_a][0]

    def delta_g_at_target(delta_h_eV) -> float:
        return float(
            delta_g_curve(
                [target.temperature_K],
                reference_temperature_K=transition_K,
                delta_g_reference_eV=0.0,
                enthalpy_temperatures_K=temperatures,
                delta_h_eV=delta_h_eV,
            )[0]
        )

    delta_g = delta_g_at_target(delta_h)
    # Δg(T_k) is linear in the sampled Δh_j (least-squares fit, then the GH integral), so
    # σ²_GH = Σ_j (∂Δg/∂Δh_j)² σ²(Δh_j), the derivatives being Δg of unit vectors
    delta_h_error = np.hypot(h[target.phase_b][1], h[target.phase_a][1])
    sensitivity = [
        delta_g_at_target(np.eye(len(temperatures))[j]) for j in range(len(temperatures))
    ]
    integration_error = float(np.sqrt(np.sum((np.asarray(sensitivity) * delta_h_error) ** 2)))
    slope, intercept = np.polyfit(temperatures, delta_h, 1)
    delta_s = float((intercept + slope * transition_K) / transition_K)
    if not delta_s > 0:
        sampled = ", ".join(
            f"{1e3 * dh:+.1f} ± {1e3 * e:.1f} at {t:.0f} K"
            for t, dh, e in zip(temperatures, delta_h, delta_h_error, strict=True)
        )
        raise RuntimeError(
            f"target {target.name}: Δs = s_{target.phase_b} − s_{target.phase_a} = {delta_s:.3g} "
            f"eV/K/atom at T* = {transition_K:.1f} K is not positive; Δh(T) = {sampled} "
            "meV/atom. Either the phases are in the wrong order (give [low-T phase, high-T "
            "phase]) or the enthalpy runs are too short or their boxes too small to resolve Δh "
            "(the enthalpy of N atoms fluctuates by ≈ k_B T √(3/N) per frame): raise "
            "anchor.settings.enthalpy.production_steps or n_atoms, or give the model's latent "
            "heat as model_latent_heat_eV in the target"
        )
    return Anchor(
        target=target.name,
        temperature_K=target.temperature_K,
        pressure_GPa=target.pressure_GPa,
        model_transition_K=float(transition_K),
        model_transition_error_K=float(transition_error_K),
        delta_g_eV=delta_g,
        delta_g_error_eV=math.hypot(abs(delta_s) * transition_error_K, integration_error),
        delta_s_eV_per_K=delta_s,
        method=method,
        enthalpy_temperatures_K=temperatures,
        delta_h_eV=[float(x) for x in delta_h],
        enthalpy_error_eV=integration_error,
    )


def _anchor_from_latent_heat(
    target: TransitionTarget, transition_K: float, transition_error_K: float, method: str
) -> Anchor:
    """Δg(T_k) = Δh (1 − T_k/T*) from a given latent heat Δh at T* (constant Δh), no MD.

    σ²(Δg) = ((1 − T_k/T*) σ_Δh)² + (Δh T_k/T*² σ_T*)²; Δs = Δh/T*.
    """
    latent, t_k = float(target.model_latent_heat_eV), target.temperature_K
    delta_g = latent * (1.0 - t_k / transition_K)
    latent_part = (1.0 - t_k / transition_K) * target.model_latent_heat_error_eV
    error = math.hypot(latent_part, latent * t_k / transition_K**2 * transition_error_K)
    return Anchor(
        target=target.name,
        temperature_K=t_k,
        pressure_GPa=target.pressure_GPa,
        model_transition_K=float(transition_K),
        model_transition_error_K=float(transition_error_K),
        delta_g_eV=delta_g,
        delta_g_error_eV=error,
        delta_s_eV_per_K=latent / transition_K,
        method=f"{method}, latent heat given",
        enthalpy_error_eV=abs(latent_part),
    )


def compute_anchors(
    model: torch.nn.Module,
    targets: Sequence[TransitionTarget],
    settings: AnchorSettings,
    *,
    cache_dir: str | Path | None = None,
    guesses_K: Sequence[float | None] | None = None,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> list[Anchor]:
    """Anchors of all targets: from the cache, from ``model_transition_K``, or measured."""
    cache = Path(cache_dir) if cache_dir is not None else None
    anchors: list[Anchor | None] = [None] * len(targets)
    keys = [_cache_key(model, t, settings) for t in targets]
    if cache is not None:
        for k, key in enumerate(keys):
            path = cache / f"anchor_{key}.json"
            if path.exists():
                anchors[k] = Anchor(**json.loads(path.read_text()))
                log.info("anchor of %s from the cache %s", targets[k].name, path)
    to_measure = [
        k for k, a in enumerate(anchors) if a is None and targets[k].model_transition_K is None
    ]
    measured: dict[int, TransitionMeasurement] = {}
    if to_measure:
        guesses = [
            (guesses_K[k] if guesses_K is not None and guesses_K[k] else targets[k].temperature_K)
            for k in to_measure
        ]
        results = measure_transitions(
            model,
            [targets[k] for k in to_measure],
            settings,
            guesses_K=guesses,
            device=device,
            dtype=dtype,
        )
        measured = dict(zip(to_measure, results, strict=True))
    for k, target in enumerate(targets):
        if anchors[k] is not None:
            continue
        if k in measured:
            m = measured[k]
            t_star, err, method = m.transition_temperature_K, m.error_K, m.method
        else:
            t_star, method = float(target.model_transition_K), "given"
            err = float(target.model_transition_error_K)
        anchors[k] = anchor_from_transition(
            model,
            target,
            transition_K=t_star,
            transition_error_K=err,
            method=method,
            settings=settings,
            device=device,
            dtype=dtype,
        )
        log.info(anchors[k].describe())
        if cache is not None:
            cache.mkdir(parents=True, exist_ok=True)
            path = cache / f"anchor_{keys[k]}.json"
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(anchors[k]), indent=2))
            tmp.replace(path)
    return [a for a in anchors if a is not None]
