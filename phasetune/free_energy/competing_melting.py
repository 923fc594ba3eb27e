"""Solid–solid transition from the melting points of the two competing solids.

The route of Mendelev, Underwood & Ackland (J. Chem. Phys. 145, 154102 (2016)): no absolute
free energy is needed. Each solid X ∈ {A, B} coexists with the liquid at its own melting
point T_m,X (two-phase coexistence, :mod:`phasetune.free_energy.coexistence`), where
g_X = g_liquid. Gibbs–Helmholtz along the isobar then links the two solids:

    Δg_AB(T)/T = −∫_{T_m,A}^{T} (h_B − h_A)/T'² dT' − ∫_{T_m,A}^{T_m,B} (h_l − h_B)/T'² dT',

(Δg_AB = g_B − g_A; the second term is Δg_AB(T_m,A)/T_m,A = −Δg_B,l(T_m,A)/T_m,A). Written
this way, the liquid is needed only between the two melting points (never deeply
undercooled) and the solids only between the transition and T_m,A. The transition
temperature is the root T* of Δg_AB(T*) = 0.

Its errors come from the two melting points: ∂Δg_AB(T)/∂T_m,A = T Δh_m,A/T_m,A² (and likewise
for B), so σ(T*) ≈ (T*/T_m)² Δh_m/Δh_AB · σ(T_m) per melting point: for titanium (latent
heat 0.13–0.14 eV/atom against an α–β enthalpy of 0.02–0.03) about 2–3 σ(T_m). The
enthalpies' statistical error is propagated as well. This route and Frenkel–Ladd share only
the enthalpy runs; their dominant errors (interface kinetics and box size here, switching
dissipation and the crystal's finite-size free energy there) are independent, so their
agreement validates both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms
from torch_sim.models.interface import ModelInterface

from phasetune.free_energy.bracketing import melting_temperatures_bracketed
from phasetune.free_energy.coexistence import CoexistenceResult, CoexistenceSettings
from phasetune.free_energy.transition import delta_g_curve, enthalpies, nearest_root
from phasetune.sampling.sampler import SamplerSettings


def delta_g_from_melting_points(
    temperatures_K,
    *,
    melting_a_K: float,
    melting_b_K: float,
    solid_temperatures_K: Sequence[float],
    delta_h_ab_eV: Sequence[float],
    liquid_temperatures_K: Sequence[float],
    delta_h_lb_eV: Sequence[float],
    degree: int = 1,
) -> np.ndarray:
    """Δg_AB(T) = g_B − g_A (eV/atom) from the module docstring's formula.

    ``delta_h_ab_eV`` = h_B − h_A at ``solid_temperatures_K``; ``delta_h_lb_eV`` = h_l − h_B
    at ``liquid_temperatures_K`` (between the two melting points); Δh_AB is fitted with a
    polynomial of ``degree``, Δh_lB with a line.
    """
    g_lb_at_ma = delta_g_curve(
        [melting_a_K],
        reference_temperature_K=melting_b_K,
        delta_g_reference_eV=0.0,
        enthalpy_temperatures_K=liquid_temperatures_K,
        delta_h_eV=delta_h_lb_eV,
        degree=1,
    )[0]  # g_l − g_B at T_m,A
    return delta_g_curve(
        temperatures_K,
        reference_temperature_K=melting_a_K,
        delta_g_reference_eV=-float(g_lb_at_ma),
        enthalpy_temperatures_K=solid_temperatures_K,
        delta_h_eV=delta_h_ab_eV,
        degree=degree,
    )


@dataclass
class MeltingRouteTransition:
    """T* of a solid–solid pair A|B at one pressure from the melting of both solids."""

    phase_a: str
    phase_b: str
    pressure_GPa: float
    melting_a: CoexistenceResult
    melting_b: CoexistenceResult
    solid_temperatures_K: np.ndarray
    delta_h_ab_eV: np.ndarray
    liquid_temperatures_K: np.ndarray
    delta_h_lb_eV: np.ndarray
    transition_temperature_K: float
    error_K: float
    #: the parts of ``error_K`` (K), combined in quadrature
    error_parts_K: dict = field(default_factory=dict)
    degree: int = 1

    def delta_g(self, temperatures_K) -> np.ndarray:
        """Δg_AB(T) in eV per atom along the isobar."""
        return delta_g_from_melting_points(
            temperatures_K,
            melting_a_K=self.melting_a.melting_temperature_K,
            melting_b_K=self.melting_b.melting_temperature_K,
            solid_temperatures_K=self.solid_temperatures_K,
            delta_h_ab_eV=self.delta_h_ab_eV,
            liquid_temperatures_K=self.liquid_temperatures_K,
            delta_h_lb_eV=self.delta_h_lb_eV,
            degree=self.degree,
        )

    def describe(self) -> str:
        parts = ", ".join(f"{k} {v:.0f} K" for k, v in self.error_parts_K.items())
        return (
            f"{self.phase_a}|{self.phase_b} at {self.pressure_GPa:g} GPa (melting of the "
            f"competing solids: T_m,{self.phase_a} = {self.melting_a.melting_temperature_K:.0f}"
            f" ± {self.melting_a.error_K:.0f} K, T_m,{self.phase_b} = "
            f"{self.melting_b.melting_temperature_K:.0f} ± {self.melting_b.error_K:.0f} K): "
            f"T* = {self.transition_temperature_K:.1f} ± {self.error_K:.1f} K ({parts})"
        )

    def as_dict(self) -> dict:
        return {
            "method": "melting",
            "phase_a": self.phase_a,
            "phase_b": self.phase_b,
            "pressure_GPa": self.pressure_GPa,
            "transition_temperature_K": self.transition_temperature_K,
            "error_K": self.error_K,
            "error_parts_K": dict(self.error_parts_K),
            "melting_a": self.melting_a.as_dict(),
            "melting_b": self.melting_b.as_dict(),
            "bracketed": bool(self.melting_a.bracketed and self.melting_b.bracketed),
            "solid_temperatures_K": self.solid_temperatures_K.tolist(),
            "delta_h_ab_eV": self.delta_h_ab_eV.tolist(),
            "liquid_temperatures_K": self.liquid_temperatures_K.tolist(),
            "delta_h_lb_eV": self.delta_h_lb_eV.tolist(),
        }


def transition_from_melting(
    model: ModelInterface,
    structures: dict[str, Atoms],
    liquid: Atoms,
    *,
    pressure_GPa: float,
    transition_guess_K: float,
    melting_guesses_K: Sequence[float],
    coexistence_settings: CoexistenceSettings | None = None,
    enthalpy_settings: SamplerSettings | None = None,
    window: float = 0.05,
    max_recentre: int = 2,
    n_temperatures: int = 4,
    n_replicas: int = 2,
    n_enthalpy_temperatures: int = 4,
    degree: int = 1,
    device=None,
    dtype: torch.dtype = torch.float64,
) -> MeltingRouteTransition:
    """T* of ``structures`` = {A: atoms, B: atoms} (two crystals) with ``liquid``'s help.

    ``melting_guesses_K`` = (T_m,A, T_m,B) guesses centre the coexistence windows
    (``window``, ``n_temperatures`` × ``n_replicas`` boxes each, re-centred at most
    ``max_recentre`` times); the solids' enthalpies are
    sampled at ``n_enthalpy_temperatures`` from 0.9·``transition_guess_K`` to T_m,A, the
    liquid's and B's between the two melting points.
    """
    if len(structures) != 2:
        raise ValueError(f"give exactly two solids, got {list(structures)}")
    if len(melting_guesses_K) != 2:
        raise ValueError("give one melting-point guess per solid")
    (phase_a, atoms_a), (phase_b, atoms_b) = structures.items()
    settings = coexistence_settings or CoexistenceSettings()
    enthalpy_settings = enthalpy_settings or SamplerSettings(melt_steps=500)
    melting = [
        melting_temperatures_bracketed(
            model,
            atoms,
            solid_phase=phase,
            pressures_GPa=[pressure_GPa],
            guesses_K=[guess],
            window=window,
            max_recentre=max_recentre,
            n_temperatures=n_temperatures,
            n_replicas=n_replicas,
            settings=settings,
            device=device,
            dtype=dtype,
        )[0]
        for phase, atoms, guess in (
            (phase_a, atoms_a, melting_guesses_K[0]),
            (phase_b, atoms_b, melting_guesses_K[1]),
        )
    ]
    t_ma, t_mb = (m.melting_temperature_K for m in melting)
    if not (math.isfinite(t_ma) and math.isfinite(t_mb)):
        raise RuntimeError(
            f"no melting point for {phase_a} or {phase_b}: {melting[0].describe()}; "
            f"{melting[1].describe()}"
        )
    solid_temps = np.linspace(0.9 * transition_guess_K, t_ma, n_enthalpy_temperatures)
    liquid_temps = np.linspace(min(t_ma, t_mb), max(t_ma, t_mb), 3)
    h_solids = enthalpies(
        model,
        {phase_a: atoms_a, phase_b: atoms_b},
        temperatures_K=solid_temps.tolist(),
        pressure_GPa=pressure_GPa,
        settings=enthalpy_settings,
        device=device,
        dtype=dtype,
    )
    h_liquid = enthalpies(
        model,
        {phase_b: atoms_b, "liquid": liquid},
        temperatures_K=liquid_temps.tolist(),
        pressure_GPa=pressure_GPa,
        settings=enthalpy_settings,
        device=device,
        dtype=dtype,
    )
    dh_ab = h_solids[phase_b][0] - h_solids[phase_a][0]
    dh_lb = h_liquid["liquid"][0] - h_liquid[phase_b][0]
    dh_ab_err = np.hypot(h_solids[phase_a][1], h_solids[phase_b][1])
    dh_lb_err = np.hypot(h_liquid["liquid"][1], h_liquid[phase_b][1])

    def root(ma=t_ma, mb=t_mb, ab=dh_ab, lb=dh_lb) -> float:
        return root_of_delta_g_melting(
            transition_guess_K,
            melting_a_K=ma,
            melting_b_K=mb,
            solid_temperatures_K=solid_temps,
            delta_h_ab_eV=ab,
            liquid_temperatures_K=liquid_temps,
            delta_h_lb_eV=lb,
            degree=degree,
        )

    t_star = root()
    sa, sb = melting[0].error_K, melting[1].error_K
    parts = {
        f"T_m,{phase_a}": 0.5 * abs(root(ma=t_ma + sa) - root(ma=t_ma - sa)),
        f"T_m,{phase_b}": 0.5 * abs(root(mb=t_mb + sb) - root(mb=t_mb - sb)),
        "enthalpies": math.hypot(
            enthalpy_error_K(lambda ab: root(ab=ab), dh_ab, dh_ab_err),
            enthalpy_error_K(lambda lb: root(lb=lb), dh_lb, dh_lb_err),
        ),
    }
    return MeltingRouteTransition(
        phase_a=phase_a,
        phase_b=phase_b,
        pressure_GPa=float(pressure_GPa),
        melting_a=melting[0],
        melting_b=melting[1],
        solid_temperatures_K=solid_temps,
        delta_h_ab_eV=dh_ab,
        liquid_temperatures_K=liquid_temps,
        delta_h_lb_eV=dh_lb,
        transition_temperature_K=t_star,
        error_K=math.sqrt(sum(v**2 for v in parts.values())),
        error_parts_K=parts,
        degree=degree,
    )


def enthalpy_error_K(root, delta_h_eV: np.ndarray, errors_eV: np.ndarray) -> float:
    """σ(T*) from independent errors of the enthalpy differences, one per temperature.

    Each temperature's Δh comes from its own MD runs, so the errors are independent:
    σ(T*)² = Σ_i (∂T*/∂Δh_i · σ_i)², the derivative by a central difference of ``root``
    (T* as a function of the Δh array) with point i moved by ± σ_i. A common shift of all
    points by σ would count them as fully correlated and overstate the error by up to √n.
    """
    delta_h_eV, errors_eV = np.asarray(delta_h_eV, float), np.asarray(errors_eV, float)
    total = 0.0
    for i, sigma in enumerate(errors_eV):
        up, down = delta_h_eV.copy(), delta_h_eV.copy()
        up[i] += sigma
        down[i] -= sigma
        total += (0.5 * (root(up) - root(down))) ** 2
    return math.sqrt(total)


def root_of_delta_g_melting(guess_K: float, *, search_factor: float = 1.5, **curve) -> float:
    """T* with Δg_AB(T*) = 0 on :func:`delta_g_from_melting_points`, nearest ``guess_K``."""
    return nearest_root(
        lambda t: delta_g_from_melting_points(t, **curve), guess_K, search_factor=search_factor
    )
