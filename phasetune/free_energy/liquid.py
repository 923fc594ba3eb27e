"""Absolute free energy of a liquid by thermodynamic integration from the ideal gas.

The Helmholtz free energy of N atoms in a volume V at temperature T splits into

    F = F_id + U_∞ + F_ex,

the ideal gas (species s with N_s atoms of mass m_s, de Broglie wavelength
Λ_s = h / √(2π m_s k_BT))

    βF_id = Σ_s [−N_s ln(V/Λ_s³) + ln N_s!],

the energy U_∞ of the same atoms infinitely far apart (0 for Lennard-Jones; the isolated-atom
energies for MACE), and the excess part F_ex, which is reached along a reversible path that
never crosses the liquid–gas transition:

1. an **isotherm** at a supercritical T_h (above the liquid–gas critical point) from ρ = 0 to
   the liquid density ρ_l,

       βF_ex/N (T_h, ρ_l) = ∫_0^{ρ_l} (Z(ρ) − 1)/ρ dρ,   Z − 1 = βP_conf/ρ,

   with P_conf the configurational (virial) pressure, the instantaneous pressure without its
   kinetic part 2K/(3V). (Z − 1)/ρ → B₂ as ρ → 0, so the integrand is finite. This identity,
   ∂(βF_ex)/∂V = −β⟨P_conf⟩, holds for any N, so the path is exact for the finite system;
2. an **isochore** at ρ_l from β_h = 1/k_BT_h to β = 1/k_BT,

       βF_ex/N (T, ρ_l) = β_h F_ex/N (T_h, ρ_l) + ∫_{β_h}^{β} ⟨U − U_∞⟩/N dβ'.

Both integrals use Gauss–Legendre quadrature; every node is one NVT state point, and all of
them run in ONE batch. ρ_l is given or measured by an NPT run of the liquid at (T, P). The
Gibbs free energy per atom is g = F/N + P V/N with P the target pressure; at the NPT density
g is stationary in V (∂g/∂v = P − P_int = 0), so an error δv of the measured volume shifts g
only at second order, ½ δv²/(v κ_T).

Statistical errors: the standard error of each node's mean (statistical inefficiency of the
series of valid frames) is propagated through the quadrature weights (independent runs).
Frames the phase check flags as not liquid (crystallised) are excluded.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch_sim as ts
from ase import Atoms

from phasetune.sampling.frames import Frames
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points
from phasetune.thermo.statistics import mean_and_drift_aware_error, statistical_inefficiency
from phasetune.units import AMU_IN_KG, EV_IN_J, EV_PER_A3_PER_GPA, KB_EV_PER_K, PLANCK_EV_S

log = logging.getLogger(__name__)

#: Spacing (Å) of the dilute lattice for U_∞ when the model does not tell its cutoff.
FALLBACK_DILUTE_SPACING_A = 20.0
#: Attributes under which models keep their interaction cutoff in Å (LennardJones: cutoff;
#: torch-sim's MACE wrapper: r_max).
_CUTOFF_ATTRIBUTES = ("cutoff_A", "cutoff", "r_max")


def thermal_wavelength_A(*, mass_amu: float, temperature_K: float) -> float:
    """de Broglie thermal wavelength Λ = h / √(2π m k_BT) in Å."""
    if mass_amu <= 0 or temperature_K <= 0:
        raise ValueError(f"need positive mass and temperature, got {mass_amu=}, {temperature_K=}")
    kT_J = KB_EV_PER_K * temperature_K * EV_IN_J
    return PLANCK_EV_S * EV_IN_J / math.sqrt(2.0 * math.pi * mass_amu * AMU_IN_KG * kT_J) * 1e10


def ideal_gas_free_energy_eV(
    *, species: Sequence[tuple[float, int]], volume_A3: float, temperature_K: float
) -> float:
    """F_id = k_BT Σ_s [−N_s ln(V/Λ_s³) + ln N_s!] in eV; ``species``: (mass in amu, N_s)."""
    if volume_A3 <= 0:
        raise ValueError(f"volume must be > 0, got {volume_A3}")
    beta_f = 0.0
    for mass, n in species:
        wavelength = thermal_wavelength_A(mass_amu=mass, temperature_K=temperature_K)
        beta_f += -n * math.log(volume_A3 / wavelength**3) + math.lgamma(n + 1)
    return KB_EV_PER_K * temperature_K * beta_f


def gauss_legendre(a: float, b: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the n-point Gauss–Legendre rule on [a, b] (nodes ascending)."""
    x, w = np.polynomial.legendre.leggauss(n)
    return a + (b - a) * (x + 1.0) / 2.0, w * (b - a) / 2.0


@dataclass
class LiquidFreeEnergy:
    """Result of :func:`liquid_free_energy`; energies in eV per atom.

    ``f_eV_per_atom`` = f_id + u_∞ + f_ex, ``g_eV_per_atom`` = f + P v. Errors are one
    standard error (statistical, from the quadrature nodes). The isotherm arrays (at T_h)
    hold the node densities (Å⁻³), the integrand (Z − 1)/ρ (Å³) and its errors; the isochore
    arrays (at ρ_l) hold the node β (1/eV), ⟨U − U_∞⟩/N (eV) and its errors; both are
    empty of isochore nodes when T = T_h.
    """

    g_eV_per_atom: float
    g_error_eV: float
    f_eV_per_atom: float
    f_excess_eV_per_atom: float
    f_ideal_eV_per_atom: float
    u_infinity_eV_per_atom: float
    density_per_A3: float
    volume_A3_per_atom: float
    temperature_K: float
    pressure_GPa: float
    reference_temperature_K: float
    n_atoms: int
    #: βF_ex/N at (T_h, ρ_l) from the isotherm, and its error.
    beta_f_excess_reference: float
    beta_f_excess_reference_error: float
    #: ∫ ⟨U − U_∞⟩/N dβ along the isochore, and its error.
    isochore_integral: float
    isochore_integral_error: float
    isotherm_densities_per_A3: np.ndarray
    isotherm_integrand_A3: np.ndarray
    isotherm_errors_A3: np.ndarray
    isochore_betas_per_eV: np.ndarray
    isochore_energies_eV_per_atom: np.ndarray
    isochore_errors_eV_per_atom: np.ndarray
    #: set when the density was measured (NPT): its standard error and the second-order
    #: shift ½ δv²/(v κ_T) = ½ k_BT δV²/(N Var V) it causes in g (a bias, ≥ 0).
    density_error_per_A3: float | None = None
    g_density_shift_eV: float | None = None

    def describe(self) -> str:
        """A few human-readable lines."""
        lines = [
            f"liquid, {self.n_atoms} atoms at T = {self.temperature_K:g} K, "
            f"P = {self.pressure_GPa:g} GPa: g = {self.g_eV_per_atom:.6f} ± "
            f"{self.g_error_eV:.6f} eV/atom",
            f"  f = {self.f_eV_per_atom:.6f} eV/atom = ideal {self.f_ideal_eV_per_atom:.6f} "
            f"+ U_inf {self.u_infinity_eV_per_atom:.6f} + excess "
            f"{self.f_excess_eV_per_atom:.6f}",
            f"  rho = {self.density_per_A3:.6f} 1/A^3 (v = {self.volume_A3_per_atom:.4f} A^3)"
            + (
                f" ± {self.density_error_per_A3:.2g} (NPT; shifts g by "
                f"{self.g_density_shift_eV:.2g} eV)"
                if self.density_error_per_A3 is not None
                else " (given)"
            ),
            f"  isotherm at T_h = {self.reference_temperature_K:g} K "
            f"({self.isotherm_densities_per_A3.size} nodes): beta F_ex/N = "
            f"{self.beta_f_excess_reference:.5f} ± {self.beta_f_excess_reference_error:.5f}",
            f"  isochore ({self.isochore_betas_per_eV.size} nodes): "
            f"int <U - U_inf>/N dbeta = {self.isochore_integral:.5f} ± "
            f"{self.isochore_integral_error:.5f}",
        ]
        return "\n".join(lines)


def _model_cutoff_A(model) -> float | None:
    for name in _CUTOFF_ATTRIBUTES:
        value = getattr(model, name, None)
        if value is None:
            continue
        try:
            cutoff = float(value)
        except (TypeError, ValueError, RuntimeError):
            continue
        if math.isfinite(cutoff) and cutoff > 0:
            return cutoff
    return None


def dilute_energy_eV(model, atoms: Atoms, *, device=None, dtype=torch.float64) -> float:
    """U_∞: the model's energy of ``atoms`` on a simple cubic lattice with no pair in range.

    The spacing is 2·cutoff + 1 Å (cutoff from the model's ``cutoff_A``, ``cutoff`` or
    ``r_max``), or :data:`FALLBACK_DILUTE_SPACING_A` when the model does not tell it.
    """
    cutoff = _model_cutoff_A(model)
    spacing = 2.0 * cutoff + 1.0 if cutoff is not None else FALLBACK_DILUTE_SPACING_A
    n = len(atoms)
    side = math.ceil(n ** (1.0 / 3.0) - 1e-9)
    grid = np.stack(np.meshgrid(*(np.arange(side),) * 3, indexing="ij"), -1).reshape(-1, 3)
    dilute = Atoms(
        numbers=atoms.numbers,
        positions=spacing * grid[:n].astype(float),
        cell=np.eye(3) * spacing * side,
        masses=atoms.get_masses(),
        pbc=True,
    )
    device = torch.device(device) if device is not None else model.device
    state = ts.io.atoms_to_state([dilute], device=device, dtype=dtype)
    return float(model(state)["energy"].detach().sum())


def _scaled(atoms: Atoms, density_per_A3: float) -> Atoms:
    """A copy of ``atoms`` with cell and positions scaled to N/V = ``density_per_A3``."""
    scaled = atoms.copy()
    factor = (len(atoms) / (density_per_A3 * atoms.get_volume())) ** (1.0 / 3.0)
    scaled.set_cell(atoms.cell.array * factor, scale_atoms=True)
    return scaled


def _valid_series(frames: Frames, values: torch.Tensor, system: int, name: str) -> torch.Tensor:
    """Values of ``system`` over its valid frames; warn on flagged frames, raise on too few."""
    valid = frames.valid_frames(system)
    n_bad = frames.n_frames - valid.numel()
    if valid.numel() < 2:
        raise RuntimeError(
            f"liquid free energy: state point {name!r} has {valid.numel()} of "
            f"{frames.n_frames} frames recognised as liquid (the rest crystallised or left "
            "the phase); at least 2 are needed. Raise T, lower the density, or sample longer."
        )
    if n_bad:
        log.warning(
            "liquid free energy: %s: %d/%d frames flagged as not liquid (crystallised) are "
            "excluded from the average",
            name,
            n_bad,
            frames.n_frames,
        )
    return values[valid, system]


def _mean_and_error(series: torch.Tensor) -> tuple[float, float]:
    """Mean and error of one run, drift included (:func:`mean_and_drift_aware_error`)."""
    return mean_and_drift_aware_error(series, method="autocorrelation")


def _species(atoms: Atoms) -> list[tuple[float, int]]:
    """(mass, count) per species (atomic number); one mass per species is required."""
    species = []
    masses = atoms.get_masses()
    for z in np.unique(atoms.numbers):
        species_masses = masses[atoms.numbers == z]
        if not np.allclose(species_masses, species_masses[0], rtol=0, atol=1e-9):
            raise ValueError(
                f"atoms of atomic number {z} carry different masses; give each species one mass"
            )
        mass = float(species_masses[0])
        if mass <= 0:
            raise ValueError(f"atomic number {z}: mass must be > 0, got {mass}")
        species.append((mass, int(species_masses.size)))
    return species


def _with_frames_suffix(settings: SamplerSettings, suffix: str) -> SamplerSettings:
    if not settings.frames_path:
        return settings
    path = Path(settings.frames_path)
    return dataclasses.replace(
        settings, frames_path=str(path.with_name(f"{path.stem}_{suffix}{path.suffix}"))
    )


def _measure_density(
    model, atoms: Atoms, temperature_K, pressure_GPa, settings, device, dtype
) -> tuple[float, float, float]:
    """ρ_l = N/⟨V⟩ from an NPT liquid run; also its error and g's second-order shift."""
    point = StatePoint(
        name="density",
        phase="liquid",
        atoms=atoms,
        temperature_K=temperature_K,
        pressure_GPa=pressure_GPa,
        cell_mode="isotropic",
    )
    frames, _ = sample_state_points(
        model, [point], _with_frames_suffix(settings, "density"), device=device, dtype=dtype
    )
    volume = _valid_series(frames, frames.volume, 0, "density (NPT)").to(torch.float64)
    n = len(atoms)
    mean_v, error_v = _mean_and_error(volume)
    density = n / mean_v
    density_error = density * error_v / mean_v
    var_v = float(volume.var(correction=1))
    kT = KB_EV_PER_K * temperature_K
    shift = 0.5 * kT * error_v**2 / (n * var_v) if var_v > 0 else 0.0
    log.info(
        "liquid density at %g K, %g GPa: %.6f ± %.2g 1/A^3 (%d valid frames, inefficiency %.1f)",
        temperature_K,
        pressure_GPa,
        density,
        density_error,
        volume.numel(),
        float(statistical_inefficiency(volume)),
    )
    return density, density_error, shift


def isotherm_pressures_GPa(
    densities_per_A3: np.ndarray, integrand_A3: np.ndarray, errors_A3: np.ndarray, temperature_K
) -> tuple[np.ndarray, np.ndarray]:
    """Total pressure at each isotherm node, P = ρ k_BT (1 + ρ·(Z − 1)/ρ), and its error (GPa)."""
    kT = KB_EV_PER_K * temperature_K
    rho = np.asarray(densities_per_A3, dtype=float)
    pressure = rho * kT * (1 + rho * np.asarray(integrand_A3)) / EV_PER_A3_PER_GPA
    return pressure, rho**2 * kT * np.asarray(errors_A3) / EV_PER_A3_PER_GPA


def check_supercritical_isotherm(
    densities_per_A3: np.ndarray, integrand_A3: np.ndarray, errors_A3: np.ndarray, temperature_K
) -> None:
    """Raise when the isotherm crosses the liquid–gas two-phase region.

    Above the critical point P(ρ) rises with ρ and stays positive. A pressure that falls
    between two nodes, or is negative, by more than 3σ is a van der Waals loop: T_h lies
    below the model's critical temperature and βF_ex from this path is wrong (Ti1 EAM at
    6000 K: P < 0 from ρ = 0.0125 to 0.040 Å⁻³, bench/RESULTS.md, "subcritical").
    """
    p, err = isotherm_pressures_GPa(densities_per_A3, integrand_A3, errors_A3, temperature_K)
    falls = np.diff(p) < -3 * np.hypot(err[1:], err[:-1])
    negative = p < -3 * err
    if falls.any() or negative.any():
        nodes = ", ".join(f"{q:.2f}" for q in p)
        raise RuntimeError(
            f"the liquid's isotherm at T_h = {temperature_K:g} K crosses the liquid–gas "
            f"two-phase region (pressure {nodes} GPa at densities "
            f"{float(densities_per_A3[0]):.4f}…{float(densities_per_A3[-1]):.4f} Å⁻³): T_h is "
            "below this model's critical temperature and the liquid free energy would be "
            "wrong; raise liquid_reference_temperature_K"
        )


def liquid_free_energy(
    model,
    atoms: Atoms,
    *,
    temperature_K: float,
    pressure_GPa: float,
    reference_temperature_K: float,
    settings: SamplerSettings,
    n_densities: int = 8,
    n_temperatures: int = 6,
    density_per_A3: float | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> LiquidFreeEnergy:
    """Absolute Gibbs free energy per atom of the liquid at (T, P), from the ideal gas.

    Path: isotherm at T_h (``n_densities`` Gauss–Legendre nodes in ρ ∈ (0, ρ_l]), then
    isochore at ρ_l (``n_temperatures`` nodes in β ∈ [β_h, β]; none when T = T_h), all
    NVT state points in one batch (``settings`` for every run; liquids are melted first for
    ``settings.melt_steps`` at ``settings.melt_temperature_factor``·T). See the module
    docstring for the equations.

    Args:
        model: torch-sim model (pass a frozen :func:`~phasetune.potentials.base.sampling_copy`).
        atoms: periodic starting structure (e.g. ``build_structure("liquid", ...)``): sets N,
            the species, and the start of the NPT run; scaled to each node's density.
        temperature_K: target temperature T.
        pressure_GPa: target pressure P (enters through ρ_l and the P v term).
        reference_temperature_K: T_h ≥ T, above the liquid–gas critical point (checked
            after the isotherm is sampled: :func:`check_supercritical_isotherm`).
        settings: MD settings used for every run.
        n_densities, n_temperatures: Gauss–Legendre nodes on the isotherm and isochore.
        density_per_A3: liquid density N/V; if None it is measured by an NPT run at (T, P).
        device, dtype: where and in which precision to sample (default: the model's device).
    """
    for name, value in (
        ("temperature_K", temperature_K),
        ("reference_temperature_K", reference_temperature_K),
    ):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive finite number, got {value}")
    if reference_temperature_K < temperature_K:
        raise ValueError(
            f"reference_temperature_K (T_h = {reference_temperature_K:g} K) must be >= "
            f"temperature_K ({temperature_K:g} K): the path starts at a supercritical T_h "
            "and cools along the isochore"
        )
    if not math.isfinite(pressure_GPa):
        raise ValueError(f"pressure_GPa must be finite, got {pressure_GPa}")
    if density_per_A3 is not None and not (math.isfinite(density_per_A3) and density_per_A3 > 0):
        raise ValueError(f"density_per_A3 must be a positive finite number, got {density_per_A3}")
    if isinstance(n_densities, bool) or not isinstance(n_densities, int) or n_densities < 1:
        raise ValueError(f"n_densities must be an integer >= 1, got {n_densities!r}")
    if isinstance(n_temperatures, bool) or not isinstance(n_temperatures, int):
        raise ValueError(f"n_temperatures must be an integer, got {n_temperatures!r}")
    isochore = temperature_K < reference_temperature_K
    if isochore and n_temperatures < 1:
        raise ValueError(
            f"n_temperatures must be >= 1 when T < T_h, got {n_temperatures} "
            f"(T = {temperature_K:g} K, T_h = {reference_temperature_K:g} K)"
        )
    if not isinstance(atoms, Atoms) or len(atoms) == 0:
        raise ValueError("atoms must be a non-empty ase.Atoms")
    if not all(atoms.pbc) or not atoms.get_volume() > 0:
        raise ValueError("atoms must be periodic in all directions with a non-zero cell volume")
    species = _species(atoms)
    n = len(atoms)

    # 1. liquid density
    density_error = g_density_shift = None
    if density_per_A3 is None:
        density_per_A3, density_error, g_density_shift = _measure_density(
            model, atoms, temperature_K, pressure_GPa, settings, device, dtype
        )

    # 2.–3. NVT nodes of the isotherm (at T_h) and the isochore (at ρ_l), one batch
    kT_h = KB_EV_PER_K * reference_temperature_K
    beta_h, beta = 1.0 / kT_h, 1.0 / (KB_EV_PER_K * temperature_K)
    rho_nodes, rho_weights = gauss_legendre(0.0, density_per_A3, n_densities)
    if isochore:
        beta_nodes, beta_weights = gauss_legendre(beta_h, beta, n_temperatures)
    else:
        beta_nodes, beta_weights = np.zeros(0), np.zeros(0)
    points = [
        StatePoint(
            name=f"isotherm_{k}",
            phase="liquid",
            atoms=_scaled(atoms, float(rho)),
            temperature_K=reference_temperature_K,
            pressure_GPa=pressure_GPa,
            cell_mode="fixed",
        )
        for k, rho in enumerate(rho_nodes)
    ]
    liquid = _scaled(atoms, density_per_A3)
    points += [
        StatePoint(
            name=f"isochore_{k}",
            phase="liquid",
            atoms=liquid,
            temperature_K=1.0 / (KB_EV_PER_K * float(b)),
            pressure_GPa=pressure_GPa,
            cell_mode="fixed",
        )
        for k, b in enumerate(beta_nodes)
    ]
    frames, _ = sample_state_points(model, points, settings, device=device, dtype=dtype)
    u_inf = dilute_energy_eV(model, atoms, device=device, dtype=dtype)

    # isotherm integrand (Z − 1)/ρ = β P_conf / ρ², P_conf = P − 2K/(3V) (virial part only)
    pressure = frames.pressure.to(torch.float64) * EV_PER_A3_PER_GPA
    volume = frames.volume.to(torch.float64)
    p_conf = pressure - 2.0 * frames.kinetic_energy.to(torch.float64) / (3.0 * volume)
    iso_mean, iso_err = np.zeros(n_densities), np.zeros(n_densities)
    for k, rho in enumerate(rho_nodes):
        series = _valid_series(frames, beta_h * p_conf / rho**2, k, points[k].name)
        iso_mean[k], iso_err[k] = _mean_and_error(series)
    check_supercritical_isotherm(rho_nodes, iso_mean, iso_err, reference_temperature_K)
    beta_f_ref = float(rho_weights @ iso_mean)
    beta_f_ref_err = float(np.sqrt(((rho_weights * iso_err) ** 2).sum()))

    # isochore integrand ⟨U − U_∞⟩/N
    excess_u = (frames.potential_energy.to(torch.float64) - u_inf) / n
    ich_mean, ich_err = np.zeros(beta_nodes.size), np.zeros(beta_nodes.size)
    for k in range(beta_nodes.size):
        system = n_densities + k
        series = _valid_series(frames, excess_u, system, points[system].name)
        ich_mean[k], ich_err[k] = _mean_and_error(series)
    ich_integral = float(beta_weights @ ich_mean)
    ich_integral_err = float(np.sqrt(((beta_weights * ich_err) ** 2).sum()))

    # 4. assemble: F/N = f_id + u_∞ + f_ex, g = F/N + P v
    kT = KB_EV_PER_K * temperature_K
    volume_total = n / density_per_A3
    f_excess = kT * (beta_f_ref + ich_integral)
    f_ideal = (
        ideal_gas_free_energy_eV(
            species=species, volume_A3=volume_total, temperature_K=temperature_K
        )
        / n
    )
    f = f_ideal + u_inf / n + f_excess
    v = 1.0 / density_per_A3
    g = f + pressure_GPa * EV_PER_A3_PER_GPA * v
    g_err = kT * math.sqrt(beta_f_ref_err**2 + ich_integral_err**2)
    result = LiquidFreeEnergy(
        g_eV_per_atom=g,
        g_error_eV=g_err,
        f_eV_per_atom=f,
        f_excess_eV_per_atom=f_excess,
        f_ideal_eV_per_atom=f_ideal,
        u_infinity_eV_per_atom=u_inf / n,
        density_per_A3=float(density_per_A3),
        volume_A3_per_atom=v,
        temperature_K=float(temperature_K),
        pressure_GPa=float(pressure_GPa),
        reference_temperature_K=float(reference_temperature_K),
        n_atoms=n,
        beta_f_excess_reference=beta_f_ref,
        beta_f_excess_reference_error=beta_f_ref_err,
        isochore_integral=ich_integral,
        isochore_integral_error=ich_integral_err,
        isotherm_densities_per_A3=rho_nodes,
        isotherm_integrand_A3=iso_mean,
        isotherm_errors_A3=iso_err,
        isochore_betas_per_eV=beta_nodes,
        isochore_energies_eV_per_atom=ich_mean,
        isochore_errors_eV_per_atom=ich_err,
        density_error_per_A3=density_error,
        g_density_shift_eV=g_density_shift,
    )
    log.info("%s", result.describe())
    return result
