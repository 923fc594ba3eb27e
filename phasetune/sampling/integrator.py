"""Stochastic cell rescaling (C-rescale) NPT with per-system temperature, pressure and cell mode.

One batch may hold liquids (isotropic cell), non-cubic solids (anisotropic, orthogonal cell
axes scale independently) and fixed-cell systems (NVT), each at its own (T, P). The step is
torch-sim's C-rescale splitting (Bernetti & Bussi, J. Chem. Phys. 153, 114107 (2020);
Del Tatto et al., Appl. Sci. 12, 1139 (2022)), with a per-system mask on the cell update:

    V-rescale(dt/2) → kick(dt/2) → cell + drift(dt) → forces → kick(dt/2) → V-rescale(dt/2)

Volume, with λ = √V, per half step (Euler–Maruyama of the C-rescale SDE):

    dλ = −(β_T λ / 2τ_p) (P₀ − Tr P_int/3 − k_BT/2V) dt + √(k_BT β_T / 2τ_p) dW

Axial systems use the same equation with P_int,zz in place of Tr P_int/3 and put the whole
volume change on the z axis.

Shape (anisotropic systems only), traceless diagonal log-strain per step:

    ln μ_dev,a = (β_T / 3τ_p)(P_int,aa − Tr P_int/3) dt + √(2β_T k_BT dt / 3τ_p) / λ · R̃_a

Positions and momenta: x ← μ x + (μ + μ⁻¹) p dt / 2m, p ← p / μ, cell ← μ cell.

Why phasetune's own step and not torch-sim's ``npt_crescale_isotropic_step`` /
``npt_crescale_triclinic_step``: each of those applies one cell mode to the whole batch,
whereas the state points of one DiffTRe batch need different ones (liquids isotropic, hcp
anisotropic, the two-phase boxes axial, Frenkel–Ladd fixed); the thermostat half steps
(V-rescale or Langevin) are chosen per run, and the coupling strengths are per system.

Why C-rescale: DiffTRe in NPT reweights over the sampled volume distribution, so that
distribution must be right, not only its mean. C-rescale samples the isothermal–isobaric
ensemble, first-order in time with the right fluctuations;
``tests/unit/sampling/test_sampler.py`` checks ⟨V⟩ and Var(V) of an ideal gas against the
exact NPT result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch_sim.integrators.npt import NPTCRescaleState
from torch_sim.models.interface import ModelInterface
from torch_sim.state import SimState

from phasetune.sampling.noise import BatchNoise, maxwell_boltzmann_momenta
from phasetune.units import EV_PER_A3_PER_GPA, fs_to_internal

_BATCH_NOISE = BatchNoise()

#: Cell modes: 0 fixed cell (NVT), 1 isotropic NPT, 2 anisotropic NPT (orthogonal axes),
#: 3 axial NPT (only the z axis moves, driven by P_zz: slabs and two-phase boxes).
CELL_MODES = {"fixed": 0, "isotropic": 1, "anisotropic": 2, "axial": 3}


@dataclass(frozen=True)
class EnsembleTargets:
    """Per-system set points, all in torch-sim units, each of shape [n_systems].

    kT: k_B·T in eV; pressure: P₀ in eV/Å³; cell_mode: see ``CELL_MODES``;
    tau_thermostat, tau_barostat: relaxation times in torch-sim time units;
    compressibility: β_T in Å³/eV (sets the barostat's coupling, not the ensemble).
    """

    kT: torch.Tensor
    pressure: torch.Tensor
    cell_mode: torch.Tensor
    tau_thermostat: torch.Tensor
    tau_barostat: torch.Tensor
    compressibility: torch.Tensor


def ensemble_targets(
    *,
    kT: torch.Tensor,
    pressure: torch.Tensor,
    cell_mode: torch.Tensor | str,
    thermostat_tau_fs: float,
    barostat_tau_fs: float,
    compressibility_per_GPa: float,
) -> EnsembleTargets:
    """Targets from per-system k_BT (eV) and P (eV/Å³), one cell mode (name) or one per system,
    and coupling settings shared by the batch (times in fs, β_T in 1/GPa)."""
    n, device, dtype = kT.shape[0], kT.device, kT.dtype

    def full(value: float) -> torch.Tensor:
        return torch.full((n,), value, device=device, dtype=dtype)

    if isinstance(cell_mode, str):
        cell_mode = torch.full((n,), CELL_MODES[cell_mode], device=device)
    return EnsembleTargets(
        kT=kT,
        pressure=pressure,
        cell_mode=cell_mode,
        tau_thermostat=full(fs_to_internal(thermostat_tau_fs)),
        tau_barostat=full(fs_to_internal(barostat_tau_fs)),
        compressibility=full(compressibility_per_GPa / EV_PER_A3_PER_GPA),
    )


def crescale_init(
    state: SimState, model: ModelInterface, *, targets: EnsembleTargets, noise=None
) -> NPTCRescaleState:
    """Initial MD state: forces, stress and Maxwell–Boltzmann momenta drawn from ``noise``
    (:mod:`phasetune.sampling.noise`; None: the batch generator ``state.rng``)."""
    output = model(state)
    momenta = getattr(state, "momenta", None)
    if momenta is None:
        momenta = maxwell_boltzmann_momenta(state, targets.kT, noise or _BATCH_NOISE)
    cell = state.cell.clone()
    return NPTCRescaleState.from_state(
        state,
        momenta=momenta,
        energy=output["energy"].detach(),
        forces=output["forces"].detach(),
        stress=output["stress"].detach(),
        tau_p=targets.tau_barostat,
        isothermal_compressibility=targets.compressibility,
        initial_cell=cell,
        initial_cell_inv=torch.linalg.inv(cell),
        initial_volume=torch.linalg.det(cell),
    )


def _evaluate(state: NPTCRescaleState, model: ModelInterface) -> NPTCRescaleState:
    """Store the model's energy, forces and stress at the current positions and cell."""
    output = model(state)
    state.energy = output["energy"].detach()
    state.forces = output["forces"].detach()
    state.stress = output["stress"].detach()
    return state


def per_system_timestep(
    dt: torch.Tensor | float, n_systems: int, like: torch.Tensor
) -> torch.Tensor:
    """The time step as a [n_systems] tensor (one scalar for all, or one per system)."""
    dt = torch.as_tensor(dt, device=like.device, dtype=like.dtype)
    if dt.dim() == 0:
        return dt.expand(n_systems)
    if dt.shape != (n_systems,):
        raise ValueError(f"dt must be a scalar or have shape [{n_systems}], got {tuple(dt.shape)}")
    return dt


def momentum_step(state: NPTCRescaleState, dt: torch.Tensor) -> NPTCRescaleState:
    """Kick p ← p + F dt with a per-system time step dt [n_systems]."""
    new_momenta = state.momenta + state.forces * dt[state.system_idx].unsqueeze(-1)
    state.set_constrained_momenta(new_momenta)
    return state


def internal_pressure_tensor(state: NPTCRescaleState, volume: torch.Tensor) -> torch.Tensor:
    """P_int = (Σ_i p_i ⊗ p_i / m_i) / V − σ per system [n_systems, 3, 3] (eV/Å³), with σ the
    model's stress (torch-sim's sign: P = −σ for a static system)."""
    momenta = state.momenta
    velocities = momenta / state.masses.unsqueeze(-1)
    kinetic = torch.zeros_like(state.stress).index_add_(
        0, state.system_idx, momenta.unsqueeze(-1) * velocities.unsqueeze(-2)
    )
    return kinetic / volume.view(-1, 1, 1) - state.stress


def _cell_rescale(
    state: NPTCRescaleState, targets: EnsembleTargets, dt: torch.Tensor, noise
) -> NPTCRescaleState:
    """Barostat move of the cell plus the position drift, per system by its cell mode
    (``dt``: [n_systems])."""
    kT, beta, tau_p = targets.kT, targets.compressibility, targets.tau_barostat
    volume = torch.linalg.det(state.cell)
    p_int = internal_pressure_tensor(state, volume)
    trace_p = torch.diagonal(p_int, dim1=-2, dim2=-1).sum(-1)
    barostatted = (targets.cell_mode > 0).to(volume.dtype)
    anisotropic = (targets.cell_mode == 2).to(volume.dtype)
    axial = targets.cell_mode == 3
    driving = torch.where(axial, p_int[:, 2, 2], trace_p / 3)

    sqrt_v = volume.sqrt()
    drift = -beta * sqrt_v / (2 * tau_p) * (targets.pressure - driving - kT / (2 * volume))
    amplitude_v = torch.sqrt(kT * beta * dt / (4 * tau_p))

    def gaussian(*shape: int) -> torch.Tensor:
        return noise.normal_systems(state, *shape, dtype=volume.dtype)

    new_sqrt_v = sqrt_v + barostatted * (drift * dt / 2 + amplitude_v * gaussian())
    deviation = (
        beta[:, None]
        / (3 * tau_p[:, None])
        * (torch.diagonal(p_int, dim1=-2, dim2=-1) - trace_p[:, None] / 3)
    )
    r = gaussian(3)
    r = r - r.mean(dim=1, keepdim=True)
    amplitude = torch.sqrt(2 * beta * kT * dt / (3 * tau_p)) / new_sqrt_v
    log_dev = anisotropic[:, None] * (deviation * dt[:, None] + amplitude[:, None] * r)
    new_sqrt_v = new_sqrt_v + barostatted * (drift * dt / 2 + amplitude_v * gaussian())
    scale = torch.exp(log_dev) * (new_sqrt_v / sqrt_v).pow(2.0 / 3.0)[:, None]  # [n, 3]
    axial_scale = torch.ones_like(scale)
    axial_scale[:, 2] = (new_sqrt_v / sqrt_v).pow(2.0)
    scale = torch.where(axial[:, None], axial_scale, scale)

    mu = scale[state.system_idx]
    dt_atoms = dt[state.system_idx].unsqueeze(-1)
    state.positions = mu * state.positions + (mu + 1 / mu) * state.momenta * dt_atoms / (
        2 * state.masses.unsqueeze(-1)
    )
    state.momenta = state.momenta / mu
    state.cell = torch.diag_embed(scale) @ state.cell  # column-vector cell: scale x, y, z rows
    return state


def vrescale_update(
    state: NPTCRescaleState, tau: torch.Tensor, kT: torch.Tensor, dt: torch.Tensor, noise=None
) -> NPTCRescaleState:
    """Stochastic velocity rescaling (Bussi, Donadio & Parrinello, J. Chem. Phys. 126, 014101
    (2007), eq. A7), per system: with c = e^(−dt/τ), N_f degrees of freedom, kinetic energy K
    and its target K̄ = N_f k_BT/2,

        K' = c K + (1 − c)(K̄/N_f)(R₁² + S) + 2 R₁ √(c (1 − c) K K̄ / N_f),

    R₁ ~ N(0, 1), S ~ χ²(N_f − 1) = 2·Gamma((N_f − 1)/2); every momentum is scaled by √(K'/K).

    phasetune's own rather than torch-sim's ``_vrescale_update``, which is not public API.
    With the batch generator (``noise`` None) the two make the same draws from ``state.rng``
    in the same order and agree bit for bit (tests/unit/sampling/test_sampler.py).
    """
    noise = noise or _BATCH_NOISE
    dof = state.get_number_of_degrees_of_freedom()
    kinetic = dof * state.calc_kT() / 2
    target = dof * kT / 2
    r1 = noise.normal_systems(state)
    chi2 = noise.chi_squared(state, dof - 1)
    c1 = torch.exp(-dt / tau)
    c2 = (1 - c1) * target / kinetic / dof
    scale = c1 + c2 * (torch.square(r1) + chi2) + 2 * r1 * torch.sqrt(c1 * c2)
    state.momenta = state.momenta * torch.sqrt(scale)[state.system_idx].unsqueeze(-1)
    return state


def langevin_update(
    state: NPTCRescaleState, tau: torch.Tensor, kT: torch.Tensor, dt: torch.Tensor, noise=None
) -> NPTCRescaleState:
    """Ornstein–Uhlenbeck step on every momentum: p ← c p + √((1 − c²) m k_BT) ξ, c = e^(−dt/τ).

    Per-atom noise thermalises every mode, which a global velocity rescaling cannot do in a
    nearly harmonic (cold) crystal whose normal modes hardly exchange energy.
    """
    c = torch.exp(-dt / tau)[state.system_idx].unsqueeze(-1)
    scale = torch.sqrt((1 - c * c) * state.masses.unsqueeze(-1) * kT[state.system_idx, None])
    xi = (noise or _BATCH_NOISE).normal_atoms(state, dtype=state.momenta.dtype)
    state.momenta = c * state.momenta + scale * xi
    return state


#: Thermostats available to :func:`crescale_step`.
THERMOSTATS = {"vrescale": vrescale_update, "langevin": langevin_update}


def crescale_step(
    state: NPTCRescaleState,
    model: ModelInterface,
    *,
    dt: torch.Tensor,
    targets: EnsembleTargets,
    thermostat: str = "vrescale",
    noise=None,
) -> NPTCRescaleState:
    """One C-rescale step (NVT for systems whose cell mode is ``fixed``).

    ``dt``: one time step for the batch or one per system ([n_systems], torch-sim units).
    ``thermostat``: ``"vrescale"`` (Bussi velocity rescaling, gentle on dynamics) or
    ``"langevin"`` (per-atom noise; use it for cold or nearly harmonic solids).
    ``noise``: where the random numbers come from (:mod:`phasetune.sampling.noise`; None: the
    batch generator ``state.rng``).
    """
    noise = noise or _BATCH_NOISE
    dt = per_system_timestep(dt, targets.kT.shape[0], state.positions)
    try:
        thermostat_half_step = THERMOSTATS[thermostat]
    except KeyError:
        raise ValueError(
            f"unknown thermostat {thermostat!r}; choose one of {', '.join(THERMOSTATS)}"
        ) from None
    state = thermostat_half_step(state, targets.tau_thermostat, targets.kT, dt / 2, noise)
    state = momentum_step(state, dt / 2)
    state = _cell_rescale(state, targets, dt, noise)
    state = _evaluate(state, model)
    state = momentum_step(state, dt / 2)
    return thermostat_half_step(state, targets.tau_thermostat, targets.kT, dt / 2, noise)


def nve_step(state: NPTCRescaleState, model: ModelInterface, *, dt: torch.Tensor):
    """Velocity Verlet (microcanonical), on the same state type, for conservation checks."""
    dt = per_system_timestep(dt, state.n_systems, state.positions)
    state = momentum_step(state, dt / 2)
    state.positions = state.positions + state.momenta * dt[state.system_idx].unsqueeze(
        -1
    ) / state.masses.unsqueeze(-1)
    state = _evaluate(state, model)
    return momentum_step(state, dt / 2)
