"""DiffTRe for phase equilibria: reweighted Gibbs energies of each phase at each target.

Every target k needs both of its phases sampled in NPT at (T_k, P_k); each such state point
is a :class:`StatePointEnsemble`: frames drawn with reference parameters θ_ref and their
energies U_ref. For the current parameters θ (free-energy perturbation; in NPT the PV term
is the same for both potentials, so this is a Gibbs energy change):

    G(θ) − G(θ_ref) = −kT ln⟨exp(−β[U_θ − U_ref])⟩_ref,
    ∂/∂θ [G(θ) − G(θ_ref)] = ⟨∂U_θ/∂θ⟩_θ (reweighted; autograd gives it exactly),

and ``offset`` carries G(θ_ref) − G(θ₀) across re-samplings, chained with BAR between the
old and the new frames (:func:`chain_with_bar`). Then

    Δg_k(θ) = Δg_k(θ₀) + [G_B(θ) − G_B(θ₀)]/N_B − [G_A(θ) − G_A(θ₀)]/N_A.

All energies in eV; Δg per atom.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch

from phasetune.potentials.evaluation import frame_energies
from phasetune.sampling.frames import Frames
from phasetune.thermo import (
    correlated_bennett_acceptance_ratio,
    drift_inflated_error,
    free_energy_perturbation,
    free_energy_perturbation_error,
    relative_effective_sample_size,
    reweighting_weights,
    series_inefficiency,
)
from phasetune.units import KB_EV_PER_K


def correlated_fep_error(delta_u: torch.Tensor, kT_eV: float) -> float:
    """Standard error (eV) of −kT ln⟨e^{−βΔU}⟩ over time-ordered, correlated frames.

    * σ_stat = σ_independent · √g, with g the statistical inefficiency of e_i =
      exp(−β[ΔU_i − min ΔU]): consecutive MD frames are not independent, and the
      delta-method error alone understates the error by √g (ti_small: g ≈ 3–8, measured).
    * Drift. A run that still relaxes (a liquid whose density settles after its melt
      stage, a crystal that begins to melt) drifts more slowly than its own length can
      resolve as a correlation; independent seeds then scatter by the drift (measured on
      LJ, 108 atoms, 16-ps runs: 3× σ_stat, tests/integration/test_error_coverage.py). With
      d = ΔF₂ − ΔF₁ the difference of the estimates from the run's two halves, and
      σ_noise σ_stat with g taken after removing each half's mean (so that the drift does not
      pass for correlation), the error is :func:`phasetune.thermo.drift_inflated_error`
      (σ_stat, σ_noise, d): max(σ_stat, √(σ_noise² + (0.8 d)²)) when |d| > 2 σ_d = 4 σ_noise.

    Needs ≥ 8 frames for the halves (else σ_stat).
    """
    du = delta_u.detach().double()
    n = du.numel()
    if n < 2:
        return math.nan
    independent = float(free_energy_perturbation_error(du, kT_eV))
    e = torch.exp(-(du - du.min()) / kT_eV)
    sigma = independent * math.sqrt(series_inefficiency(e))
    if n < 8:
        return sigma
    half = n // 2
    difference = float(free_energy_perturbation(du[n - half :], kT_eV)) - float(
        free_energy_perturbation(du[:half], kT_eV)
    )
    centred = torch.cat([e[:half] - e[:half].mean(), e[half:] - e[half:].mean()])
    noise = independent * math.sqrt(series_inefficiency(centred))
    return drift_inflated_error(sigma, noise, difference)


def parameter_snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the model's parameters (the θ of a sampling round)."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@dataclass
class StatePointEnsemble:
    """Frames of one phase at one (T, P), sampled with θ_ref, and its free-energy chain.

    ``reference_energy`` [F] = U_θref on the frames (eV); ``valid`` [F] marks frames that
    stayed in the phase (only those are reweighted); ``offset_eV`` = [G(θ_ref) − G(θ₀)]/N
    with its BAR variance; ``round`` counts the samplings of this state point.
    """

    name: str
    target: str
    phase: str
    temperature_K: float
    pressure_GPa: float
    frames: Frames
    reference_energy: torch.Tensor
    reference_params: dict[str, torch.Tensor]
    offset_eV: float = 0.0
    offset_variance: float = 0.0
    round: int = 0
    theta0_energy: torch.Tensor | None = None
    history: list[dict] = field(default_factory=list)

    @property
    def n_atoms(self) -> int:
        return int(self.frames.positions.shape[1])

    @property
    def kT_eV(self) -> float:
        return KB_EV_PER_K * self.temperature_K

    @property
    def valid(self) -> torch.Tensor:
        return self.frames.phase_ok[:, 0].clone()

    def n_valid(self) -> int:
        return int(self.valid.sum())


def valid_indices(ensemble: StatePointEnsemble) -> torch.Tensor:
    idx = torch.nonzero(ensemble.valid).flatten()
    if len(idx) < 2:
        raise RuntimeError(
            f"{ensemble.name}: only {len(idx)} frames stayed {ensemble.phase}; the phase is "
            f"not (meta)stable at {ensemble.temperature_K:g} K, {ensemble.pressure_GPa:g} GPa "
            "for this model; check the structure or shorten the sampling"
        )
    return idx


def energies_on_frames(
    model: torch.nn.Module, ensemble: StatePointEnsemble, *, chunk_frames: int = 16
) -> torch.Tensor:
    """U_θ on the ensemble's valid frames [F_valid] (differentiable in θ)."""
    idx = valid_indices(ensemble)
    u = frame_energies(model, ensemble.frames, frame_indices=idx, chunk_frames=chunk_frames)
    return u[:, 0]


@dataclass
class ReweightedGibbs:
    """[G(θ) − G(θ₀)]/N (eV, differentiable), its relative ESS, U_θ on the frames, and the
    standard error of [G(θ) − G(θ₀)]/N (eV/atom: the chain's BAR errors and this FEP's,
    both with the frames' statistical inefficiency)."""

    delta_g_eV: torch.Tensor
    relative_ess: float
    energies: torch.Tensor
    error_eV: float = math.nan


class _ChunkedFEP(torch.autograd.Function):
    """ΔG/N by FEP with its gradient taken chunk by chunk (memory flat in frames).

    ΔG/N = −(kT/N) ln⟨e^{−βΔU}⟩ and ∂(ΔG/N)/∂θ = Σ_i w_i ∂U_θ(x_i)/∂θ / N (the reweighted
    ⟨∂U/∂θ⟩), w_i = softmax_i(−βΔU_i). With ``eager`` (grad mode on at the call), the
    forward takes both in one pass over the chunks: U and ∂U/∂θ of a chunk, accumulated
    with the unnormalised weights e^{a_i − m} of a running maximum m of a_i = −βΔU_i (the
    sums so far rescaled by e^{m_old − m_new} when it grows), normalised at the end; only
    one chunk's graph is alive at a time. Without grad mode only the energies are computed.
    The backward returns the kept gradient times its factor: the Gauss–Newton step asks for
    one gradient per residual (each target, the gauge) at the same θ.
    """

    @staticmethod
    def forward(ctx, model, ensemble, chunk_frames, eager, *params):
        ctx.n_atoms = ensemble.n_atoms
        if eager:
            u, ctx.weighted_gradient = _ChunkedFEP._energies_and_weighted_gradient(
                model, ensemble, chunk_frames
            )
        else:
            with torch.no_grad():
                u = energies_on_frames(model, ensemble, chunk_frames=chunk_frames)
            ctx.weighted_gradient = None
        idx = valid_indices(ensemble)
        du = u - ensemble.reference_energy[idx].to(u)
        fep = free_energy_perturbation(du, ensemble.kT_eV, n_atoms=ensemble.n_atoms)
        weights = reweighting_weights(du, ensemble.kT_eV)
        ctx.mark_non_differentiable(u, weights)
        return fep, u, weights

    @staticmethod
    def backward(ctx, grad_fep, _grad_u, _grad_w):
        # reached only through an eager forward (without grad mode there is no graph)
        scale = grad_fep / ctx.n_atoms
        return (None, None, None, None, *(scale * g for g in ctx.weighted_gradient))

    @staticmethod
    def _energies_and_weighted_gradient(model, ensemble, chunk_frames: int):
        """U_θ on the valid frames and Σ_i w_i ∂U_i/∂θ in one pass (streamed log-sum-exp)."""
        params = [p for p in model.parameters() if p.requires_grad]
        total = [torch.zeros_like(p) for p in params]
        idx = valid_indices(ensemble)
        beta = 1.0 / float(ensemble.kT_eV)
        energies, running_max, norm = [], -math.inf, 0.0
        with torch.enable_grad():
            for start in range(0, len(idx), chunk_frames):
                chunk = idx[start : start + chunk_frames]
                u = frame_energies(
                    model, ensemble.frames, frame_indices=chunk, chunk_frames=len(chunk)
                )[:, 0]
                reference = ensemble.reference_energy[chunk].to(u.device, torch.float64)
                log_w = -beta * (u.detach().double() - reference)
                new_max = max(running_max, float(log_w.max()))
                factor = math.exp(running_max - new_max)  # rescales the sums so far (0 at first)
                e = torch.exp(log_w - new_max)
                grads = torch.autograd.grad((e.to(u) * u).sum(), params, allow_unused=True)
                for k, g in enumerate(grads):
                    total[k] = total[k] * factor + (0 if g is None else g)
                norm = norm * factor + float(e.sum())
                running_max = new_max
                energies.append(u.detach())
        return torch.cat(energies), [t / norm for t in total]


def reweighted_gibbs_change(
    model: torch.nn.Module,
    ensemble: StatePointEnsemble,
    *,
    chunk_frames: int = 16,
    keep_graph: bool = False,
) -> ReweightedGibbs:
    """[G(θ) − G(θ₀)]/N = offset − (kT/N) ln⟨exp(−β[U_θ − U_ref])⟩_ref over valid frames.

    Differentiable in θ. By default the gradient is taken chunk by chunk
    (:class:`_ChunkedFEP`; in the same pass as the energies when grad mode is on): peak
    memory does not grow with the number of frames (``bench/reweighting_memory.py``).
    ``keep_graph=True`` keeps one autograd graph over all frames instead (memory ∝ frames;
    needed only for higher derivatives).
    """
    if keep_graph:
        u = energies_on_frames(model, ensemble, chunk_frames=chunk_frames)
        idx = valid_indices(ensemble)
        du = u - ensemble.reference_energy[idx].to(u)
        fep = free_energy_perturbation(du, ensemble.kT_eV, n_atoms=ensemble.n_atoms)
        with torch.no_grad():
            weights = reweighting_weights(du, ensemble.kT_eV)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
        eager = torch.is_grad_enabled() and bool(params)
        fep, u, weights = _ChunkedFEP.apply(model, ensemble, chunk_frames, eager, *params)
    ess = float(relative_effective_sample_size(weights.detach()))
    idx = valid_indices(ensemble)
    du = u.detach().double() - ensemble.reference_energy[idx].to(torch.float64)
    fep_error = correlated_fep_error(du, ensemble.kT_eV) / ensemble.n_atoms
    return ReweightedGibbs(
        delta_g_eV=ensemble.offset_eV + fep,
        relative_ess=ess,
        energies=u.detach(),
        error_eV=math.sqrt(ensemble.offset_variance + fep_error**2),
    )


def _energies_with(
    model: torch.nn.Module, params: dict[str, torch.Tensor], ensemble: StatePointEnsemble
) -> torch.Tensor:
    """U on the valid frames with the parameters ``params`` loaded into a scratch copy."""
    scratch = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in scratch.named_parameters():
            p.copy_(params[name])
        return energies_on_frames(scratch, ensemble)


CHAIN_METHODS = ("bar", "fresh")


def chain_with_bar(
    model: torch.nn.Module,
    old: StatePointEnsemble,
    new: StatePointEnsemble,
    *,
    method: str = "bar",
) -> StatePointEnsemble:
    """Carry the offset from ``old`` (θ_old) to ``new`` (sampled with θ_new).

    Forward work on old frames U_new − U_old, reverse work on new frames U_old − U_new.
    ``method="bar"``: BAR of both gives G(θ_new) − G(θ_old), so offset_new = offset_old +
    ΔG/N; its asymptotic error assumes independent frames and is scaled by √g, g the larger
    statistical inefficiency of the two work series (frames in time order).
    ``method="fresh"``: the one-sided FEP of the new frames alone,
    G(θ_new) − G(θ_old) = kT ln⟨exp(−β[U_old − U_new])⟩_new. θ_new was fitted to the old
    frames, so their forward work carries that fit (with few independent frames, their noise
    as well: the ti_small runs' forward estimates exceeded the fresh ones by up to 2.3
    meV/atom, bench/RESULTS.md); the new frames never saw it. The history
    keeps the chained step as ``delta_g_meV`` ± ``error_meV`` and the estimates not chained
    under their own names (``forward_fep_meV``; ``reverse_fep_meV`` with BAR, ``bar_meV``
    with fresh), each number once. ``new`` must carry its reference energies and parameters
    (θ_new); returns ``new`` with the offset set.
    """
    if method not in CHAIN_METHODS:
        raise ValueError(f"chain method must be one of {CHAIN_METHODS}, got {method!r}")
    n = old.n_atoms
    one_sided: dict[str, float] = {}
    with torch.no_grad():
        u_old_on_new = _energies_with(model, old.reference_params, new)
        w_reverse = u_old_on_new - new.reference_energy[valid_indices(new)].to(u_old_on_new)
        # one-sided FEP from the new frames alone (fresh; or the old frames left the phase):
        # G(θ_old) − G(θ_new) = −kT ln⟨exp(−β[U_old − U_new])⟩_new
        delta_f = fresh = -float(free_energy_perturbation(w_reverse, old.kT_eV))
        std_error = correlated_fep_error(w_reverse, old.kT_eV)
        inefficiency = series_inefficiency(w_reverse)
        if old.n_valid() >= 2:
            u_new_on_old = _energies_with(model, new.reference_params, old)
            w_forward = u_new_on_old - old.reference_energy[valid_indices(old)].to(u_new_on_old)
            bar, bar_inefficiency = correlated_bennett_acceptance_ratio(
                w_forward, w_reverse, old.kT_eV
            )
            if method == "bar":
                delta_f, std_error = float(bar.delta_f), float(bar.std_error)
                inefficiency = bar_inefficiency
            # the estimates not chained, kept for diagnosis (each number once): the forward
            # one is what the old frames' reweighting claimed at θ_new (the frames θ_new was
            # fitted to); the reverse one uses only the new frames, which that fit never saw
            one_sided = {
                "forward_fep_meV": 1e3 * float(free_energy_perturbation(w_forward, old.kT_eV)) / n
            }
            if method == "bar":
                one_sided["reverse_fep_meV"] = 1e3 * fresh / n
            else:
                one_sided["bar_meV"] = 1e3 * float(bar.delta_f) / n
    new.offset_eV = old.offset_eV + delta_f / n
    new.offset_variance = old.offset_variance + (std_error / n) ** 2
    new.round = old.round + 1
    new.history = [
        *old.history,
        {
            "round": new.round,
            "method": method,
            "delta_g_meV": 1e3 * delta_f / n,  # the chained step, by ``method``
            "error_meV": 1e3 * std_error / n,
            "statistical_inefficiency": inefficiency,
            "offset_meV": 1e3 * new.offset_eV,
            **one_sided,
        },
    ]
    return new


def delta_g_estimates(
    changes: dict[str, torch.Tensor],
    *,
    anchors_eV: torch.Tensor,
    pairs: list[tuple[str, str]],
) -> torch.Tensor:
    """Δg_k(θ) = Δg_k(θ₀) + ΔG_B(θ) − ΔG_A(θ) per target [K] (eV/atom).

    ``pairs[k]`` = (name of the A ensemble, name of the B ensemble) of target k.
    """
    rows = [changes[b] - changes[a] for a, b in pairs]
    return anchors_eV + torch.stack(rows)


def transition_loss(delta_g_eV: torch.Tensor, tolerance_eV: torch.Tensor) -> torch.Tensor:
    """Σ_k (Δg_k / tol_k)², tol_k = Δs_k · tolerance_K,k (dimensionless)."""
    return ((delta_g_eV / tolerance_eV) ** 2).sum()


def l2_sp(
    model: torch.nn.Module,
    theta0: dict[str, torch.Tensor],
    scales: dict[str, torch.Tensor],
) -> torch.Tensor:
    """Pull back to the pretrained model: mean over trainable entries of ((θ − θ₀)/scale)²."""
    terms, count = [], 0
    for name, p in model.named_parameters():
        if p.requires_grad:
            terms.append((((p - theta0[name].to(p)) / scales[name].to(p)) ** 2).sum())
            count += p.numel()
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum() / count


def parameter_scales(model: torch.nn.Module, floor: float = 1e-3) -> dict[str, torch.Tensor]:
    """Per-tensor scale of θ₀: its RMS, at least ``floor`` (relative steps and pull-back), or
    the model's own ``parameter_scale_hints()`` where it gives one (LoRA factors: B is zero
    at θ₀, yet a relative change of the weights it adapts)."""
    hints = model.parameter_scale_hints() if hasattr(model, "parameter_scale_hints") else {}
    return {
        name: torch.tensor(
            hints[name]
            if name in hints
            else max(float(p.detach().double().pow(2).mean().sqrt()), floor)
        )
        for name, p in model.named_parameters()
    }
