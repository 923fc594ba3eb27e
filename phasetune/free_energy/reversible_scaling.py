"""Reversible scaling: G(T) over a whole temperature range from one nonequilibrium run.

de Koning, Antonelli & Yip, Phys. Rev. Lett. 83, 3973 (1999); NPT form as in Freitas, Asta
& de Koning, Comput. Mater. Sci. 112, 333 (2016). At the fixed temperature T₀ simulate the
scaled Hamiltonian H_λ = K + λU at pressure λP (or in a fixed cell). Its configurational
weight

    exp(−β₀ λ (U + P V)) = exp(−β (U + P V)),   T = T₀ / λ,

is the physical system's at temperature T and pressure P. Switching λ from 1 to
λ_f = T₀/T_f along the Freitas schedule, λ(t) = 1 + (λ_f − 1)·s(t/t_s), the work

    W(1 → λ) = ∫_1^λ (U + P V) dλ′            (P V only for barostatted systems)

estimates G_λ(T₀) − G(T₀) of the scaled system; dissipation cancels to first order in the
average of a forward (1 → λ_f) and a backward (λ_f → 1) run,

    W_rev(1 → λ) = [W_fwd(1 → λ) − W_bwd(λ → 1)] / 2,

where W_bwd(λ → 1) is the backward run's work from the moment it passes λ to its end at 1.
The scaled and the physical system share the configurational integral; only the kinetic
part (de Broglie wavelength Λ ∝ T^(−1/2)) differs, which gives

    G(T)/N = [G(T₀)/N + W_rev(1 → λ)/N] / λ + (3/2) k_BT ln λ,   T = T₀/λ,

or, free of the reference, G(T)/(NT) − G(T₀)/(NT₀) = W_rev/(N T₀) + (3/2) k_B ln λ. For
fixed-cell (NVT) systems the same formulas give the Helmholtz free energy F(T).

Every system of the batch follows its own path (its own pressure and cell mode); replicas
are simply several copies of a system in the batch, and :func:`mean_and_error` averages
over the ones the caller names. The dissipated work (W_fwd + W_bwd)/2 ≥ 0 per system is
the check that t_s was long enough. Mind phase stability: a crystal heated by scaling past
its superheating limit melts, and the estimate then follows the liquid.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch_sim.models.interface import ModelInterface
from torch_sim.state import SimState
from tqdm.auto import tqdm

from phasetune.free_energy.switching import switching_schedule
from phasetune.potentials.base import ModelBase
from phasetune.sampling.integrator import (
    CELL_MODES,
    THERMOSTATS,
    crescale_init,
    crescale_step,
    ensemble_targets,
)
from phasetune.units import EV_PER_A3_PER_GPA, KB_EV_PER_K, fs_to_internal


class ScaledModel(ModelBase):
    """λ_s U per system s: energy λU, forces λF, stress λσ of the wrapped model.

    ``lam`` is a per-system tensor [n_systems] (None: all ones). ``unscaled_energy`` keeps
    U [n_systems] of the last call (detached), so the switching work ∫ U dλ is accumulated
    without a second model call. The wrapped model is called in the caller's grad mode
    (models that take forces by autograd, like MACE, need it); the outputs are detached.
    A model that returns no stress gets a zero stress (fine for fixed cells only).
    """

    def __init__(self, model: ModelInterface) -> None:
        super().__init__(
            device=model.device,
            dtype=model.dtype,
            compute_stress=bool(getattr(model, "compute_stress", True)),
        )
        self.model = model
        self.lam: torch.Tensor | None = None
        self.unscaled_energy: torch.Tensor | None = None

    def forward(self, state: SimState, **kwargs) -> dict[str, torch.Tensor]:
        output = self.model(state, **kwargs)
        energy = output["energy"].detach()
        n = energy.shape[0]
        if self.lam is None:
            lam = torch.ones(n, device=energy.device, dtype=energy.dtype)
        else:
            lam = torch.as_tensor(self.lam).to(energy.device, energy.dtype)
            if lam.shape != (n,):
                raise ValueError(
                    f"ScaledModel.lam must have shape ({n},) (one λ per system), "
                    f"got {tuple(lam.shape)}"
                )
        self.unscaled_energy = energy
        stress = output.get("stress")
        if stress is None:
            stress = torch.zeros(n, 3, 3, device=energy.device, dtype=energy.dtype)
        lam_atoms = lam[state.system_idx].unsqueeze(-1)
        return {
            "energy": lam * energy,
            "forces": lam_atoms * output["forces"].detach(),
            "stress": lam[:, None, None] * stress.detach(),
        }


@dataclass
class ReversibleScalingResult:
    """Reversible-scaling works and free energies on a grid of temperatures.

    Shapes: P = ``n_points`` grid temperatures, S = systems of the batch.

    Attributes:
        reference_temperature_K: T₀, where the simulation ran.
        temperatures_K: grid T = T₀/λ from T₀ to T_f [P].
        lambdas: λ = T₀/T on the grid [P].
        work_forward: W_fwd(1 → λ) in eV per system [S, P] (0 at T₀).
        work_backward: W_bwd(λ → 1) in eV per system [S, P] (0 at T₀).
        w_rev: W_rev = (W_fwd − W_bwd)/2 in eV per system [S, P].
        dissipation: (W_fwd + W_bwd)/2 of the whole path, eV per system [S] (≥ 0 on average).
        n_atoms: atoms per system [S].
        g_eV_per_atom: G(T)/N [S, P] when a reference G(T₀)/N was given, else None
            (compute it later with :meth:`gibbs_energy`).
    """

    reference_temperature_K: float
    temperatures_K: torch.Tensor
    lambdas: torch.Tensor
    work_forward: torch.Tensor
    work_backward: torch.Tensor
    w_rev: torch.Tensor
    dissipation: torch.Tensor
    n_atoms: torch.Tensor
    g_eV_per_atom: torch.Tensor | None = None

    @property
    def delta_g_over_t(self) -> torch.Tensor:
        """G(T)/(NT) − G(T₀)/(NT₀) = W_rev/(N T₀) + (3/2) k_B ln λ, eV/(atom·K) [S, P].

        Needs no reference; −∫_{T₀}^{T} H/(N T′²) dT′ by Gibbs–Helmholtz.
        """
        w_per_atom = self.w_rev / self.n_atoms.to(self.w_rev.dtype)[:, None]
        return w_per_atom / self.reference_temperature_K + 1.5 * KB_EV_PER_K * torch.log(
            self.lambdas
        )

    def gibbs_energy(self, g_reference_eV_per_atom: torch.Tensor | float) -> torch.Tensor:
        """G(T)/N = [G(T₀)/N + W_rev/N]/λ + (3/2) k_BT ln λ in eV per atom [S, P].

        ``g_reference_eV_per_atom``: G(T₀)/N per system [S] (or one number for all).
        """
        g0 = _per_system(g_reference_eV_per_atom, "g_reference_eV_per_atom", self.w_rev)
        w_per_atom = self.w_rev / self.n_atoms.to(self.w_rev.dtype)[:, None]
        lam, temperature = self.lambdas[None, :], self.temperatures_K[None, :]
        return (g0[:, None] + w_per_atom) / lam + 1.5 * KB_EV_PER_K * temperature * torch.log(lam)


def mean_and_error(
    values: torch.Tensor, systems: Sequence[int] | torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over the replica ``systems`` (indices into the first axis of ``values``) and
    its standard error std/√n (unbiased std; NaN for a single replica)."""
    index = torch.as_tensor(systems, dtype=torch.long, device=values.device).reshape(-1)
    if index.numel() == 0:
        raise ValueError("mean_and_error needs at least one system index")
    if int(index.min()) < -values.shape[0] or int(index.max()) >= values.shape[0]:
        raise ValueError(
            f"system indices {index.tolist()} out of range for {values.shape[0]} systems"
        )
    selected = values[index]
    mean = selected.mean(0)
    if index.numel() == 1:
        return mean, torch.full_like(mean, float("nan"))
    return mean, selected.std(0) / math.sqrt(index.numel())


def _per_system(value, name: str, like: torch.Tensor) -> torch.Tensor:
    """``value`` as a [n_systems] tensor like ``like``'s first axis (scalars broadcast)."""
    n = like.shape[0]
    tensor = torch.as_tensor(value, dtype=like.dtype).to(like.device)
    if tensor.ndim == 0:
        tensor = tensor.expand(n)
    if tensor.shape != (n,):
        raise ValueError(f"{name} must be a number or have shape ({n},), got {tuple(tensor.shape)}")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} must be finite, got {tensor.tolist()}")
    return tensor.clone()


def _interpolate(x: torch.Tensor, y: torch.Tensor, x_new: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear y(x_new) for non-decreasing x [K] (ties allowed), y [K, S] → [P, S]."""
    upper = torch.searchsorted(x, x_new, right=True).clamp(1, x.shape[0] - 1)
    lower = upper - 1
    span = x[upper] - x[lower]
    weight = torch.where(span > 0, (x_new - x[lower]) / span.clamp_min(1e-300), 1.0)
    weight = weight.clamp(0.0, 1.0)[:, None]
    return (1 - weight) * y[lower] + weight * y[upper]


def reversible_scaling(
    model: ModelInterface,
    state: SimState,
    *,
    temperature_K: float,
    final_temperature_K: float,
    pressure_GPa: float | torch.Tensor = 0.0,
    cell_mode: str | list[str] = "isotropic",
    g_reference_eV_per_atom: torch.Tensor | None = None,
    timestep_fs: float,
    equilibration_steps: int,
    switching_steps: int,
    thermostat_tau_fs: float = 100.0,
    barostat_tau_fs: float = 1000.0,
    compressibility_per_GPa: float = 0.05,
    thermostat: str = "langevin",
    n_points: int = 50,
    seed: int = 0,
    progress: bool = True,
) -> ReversibleScalingResult:
    """G(T) from T₀ = ``temperature_K`` to T_f = ``final_temperature_K`` by reversible scaling.

    Procedure, all at T₀ with C-rescale (:func:`~phasetune.sampling.integrator.crescale_step`)
    on H_λ = K + λU at pressure λP: equilibrate at λ = 1 for ``equilibration_steps``, switch
    1 → λ_f = T₀/T_f in ``switching_steps``, equilibrate at λ_f, switch back λ_f → 1. Each
    switching step first changes λ at fixed configuration, adding (U + PV)·Δλ to the work,
    then moves the system at the new λ (stored forces and stress are rescaled exactly, being
    linear in λ). The cumulative works are interpolated onto ``n_points`` temperatures
    equally spaced from T₀ to T_f.

    Args:
        model: any torch-sim model (pass a frozen :func:`sampling_copy` of a trainable one).
        state: the batch; replicas are copies of a system in it. Not modified.
        temperature_K, final_temperature_K: T₀ and T_f in K (T_f > T₀ heats, T_f < T₀ cools).
        pressure_GPa: P in GPa, one number or one per system (ignored for fixed cells).
        cell_mode: one of ``CELL_MODES`` ("fixed" = NVT, giving F(T)) or one per system.
        g_reference_eV_per_atom: G(T₀)/N per system [S] (or one number); if given the result
            carries G(T)/N in ``g_eV_per_atom``.
        timestep_fs, thermostat_tau_fs, barostat_tau_fs: MD times in fs.
        equilibration_steps: steps at λ = 1 and again at λ = λ_f before each switch.
        switching_steps: steps of each switch (forward and backward).
        compressibility_per_GPa: β_T guess, the barostat's coupling only.
        thermostat: "langevin" (default: every mode thermalised, needed for harmonic or cold
            solids) or "vrescale".
        n_points: temperatures on the output grid (≥ 2).
        seed: seeds all noise (torch-sim's ``state.rng``).
        progress: show a tqdm progress bar.
    """
    t0, tf = float(temperature_K), float(final_temperature_K)
    if not (math.isfinite(t0) and math.isfinite(tf) and t0 > 0 and tf > 0):
        raise ValueError(f"temperatures must be finite and > 0, got T0={t0} K, T_f={tf} K")
    if tf == t0:
        raise ValueError(f"final_temperature_K must differ from temperature_K (both {t0} K)")
    if int(switching_steps) != switching_steps or switching_steps < 1:
        raise ValueError(f"switching_steps must be an integer >= 1, got {switching_steps}")
    if int(equilibration_steps) != equilibration_steps or equilibration_steps < 0:
        raise ValueError(f"equilibration_steps must be an integer >= 0, got {equilibration_steps}")
    if int(n_points) != n_points or n_points < 2:
        raise ValueError(f"n_points must be an integer >= 2, got {n_points}")
    for name, value in (
        ("timestep_fs", timestep_fs),
        ("thermostat_tau_fs", thermostat_tau_fs),
        ("barostat_tau_fs", barostat_tau_fs),
        ("compressibility_per_GPa", compressibility_per_GPa),
    ):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value}")
    if thermostat not in THERMOSTATS:
        raise ValueError(
            f"unknown thermostat {thermostat!r}; choose one of {', '.join(THERMOSTATS)}"
        )
    n = state.n_systems
    device, dtype = state.device, state.dtype
    modes = [cell_mode] * n if isinstance(cell_mode, str) else list(cell_mode)
    if len(modes) != n:
        raise ValueError(f"cell_mode: need one per system ({n}), got {len(modes)}")
    for mode in modes:
        if mode not in CELL_MODES:
            raise ValueError(f"unknown cell_mode {mode!r}; choose one of {', '.join(CELL_MODES)}")
    like = torch.zeros(n, device=device, dtype=dtype)
    barostatted = torch.tensor([mode != "fixed" for mode in modes], device=device)
    if bool(barostatted.any()) and not getattr(model, "compute_stress", True):
        raise ValueError("barostatted systems need a model that computes the stress")
    pressure = _per_system(pressure_GPa, "pressure_GPa", like) * EV_PER_A3_PER_GPA
    pressure = torch.where(barostatted, pressure, torch.zeros_like(pressure))
    g_reference = (
        None
        if g_reference_eV_per_atom is None
        else _per_system(g_reference_eV_per_atom, "g_reference_eV_per_atom", like)
    )

    def full(value: float) -> torch.Tensor:
        return torch.full((n,), value, device=device, dtype=dtype)

    base_targets = ensemble_targets(
        kT=full(KB_EV_PER_K * t0),
        pressure=pressure,
        cell_mode=torch.tensor([CELL_MODES[mode] for mode in modes], device=device),
        thermostat_tau_fs=thermostat_tau_fs,
        barostat_tau_fs=barostat_tau_fs,
        compressibility_per_GPa=compressibility_per_GPa,
    )
    lam_final = t0 / tf
    progress_s = switching_schedule(torch.linspace(0.0, 1.0, switching_steps + 1)).to(device)
    lambdas = (1.0 + (lam_final - 1.0) * progress_s).to(dtype).tolist()

    scaled = ScaledModel(model)
    scaled.lam = full(1.0)
    work_state = state.clone()
    work_state.rng = seed
    # no torch.no_grad(): models that take forces by autograd (MACE) need grad mode
    md = crescale_init(work_state, scaled, targets=base_targets)
    current = {"lam": 1.0, "targets": base_targets}

    def set_lambda(lam: float) -> None:
        """Switch H_λ at fixed configuration; forces, stress and energy are linear in λ."""
        ratio = lam / current["lam"]
        md.energy = md.energy * ratio
        md.forces = md.forces * ratio
        md.stress = md.stress * ratio
        scaled.lam = full(lam)
        current["lam"] = lam
        current["targets"] = dataclasses.replace(base_targets, pressure=lam * pressure)

    def generalized_force() -> torch.Tensor:
        """∂H_λ/∂λ = U + P V per system (P V only for barostatted systems), eV."""
        return scaled.unscaled_energy + pressure * torch.linalg.det(md.cell)

    def step() -> None:
        nonlocal md
        md = crescale_step(md, scaled, dt=dt, targets=current["targets"], thermostat=thermostat)

    dt = torch.tensor(fs_to_internal(timestep_fs), device=device, dtype=dtype)
    total = 2 * (equilibration_steps + switching_steps)
    bar = tqdm(total=total, desc="reversible scaling", disable=not progress, unit="step")
    increments = {}
    for direction, schedule in (("forward", lambdas), ("backward", lambdas[::-1])):
        set_lambda(schedule[0])
        for _ in range(equilibration_steps):
            step()
            bar.update(1)
        incs = torch.zeros(switching_steps, n, device=device, dtype=dtype)
        for k in range(switching_steps):
            # work of changing λ at fixed configuration, then dynamics at the new λ
            incs[k] = generalized_force() * (schedule[k + 1] - schedule[k])
            set_lambda(schedule[k + 1])
            step()
            bar.update(1)
            if progress and k % 100 == 0:
                bar.set_postfix(direction=direction, T_eff=f"{t0 / schedule[k + 1]:.0f}K")
        # backward step k covers the forward interval j = S − 1 − k: index by forward λ
        increments[direction] = incs if direction == "forward" else incs.flip(0)
    bar.close()

    zero = torch.zeros(1, n, device=device, dtype=dtype)
    cum_forward = torch.cat([zero, increments["forward"].cumsum(0)])  # W_fwd(1 → λ_k)
    cum_backward = torch.cat([zero, increments["backward"].cumsum(0)])  # W_bwd(λ_k → 1)
    temperatures = torch.linspace(t0, tf, n_points, device=device, dtype=dtype)
    grid_lambdas = t0 / temperatures
    grid_progress = ((grid_lambdas - 1.0) / (lam_final - 1.0)).clamp(0.0, 1.0)
    progress_s = progress_s.to(dtype)
    work_forward = _interpolate(progress_s, cum_forward, grid_progress).T.contiguous()
    work_backward = _interpolate(progress_s, cum_backward, grid_progress).T.contiguous()
    n_atoms = torch.bincount(state.system_idx, minlength=n).to(device)
    result = ReversibleScalingResult(
        reference_temperature_K=t0,
        temperatures_K=temperatures,
        lambdas=grid_lambdas,
        work_forward=work_forward,
        work_backward=work_backward,
        w_rev=0.5 * (work_forward - work_backward),
        dissipation=0.5 * (cum_forward[-1] + cum_backward[-1]),
        n_atoms=n_atoms,
    )
    if g_reference is not None:
        result.g_eV_per_atom = result.gibbs_energy(g_reference)
    return result
