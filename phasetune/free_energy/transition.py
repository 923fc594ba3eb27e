"""Δg(T) between two phases from absolute free energies, and the transition temperature.

Route: absolute Gibbs energies of both phases at one temperature T₀ (Frenkel–Ladd for a
crystal, thermodynamic integration from the ideal gas for a liquid), then Gibbs–Helmholtz
along the isobar with the enthalpies h(T) of both phases sampled by NPT at a few
temperatures (all in one batch):

    Δg(T)/T = Δg(T₀)/T₀ − ∫_{T₀}^{T} Δh(T')/T'² dT',     Δ = B − A,

and the transition temperature is the root T* of Δg(T*) = 0. Its error propagates σ(Δg₀)
through the root, σ_T* = σ_Δg₀ · |∂T*/∂Δg₀| (Δh treated as exact; its statistical error is
far smaller at these run lengths and is reported separately).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from ase import Atoms
from torch_sim.models.interface import ModelInterface

from phasetune.free_energy.latent import LatentProperties, latent_properties
from phasetune.free_energy.liquid import liquid_free_energy
from phasetune.free_energy.solid import FrenkelLaddSettings, solid_free_energy
from phasetune.free_energy.systematics import (
    dissipation_systematic_eV,
    extrapolation_systematic_eV,
    finite_size_systematic_eV,
)
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points
from phasetune.thermo import gibbs_helmholtz_delta_g, mean_and_drift_aware_error
from phasetune.units import KB_EV_PER_K

log = logging.getLogger(__name__)


def delta_g_curve(
    temperatures_K: np.ndarray | Sequence[float],
    *,
    reference_temperature_K: float,
    delta_g_reference_eV: float,
    enthalpy_temperatures_K: Sequence[float],
    delta_h_eV: Sequence[float],
    degree: int = 1,
) -> np.ndarray:
    """Δg(T) = (T/T₀) Δg(T₀) − T ∫_{T₀}^{T} Δh/T'² dT' (Δh a polynomial fit in T)."""
    t = torch.as_tensor(np.asarray(temperatures_K, dtype=float), dtype=torch.float64)
    from_t0 = gibbs_helmholtz_delta_g(
        t,
        coexistence_temperature_K=float(reference_temperature_K),
        temperatures_K=torch.as_tensor(list(enthalpy_temperatures_K), dtype=torch.float64),
        delta_h_eV=torch.as_tensor(list(delta_h_eV), dtype=torch.float64),
        degree=degree,
    )
    return (t / reference_temperature_K * delta_g_reference_eV + from_t0).numpy()


def nearest_root(curve, guess_K: float, *, search_factor: float = 2.0) -> float:
    """T with curve(T) = 0 nearest ``guess_K`` in guess/f … guess·f (NaN if none).

    ``curve`` maps an array of temperatures to Δg. A coarse grid finds the sign changes (a
    Gibbs–Helmholtz curve from a polynomial Δh may cross more than once); the one nearest
    the guess is solved by :func:`scipy.optimize.brentq` to 1e-9 K inside its grid cell.
    """
    from scipy.optimize import brentq

    grid = np.geomspace(guess_K / search_factor, guess_K * search_factor, 401)
    dg = curve(grid)
    crossings = np.nonzero(np.diff(np.sign(dg)) != 0)[0]
    if len(crossings) == 0:
        return math.nan
    k = crossings[np.argmin(np.abs(grid[crossings] - guess_K))]
    for end in (k, k + 1):
        if dg[end] == 0.0:
            return float(grid[end])
    return float(brentq(lambda t: float(curve(np.array([t]))[0]), grid[k], grid[k + 1], xtol=1e-9))


def root_of_delta_g(
    *,
    reference_temperature_K: float,
    delta_g_reference_eV: float,
    enthalpy_temperatures_K: Sequence[float],
    delta_h_eV: Sequence[float],
    degree: int = 1,
    search_factor: float = 2.0,
) -> float:
    """T* with Δg(T*) = 0 on the Gibbs–Helmholtz curve, searched in T₀/f … T₀·f (NaN if none)."""

    def curve(t: np.ndarray) -> np.ndarray:
        return delta_g_curve(
            t,
            reference_temperature_K=reference_temperature_K,
            delta_g_reference_eV=delta_g_reference_eV,
            enthalpy_temperatures_K=enthalpy_temperatures_K,
            delta_h_eV=delta_h_eV,
            degree=degree,
        )

    return nearest_root(curve, reference_temperature_K, search_factor=search_factor)


class IsobarMeans(NamedTuple):
    """Per-atom means along an isobar, one entry per temperature, with drift-aware errors."""

    h_eV: np.ndarray
    h_error_eV: np.ndarray
    v_A3: np.ndarray
    v_error_A3: np.ndarray


def _mean_and_error(series: torch.Tensor, name: str) -> tuple[float, float]:
    """Mean and error of one run (:func:`phasetune.thermo.mean_and_drift_aware_error`): a
    run whose halves differ by more than their noise allows (a cell still relaxing after a
    short equilibration) carries the drift in its error."""
    if len(series) < 16:
        # too short to block: σ/√n, a lower bound
        log.warning("%s: %d frames, too few for a blocking error; using σ/√n", name, len(series))
    return mean_and_drift_aware_error(series)


def enthalpies(
    model: ModelInterface,
    structures: dict[str, Atoms],
    *,
    temperatures_K: Sequence[float],
    pressure_GPa: float,
    settings: SamplerSettings,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> dict[str, IsobarMeans]:
    """h(T)/N = ⟨U + K + P V⟩/N (eV) and v(T) = ⟨V⟩/N (Å³) of each phase, one NPT batch."""
    points = [
        StatePoint(
            name=f"{phase}_{t:g}K",
            phase=phase,
            atoms=atoms,
            temperature_K=float(t),
            pressure_GPa=pressure_GPa,
        )
        for phase, atoms in structures.items()
        for t in temperatures_K
    ]
    frames, _ = sample_state_points(model, points, settings, device=device, dtype=dtype)
    per_atom = frames.n_atoms_per_system.to(torch.float64)
    out: dict[str, IsobarMeans] = {}
    k = 0
    for phase in structures:
        columns = []
        for _ in temperatures_K:
            valid = frames.valid_frames(k)
            if len(valid) < 4:
                n_atoms = int(frames.n_atoms_per_system[k])
                small = (
                    f"; a box of {n_atoms} atoms changes phase easily (a small liquid crystallises"
                    " even above T_m, most of all in a box a crystal fills, e.g. 32 or 108 atoms"
                    " of fcc): use more atoms"
                    if n_atoms < 128
                    else ""
                )
                raise RuntimeError(
                    f"{points[k].name}: only {len(valid)} frames stayed {phase}; the phase is "
                    f"not (meta)stable there: narrow the temperature range{small}"
                )
            h = _mean_and_error(frames.enthalpy[valid, k].double() / per_atom[k], points[k].name)
            v = _mean_and_error(frames.volume[valid, k].double() / per_atom[k], points[k].name)
            columns.append((*h, *v))
            k += 1
        out[phase] = IsobarMeans(*(np.array(c) for c in zip(*columns, strict=True)))
    return out


@dataclass
class FreeEnergyTransition:
    """Δg(T) = g_B − g_A and T* at one pressure, from absolute free energies."""

    phase_a: str
    phase_b: str
    pressure_GPa: float
    reference_temperature_K: float
    g_a_eV: float
    g_a_error_eV: float
    g_b_eV: float
    g_b_error_eV: float
    enthalpy_temperatures_K: np.ndarray
    h_a_eV: np.ndarray
    h_b_eV: np.ndarray
    transition_temperature_K: float
    #: statistical (replica spread of the free energies)
    error_K: float
    #: estimated systematic (switching dissipation, box size; :mod:`.systematics`)
    systematic_error_K: float = 0.0
    degree: int = 1
    details: dict = field(default_factory=dict)
    #: per-atom errors of h and volumes v ± error (Å³) at the enthalpy temperatures
    h_a_error_eV: np.ndarray = field(default_factory=lambda: np.zeros(0))
    h_b_error_eV: np.ndarray = field(default_factory=lambda: np.zeros(0))
    v_a_A3: np.ndarray = field(default_factory=lambda: np.zeros(0))
    v_a_error_A3: np.ndarray = field(default_factory=lambda: np.zeros(0))
    v_b_A3: np.ndarray = field(default_factory=lambda: np.zeros(0))
    v_b_error_A3: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @property
    def total_error_K(self) -> float:
        return math.hypot(self.error_K, self.systematic_error_K)

    @property
    def delta_g_reference_eV(self) -> float:
        return self.g_b_eV - self.g_a_eV

    @property
    def delta_g_reference_error_eV(self) -> float:
        return math.hypot(self.g_a_error_eV, self.g_b_error_eV)

    def delta_g(self, temperatures_K) -> np.ndarray:
        """Δg(T) in eV per atom along the isobar."""
        return delta_g_curve(
            temperatures_K,
            reference_temperature_K=self.reference_temperature_K,
            delta_g_reference_eV=self.delta_g_reference_eV,
            enthalpy_temperatures_K=self.enthalpy_temperatures_K,
            delta_h_eV=self.h_b_eV - self.h_a_eV,
            degree=self.degree,
        )

    @property
    def latent(self) -> LatentProperties | None:
        """Δh, Δv and dT*/dP at T* (None without volumes or a finite T*)."""
        if not len(self.v_a_A3) or not math.isfinite(self.transition_temperature_K):
            return None
        return latent_properties(
            temperatures_K=self.enthalpy_temperatures_K,
            h_a_eV=self.h_a_eV,
            h_a_error_eV=self.h_a_error_eV,
            h_b_eV=self.h_b_eV,
            h_b_error_eV=self.h_b_error_eV,
            v_a_A3=self.v_a_A3,
            v_a_error_A3=self.v_a_error_A3,
            v_b_A3=self.v_b_A3,
            v_b_error_A3=self.v_b_error_A3,
            at_temperature_K=self.transition_temperature_K,
        )

    def describe(self) -> str:
        return (
            f"{self.phase_a}|{self.phase_b} at {self.pressure_GPa:g} GPa (free energies): "
            f"Δg({self.reference_temperature_K:g} K) = {self.delta_g_reference_eV * 1e3:.2f} ± "
            f"{self.delta_g_reference_error_eV * 1e3:.2f} meV/atom → T* = "
            f"{self.transition_temperature_K:.1f} ± {self.error_K:.1f} K (statistical) ± "
            f"{self.systematic_error_K:.1f} K (systematic, estimated)"
            + (
                f"; at T*: Δh = {latent.delta_h_eV * 1e3:.1f} ± "
                f"{latent.delta_h_error_eV * 1e3:.1f} meV/atom, ΔV/V = "
                f"{latent.relative_volume_change * 100:+.2f} %, dT*/dP = "
                f"{latent.slope_K_per_GPa:.0f} ± {latent.slope_error_K_per_GPa:.0f} K/GPa"
                if (latent := self.latent) is not None
                else ""
            )
        )

    def as_dict(self) -> dict:
        return {
            "method": "free_energy",
            "phase_a": self.phase_a,
            "phase_b": self.phase_b,
            "pressure_GPa": self.pressure_GPa,
            "reference_temperature_K": self.reference_temperature_K,
            "g_a_eV": self.g_a_eV,
            "g_a_error_eV": self.g_a_error_eV,
            "g_b_eV": self.g_b_eV,
            "g_b_error_eV": self.g_b_error_eV,
            "delta_g_eV": self.delta_g_reference_eV,
            "delta_g_error_eV": self.delta_g_reference_error_eV,
            "enthalpy_temperatures_K": self.enthalpy_temperatures_K.tolist(),
            "h_a_eV": self.h_a_eV.tolist(),
            "h_b_eV": self.h_b_eV.tolist(),
            "transition_temperature_K": self.transition_temperature_K,
            "error_K": self.error_K,
            "systematic_error_K": self.systematic_error_K,
            "total_error_K": self.total_error_K,
            "h_a_error_eV": self.h_a_error_eV.tolist(),
            "h_b_error_eV": self.h_b_error_eV.tolist(),
            "v_a_A3": self.v_a_A3.tolist(),
            "v_b_A3": self.v_b_A3.tolist(),
            "latent": None if self.latent is None else self.latent.as_dict(),
            **self.details,
        }


def absolute_gibbs_energy(
    model: ModelInterface,
    atoms: Atoms,
    *,
    phase: str,
    temperature_K: float,
    pressure_GPa: float,
    solid_settings: FrenkelLaddSettings,
    liquid_settings: SamplerSettings,
    liquid_reference_temperature_K: float | None,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> tuple[float, float, dict]:
    """G/N (eV) and its error for any phase: Frenkel–Ladd for crystals, TI for the liquid."""
    if phase == "liquid":
        if liquid_reference_temperature_K is None:
            raise ValueError(
                "the liquid route needs liquid_reference_temperature_K, a supercritical "
                "temperature (above the liquid–gas critical point)"
            )
        result = liquid_free_energy(
            model,
            atoms,
            temperature_K=temperature_K,
            pressure_GPa=pressure_GPa,
            reference_temperature_K=liquid_reference_temperature_K,
            settings=liquid_settings,
            device=device,
            dtype=dtype,
        )
        return result.g_eV_per_atom, result.g_error_eV, {"liquid": result.describe()}
    result = solid_free_energy(
        model,
        atoms,
        phase=phase,
        temperature_K=temperature_K,
        pressure_GPa=pressure_GPa,
        settings=solid_settings,
        device=device,
        dtype=dtype,
    )
    return (
        result.g_eV_per_atom,
        result.g_error_eV,
        {
            phase: result.describe(),
            f"{phase}_finite_size_correction_eV": result.finite_size_correction_eV,
            f"{phase}_dissipation_eV_per_atom": float(np.mean(result.dissipation_eV))
            / result.n_atoms,
            # per replica, eV per system of n_atoms: W_rev = F_E^CM − F^CM and W_d
            f"{phase}_replica_work_reversible_eV": np.asarray(result.work_reversible_eV).tolist(),
            f"{phase}_replica_dissipation_eV": np.asarray(result.dissipation_eV).tolist(),
            f"{phase}_n_atoms": result.n_atoms,
            f"{phase}_extrapolated_from_n_atoms": [n for n, _, _ in result.extrapolated_from],
        },
    )


def transition_from_free_energies(
    model: ModelInterface,
    structures: dict[str, Atoms],
    *,
    pressure_GPa: float,
    reference_temperature_K: float,
    enthalpy_temperatures_K: Sequence[float],
    solid_settings: FrenkelLaddSettings | None = None,
    liquid_settings: SamplerSettings | None = None,
    enthalpy_settings: SamplerSettings | None = None,
    liquid_reference_temperature_K: float | None = None,
    degree: int = 1,
    systematic_tolerance_K: float = 15.0,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> FreeEnergyTransition:
    """T* of the pair ``structures`` = {phase_a: atoms_a, phase_b: atoms_b} at one pressure.

    Works for solid–solid (both Frenkel–Ladd) and solid–liquid pairs. T₀ =
    ``reference_temperature_K`` should be near the expected T*, with both phases
    (meta)stable over ``enthalpy_temperatures_K``.
    """
    if len(structures) != 2:
        raise ValueError(f"give exactly two phases, got {list(structures)}")
    if len(enthalpy_temperatures_K) < degree + 1:
        raise ValueError(f"need at least {degree + 1} enthalpy temperatures for degree {degree}")
    solid_settings = solid_settings or FrenkelLaddSettings()
    liquid_settings = liquid_settings or SamplerSettings(melt_steps=500)
    enthalpy_settings = enthalpy_settings or SamplerSettings(melt_steps=500)
    (phase_a, atoms_a), (phase_b, atoms_b) = structures.items()
    g, details = {}, {}
    for phase, atoms in ((phase_a, atoms_a), (phase_b, atoms_b)):
        g[phase] = absolute_gibbs_energy(
            model,
            atoms,
            phase=phase,
            temperature_K=reference_temperature_K,
            pressure_GPa=pressure_GPa,
            solid_settings=solid_settings,
            liquid_settings=liquid_settings,
            liquid_reference_temperature_K=liquid_reference_temperature_K,
            device=device,
            dtype=dtype,
        )
        details.update(g[phase][2])
    corrections = {p: details.get(f"{p}_finite_size_correction_eV", 0.0) for p in g}
    one_corrected = sum(1 for c in corrections.values() if c) == 1
    undone = solid_settings.finite_size_correction == "auto" and "liquid" not in g and one_corrected
    if undone:
        # one crystal corrected and the other not is worse than neither: their uncorrected
        # errors (≈ −8 k_BT/N each: LJ fcc, Ti1 hcp) largely cancel in Δg at similar N
        for p, c in corrections.items():
            g[p] = (g[p][0] + c, *g[p][1:])
        log.warning(
            "finite-size correction left out for both crystals: only one of %s could be "
            "computed (the other is mechanically unstable in the harmonic approximation); "
            "use boxes of similar size for the two phases",
            list(g),
        )
        details["finite_size_correction"] = "none (only one crystal could be corrected)"
    h = enthalpies(
        model,
        structures,
        temperatures_K=enthalpy_temperatures_K,
        pressure_GPa=pressure_GPa,
        settings=enthalpy_settings,
        device=device,
        dtype=dtype,
    )
    dh = h[phase_b][0] - h[phase_a][0]
    dg0 = g[phase_b][0] - g[phase_a][0]
    sigma = math.hypot(g[phase_a][1], g[phase_b][1])

    def root(delta_g0: float) -> float:
        return root_of_delta_g(
            reference_temperature_K=reference_temperature_K,
            delta_g_reference_eV=delta_g0,
            enthalpy_temperatures_K=enthalpy_temperatures_K,
            delta_h_eV=dh,
            degree=degree,
        )

    t_star = root(dg0)
    error = 0.5 * abs(root(dg0 + sigma) - root(dg0 - sigma))
    details["delta_h_error_eV"] = np.hypot(h[phase_a][1], h[phase_b][1]).tolist()
    crystals = [p for p in (phase_a, phase_b) if p != "liquid"]
    dissipation = math.hypot(
        *(dissipation_systematic_eV(details[f"{p}_dissipation_eV_per_atom"]) for p in crystals),
        0.0,
    )
    extrapolated = [details[f"{p}_extrapolated_from_n_atoms"] for p in crystals]
    if all(extrapolated):
        finite_size = extrapolation_systematic_eV(
            [tuple(sizes) for sizes in extrapolated],
            temperature_K=reference_temperature_K,
            kB_eV_per_K=KB_EV_PER_K,
        )
    else:
        finite_size = finite_size_systematic_eV(
            [(details[f"{p}_n_atoms"], 0.0 if undone else corrections[p]) for p in crystals],
            temperature_K=reference_temperature_K,
            kB_eV_per_K=KB_EV_PER_K,
        )
    systematic = math.hypot(dissipation, finite_size)
    details["systematic_eV"] = {"dissipation": dissipation, "finite_size": finite_size}
    systematic_K = 0.5 * abs(root(dg0 + systematic) - root(dg0 - systematic))
    if systematic_K > systematic_tolerance_K:
        log.warning(
            "%s|%s: the estimated systematic error of T*, %.0f K (dissipation %.2f, finite "
            "size %.2f meV/atom), exceeds %.0f K: switch more slowly or use larger boxes",
            phase_a,
            phase_b,
            systematic_K,
            dissipation * 1e3,
            finite_size * 1e3,
            systematic_tolerance_K,
        )
    return FreeEnergyTransition(
        phase_a=phase_a,
        phase_b=phase_b,
        pressure_GPa=float(pressure_GPa),
        reference_temperature_K=float(reference_temperature_K),
        g_a_eV=g[phase_a][0],
        g_a_error_eV=g[phase_a][1],
        g_b_eV=g[phase_b][0],
        g_b_error_eV=g[phase_b][1],
        enthalpy_temperatures_K=np.asarray(enthalpy_temperatures_K, dtype=float),
        h_a_eV=h[phase_a].h_eV,
        h_b_eV=h[phase_b].h_eV,
        h_a_error_eV=h[phase_a].h_error_eV,
        h_b_error_eV=h[phase_b].h_error_eV,
        v_a_A3=h[phase_a].v_A3,
        v_a_error_A3=h[phase_a].v_error_A3,
        v_b_A3=h[phase_b].v_A3,
        v_b_error_A3=h[phase_b].v_error_A3,
        transition_temperature_K=t_star,
        error_K=error,
        systematic_error_K=systematic_K,
        degree=degree,
        details=details,
    )
