"""Self-diffusion coefficient of a liquid from the mean-square displacement of stored frames.

Einstein relation, per system of N atoms, with unwrapped, drift-free displacements u_i(t):

    MSD(τ) = ⟨ |u_i(t₀ + τ) − u_i(t₀)|² ⟩_{i, t₀}  →  6 D τ + c      (τ → ∞, 3-D)

averaged over atoms and over all time origins t₀ (multiple-origin averaging, computed with
FFTs in O(F log F) per coordinate). D is the least-squares slope / 6 of MSD(τ) on a window of
lags that skips the ballistic start (MSD ∝ τ²) and the noisy long lags; the free offset c
absorbs the ballistic/caging transient (for an Ornstein–Uhlenbeck velocity,
MSD = 6D[τ − τ_v(1 − e^{−τ/τ_v})] → 6D(τ − τ_v)). The log-log slope d ln MSD / d ln τ on
the same window is reported: ≈ 1 when the window is diffusive, → 2 when it is ballistic.

Unwrapping. The sampler stores positions as integrated, never wrapped back into the cell,
but the C-rescale barostat scales them affinely with the cell (x ← μx, cell ← μ cell, so
fractional coordinates are unchanged by a cell move). Frames from elsewhere may be wrapped.
Both are handled by accumulating frame-to-frame steps in fractional coordinates with the
minimum-image convention and mapping each step to Å with the mean cell of its two frames,

    Δs = s_{f+1} − s_f − round(s_{f+1} − s_f),   Δr = Δs · (H_f + H_{f+1})/2,   u_f = Σ Δr,

which removes the barostat's affine scaling from the displacements (it is not diffusion) and
never multiplies a long unwrapped vector by a fluctuating cell. This is unambiguous only while
no atom moves half a box between two frames; a step beyond ``max_step_fraction`` of a box
vector raises. The mass-weighted centre-of-mass displacement of each system is subtracted.

Units at the interface: Å, fs, K, Pa·s; D in m²/s (1 Å²/fs = 10⁻⁵ m²/s = 10³ Å²/ps) and
in Å²/ps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from phasetune.sampling.frames import Frames
from phasetune.units import EV_IN_J, KB_EV_PER_K

__all__ = [
    "A2_PER_FS_IN_M2_PER_S",
    "YEH_HUMMER_XI_CUBIC",
    "DiffusionResult",
    "diffusion_coefficient",
    "mean_square_displacement",
    "multiple_origin_msd",
    "unwrapped_displacements",
    "yeh_hummer_correction",
]

#: 1 Å²/fs in m²/s.
A2_PER_FS_IN_M2_PER_S: float = 1.0e-5
#: 1 m²/s in Å²/ps.
_A2_PER_PS_PER_M2_PER_S: float = 1.0e8
#: Yeh & Hummer's ξ for a cubic periodic box (the Madelung-like constant of the Oseen lattice
#: sum; J. Phys. Chem. B 108, 15873 (2004)).
YEH_HUMMER_XI_CUBIC: float = 2.837297
#: Boltzmann constant in J/K.
_KB_J_PER_K: float = KB_EV_PER_K * EV_IN_J


# ---------------------------------------------------------------------------- unwrapping


def unwrapped_displacements(
    positions: Tensor, cell: Tensor, *, max_step_fraction: float = 0.25
) -> Tensor:
    """Unwrapped displacements u_f = r_f − r_0 (Å) of one system, wrapped or not.

    Args:
        positions: [F, n, 3] Cartesian positions in Å (wrapped into the cell or not).
        cell: [F, 3, 3] row-vector cells in Å (rows are the box vectors), or one [3, 3] cell.
        max_step_fraction: largest accepted minimum-image step between consecutive frames,
            as a fraction of a box vector (fractional coordinate); larger steps make the
            unwrapping ambiguous and raise.

    Returns:
        [F, n, 3] float64 displacements from frame 0, u_0 = 0, built from the minimum-image
        fractional steps Δs mapped to Å with the mean cell of the two frames.
    """
    if positions.ndim != 3 or positions.shape[-1] != 3:
        raise ValueError(f"positions must have shape [F, n_atoms, 3], got {tuple(positions.shape)}")
    n_frames = positions.shape[0]
    if n_frames < 2:
        raise ValueError(f"need at least 2 frames to unwrap, got {n_frames}")
    if not 0.0 < max_step_fraction < 0.5:
        raise ValueError(f"max_step_fraction must be in (0, 0.5), got {max_step_fraction}")
    pos = positions.detach().to(torch.float64)
    h = cell.detach().to(device=pos.device, dtype=torch.float64)
    if h.shape == (3, 3):
        h = h.expand(n_frames, 3, 3)
    if h.shape != (n_frames, 3, 3):
        raise ValueError(
            f"cell must have shape [F, 3, 3] or [3, 3] with F = {n_frames}, got {tuple(cell.shape)}"
        )
    if not bool((torch.linalg.det(h).abs() > 0).all()):
        raise ValueError("cell is singular in some frame")
    frac = torch.einsum("fnk,fkl->fnl", pos, torch.linalg.inv(h))
    step = frac[1:] - frac[:-1]
    step = step - torch.round(step)
    worst = step.abs().amax(dim=-1)  # [F-1, n]
    if bool((worst > max_step_fraction).any()):
        flat = int(torch.argmax(worst))
        frame, atom = divmod(flat, worst.shape[1])
        raise ValueError(
            f"atom {atom} moved {float(worst[frame, atom]):.3f} of a box vector between frames "
            f"{frame} and {frame + 1} (limit max_step_fraction={max_step_fraction}): the "
            "minimum-image unwrapping is ambiguous; store frames more often (smaller stride)"
        )
    h_mid = 0.5 * (h[1:] + h[:-1])
    dr = torch.einsum("fnk,fkl->fnl", step, h_mid)
    return torch.cat([torch.zeros_like(pos[:1]), torch.cumsum(dr, dim=0)])


def _remove_drift(u: Tensor, masses: Tensor | None) -> Tensor:
    """Subtract the (mass-weighted) centre-of-mass displacement of every frame."""
    if masses is None:
        return u - u.mean(dim=1, keepdim=True)
    w = masses.detach().to(u)
    return u - torch.einsum("n,fnk->fk", w / w.sum(), u).unsqueeze(1)


# ---------------------------------------------------------------------------- MSD


def multiple_origin_msd(displacements: Tensor, *, max_lag_frames: int | None = None) -> Tensor:
    """MSD(k) = ⟨|u_i(t+k) − u_i(t)|²⟩ over atoms i and all origins t = 0..F−1−k (Å²).

    Uses |a−b|² = a² + b² − 2a·b with the origin sum of u(t)·u(t+k) from a zero-padded FFT
    autocorrelation (per coordinate, summed over atoms), O(n F log F).

    Args:
        displacements: [F, n, 3] unwrapped displacements (Å), e.g. from
            :func:`unwrapped_displacements`.
        max_lag_frames: largest lag k (frames); default F − 1.

    Returns:
        [max_lag_frames + 1] MSD for lags 0, 1, …, max_lag_frames (MSD(0) = 0).
    """
    if displacements.ndim != 3 or displacements.shape[-1] != 3:
        raise ValueError(
            f"displacements must have shape [F, n_atoms, 3], got {tuple(displacements.shape)}"
        )
    n_frames, n_atoms = displacements.shape[:2]
    if n_frames < 2 or n_atoms < 1:
        raise ValueError(f"need at least 2 frames and 1 atom, got {n_frames} and {n_atoms}")
    max_lag = n_frames - 1 if max_lag_frames is None else int(max_lag_frames)
    if not 1 <= max_lag <= n_frames - 1:
        raise ValueError(f"max_lag_frames must be in [1, {n_frames - 1}], got {max_lag_frames}")
    x = displacements.detach().to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)  # MSD is shift-invariant; this avoids cancellation
    x = x.reshape(n_frames, -1)  # [F, 3n]
    n_fft = 1 << (2 * n_frames - 1).bit_length()
    spec = torch.fft.rfft(x, n=n_fft, dim=0)
    power = (spec.real**2 + spec.imag**2).sum(dim=1)
    cross = torch.fft.irfft(power, n=n_fft)[: max_lag + 1]  # Σ_t Σ_i u(t)·u(t+k)
    sq = (x * x).sum(dim=1)  # [F]
    prefix = torch.cat([sq.new_zeros(1), torch.cumsum(sq, dim=0)])
    lags = torch.arange(max_lag + 1, device=x.device)
    head = prefix[n_frames - lags]  # Σ_{t=0}^{F-1-k} |u(t)|²
    tail = prefix[n_frames] - prefix[lags]  # Σ_{t=k}^{F-1} |u(t)|²
    counts = (n_frames - lags).to(x.dtype)
    msd = (head + tail - 2.0 * cross) / (counts * n_atoms)
    msd[0] = 0.0
    return msd.clamp_min(0.0)


def _frame_interval_fs(frames: Frames, timestep_fs: float | None, stride: int | None) -> float:
    if timestep_fs is None:
        timestep_fs = frames.metadata.get("timestep_fs")
        if timestep_fs is None:
            raise ValueError("frames carry no timestep_fs in their metadata; pass timestep_fs")
    if stride is None:
        steps = frames.step.to(torch.long).flatten()
        if steps.numel() < 2:
            raise ValueError(f"need at least 2 frames, got {steps.numel()}")
        diffs = torch.unique(steps[1:] - steps[:-1])
        if diffs.numel() != 1 or int(diffs[0]) < 1:
            raise ValueError(
                "frames.step does not advance by one constant stride "
                f"(steps between frames: {diffs.tolist()}); pass stride or use one "
                "contiguous run"
            )
        stride = int(diffs[0])
    if not timestep_fs > 0 or stride < 1:
        raise ValueError(f"need timestep_fs > 0 and stride >= 1, got {timestep_fs}, {stride}")
    return float(timestep_fs) * int(stride)


def _system_displacements(
    frames: Frames, system: int, *, remove_drift: bool, max_step_fraction: float
) -> Tensor:
    if not 0 <= system < frames.n_systems:
        raise IndexError(f"system {system} out of range (n_systems = {frames.n_systems})")
    atoms = frames.system_idx == system
    if not bool(atoms.any()):
        raise ValueError(f"system {system} has no atoms")
    u = unwrapped_displacements(
        frames.positions[:, atoms], frames.cell[:, system], max_step_fraction=max_step_fraction
    )
    return _remove_drift(u, frames.masses[atoms]) if remove_drift else u


def mean_square_displacement(
    frames: Frames,
    *,
    system: int = 0,
    timestep_fs: float | None = None,
    stride: int | None = None,
    max_lag_frames: int | None = None,
    remove_drift: bool = True,
    max_step_fraction: float = 0.25,
) -> tuple[Tensor, Tensor]:
    """Multiple-origin MSD of one system of ``frames``: (lag times in fs, MSD in Å²).

    Frames are unwrapped (:func:`unwrapped_displacements`), the centre-of-mass drift is
    removed (``remove_drift``) and MSD(τ) is averaged over atoms and time origins
    (:func:`multiple_origin_msd`). ``timestep_fs`` defaults to ``frames.metadata`` and
    ``stride`` to the constant step between stored frames; τ_k = k · stride · timestep_fs.
    """
    interval = _frame_interval_fs(frames, timestep_fs, stride)
    u = _system_displacements(
        frames, system, remove_drift=remove_drift, max_step_fraction=max_step_fraction
    )
    msd = multiple_origin_msd(u, max_lag_frames=max_lag_frames)
    lag_fs = torch.arange(msd.numel(), dtype=torch.float64) * interval
    return lag_fs, msd


# ---------------------------------------------------------------------------- fits


def _linear_fit(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Least-squares slope and intercept of y = a x + b along the last dimension."""
    xm = x.mean()
    dx = x - xm
    slope = (dx * (y - y.mean(dim=-1, keepdim=True))).sum(-1) / (dx * dx).sum()
    return slope, y.mean(dim=-1) - slope * xm


def _window(max_lag: int, fit_window: tuple[float, float]) -> tuple[int, int]:
    lo, hi = fit_window
    if not 0.0 <= lo < hi <= 1.0:
        raise ValueError(f"fit_window must be fractions 0 <= lo < hi <= 1, got {fit_window}")
    k_lo = max(1, math.ceil(lo * max_lag - 1e-9))
    k_hi = math.floor(hi * max_lag + 1e-9)
    if k_hi - k_lo + 1 < 3:
        raise ValueError(
            f"fit window {fit_window} of the maximum lag ({max_lag} frames) holds "
            f"{max(0, k_hi - k_lo + 1)} lags, need at least 3: store more frames, use fewer "
            "blocks or a wider window"
        )
    return k_lo, k_hi


@dataclass(frozen=True)
class DiffusionResult:
    """Self-diffusion coefficient from the Einstein relation, with its error.

    D_m2_per_s ± error_m2_per_s: D from the MSD averaged over ``systems`` (m²/s).
    error_method: ``"replicas"`` (spread of the systems' D) or ``"blocks"`` (spread of the D
    of trajectory blocks of every system); ``samples_m2_per_s`` are those independent
    estimates. fit_window_fs: the fitted lag range (fs); log_log_slope: d ln MSD / d ln τ
    on it (≈ 1 if diffusive); intercept_A2: the fitted offset c. lag_fs [M+1], msd_A2 [M+1]
    (mean over systems), msd_per_system_A2 [S, M+1]. temperature_K, box_length_A (mean
    V^{1/3}): the state used by the Yeh–Hummer correction, D_corrected_m2_per_s (None
    without a viscosity).
    """

    D_m2_per_s: float
    error_m2_per_s: float
    error_method: str
    samples_m2_per_s: Tensor
    fit_window_fs: tuple[float, float]
    log_log_slope: float
    intercept_A2: float
    lag_fs: Tensor
    msd_A2: Tensor
    msd_per_system_A2: Tensor
    systems: tuple[int, ...]
    temperature_K: float
    box_length_A: float
    viscosity_Pa_s: float | None = None
    D_corrected_m2_per_s: float | None = None

    @property
    def D_A2_per_ps(self) -> float:
        return self.D_m2_per_s * _A2_PER_PS_PER_M2_PER_S

    @property
    def error_A2_per_ps(self) -> float:
        return self.error_m2_per_s * _A2_PER_PS_PER_M2_PER_S

    @property
    def D_corrected_A2_per_ps(self) -> float | None:
        if self.D_corrected_m2_per_s is None:
            return None
        return self.D_corrected_m2_per_s * _A2_PER_PS_PER_M2_PER_S

    def summary(self) -> str:
        """One line: D ± error, the method, the window and its log-log slope."""
        text = (
            f"D = {self.D_m2_per_s:.4g} ± {self.error_m2_per_s:.2g} m²/s "
            f"({self.D_A2_per_ps:.4g} ± {self.error_A2_per_ps:.2g} Å²/ps, {self.error_method}), "
            f"fit {self.fit_window_fs[0]:.0f}–{self.fit_window_fs[1]:.0f} fs, "
            f"log-log slope {self.log_log_slope:.3f}"
        )
        if self.D_corrected_m2_per_s is not None:
            text += f"; Yeh–Hummer D∞ = {self.D_corrected_m2_per_s:.4g} m²/s"
        return text


def _same_state(frames: Frames, systems: Sequence[int]) -> None:
    counts = frames.n_atoms_per_system
    if len({int(counts[s]) for s in systems}) > 1:
        raise ValueError(f"systems {list(systems)} differ in their number of atoms")
    if not frames.state_points:
        return
    keys = ("phase", "temperature_K", "pressure_GPa", "cell_mode")
    states = {tuple(frames.state_points[s].get(k) for k in keys) for s in systems}
    if len(states) > 1:
        raise ValueError(
            f"systems {list(systems)} are not replicas of one state point "
            f"(phase, T, P, cell mode differ: {sorted(states, key=str)})"
        )


def _check_restarts(frames: Frames, systems: Sequence[int], *, timestep_given: bool) -> None:
    """Refuse systems the sampler restarted (``metadata["md_events"]``): a restart puts a
    system back to an earlier snapshot and shrinks its time step, so its frames are not one
    trajectory with the stored frame interval."""
    events = frames.metadata.get("md_events") or []
    if not events or not frames.state_points:
        return
    first_step = int(frames.step.flatten()[0]) if frames.n_frames else 0
    for s in systems:
        name = frames.state_points[s].get("name")
        for event in events:
            if event.get("system") != name:
                continue
            during = int(event.get("step", first_step)) >= first_step
            if during or not timestep_given:
                raise ValueError(
                    f"system {s} ({name!r}) was restarted by the sampler at step "
                    f"{event.get('step')} ({event.get('action')}): "
                    + (
                        "its stored frames are not one continuous trajectory"
                        if during
                        else "its time step differs from metadata['timestep_fs']; pass the "
                        "time step it ran with as timestep_fs"
                    )
                )


def _temperature(frames: Frames, systems: Sequence[int]) -> float:
    if frames.state_points and all("temperature_K" in frames.state_points[s] for s in systems):
        return float(sum(frames.state_points[s]["temperature_K"] for s in systems) / len(systems))
    return float(frames.temperature[:, list(systems)].mean())


def _cubic_box_length(frames: Frames, systems: Sequence[int], *, check: bool) -> float:
    cells = frames.cell[:, list(systems)].to(torch.float64)  # [F, S, 3, 3]
    length = float(torch.linalg.det(cells).abs().pow(1.0 / 3.0).mean())
    if check:
        mean_cell = cells.mean(dim=(0, 1))
        lengths = mean_cell.norm(dim=-1)
        cosines = (mean_cell @ mean_cell.T) / (lengths[:, None] * lengths[None, :])
        off = cosines - torch.diag(torch.diagonal(cosines))
        if float(lengths.max() / lengths.min()) > 1.02 or float(off.abs().max()) > 0.02:
            raise ValueError(
                "the Yeh–Hummer correction with ξ = 2.837297 holds for a cubic box; the mean "
                f"cell has lengths {lengths.tolist()} Å and off-diagonal cosines up to "
                f"{float(off.abs().max()):.3f}"
            )
    return length


def yeh_hummer_correction(
    d_m2_per_s: float | Tensor,
    *,
    temperature_K: float,
    viscosity_Pa_s: float,
    box_length_A: float,
    xi: float = YEH_HUMMER_XI_CUBIC,
) -> float | Tensor:
    """Infinite-size D from a periodic-box one (Yeh & Hummer, J. Phys. Chem. B 108, 15873):

        D_∞ = D_PBC + ξ k_B T / (6 π η L),   ξ = 2.837297 for a cubic box of edge L.

    Args:
        d_m2_per_s: D measured in the periodic box, m²/s.
        temperature_K: T in K. viscosity_Pa_s: shear viscosity η in Pa·s (> 0).
        box_length_A: cubic box edge L in Å. xi: the box-shape constant ξ.

    Returns:
        D_∞ in m²/s (the correction, in m²/s, is ``yeh_hummer_correction(0, ...)``).
    """
    if not temperature_K > 0:
        raise ValueError(f"temperature_K must be > 0, got {temperature_K}")
    if not viscosity_Pa_s > 0:
        raise ValueError(f"viscosity_Pa_s must be > 0 (Pa·s), got {viscosity_Pa_s}")
    if not box_length_A > 0:
        raise ValueError(f"box_length_A must be > 0, got {box_length_A}")
    correction = (
        xi * _KB_J_PER_K * temperature_K / (6.0 * math.pi * viscosity_Pa_s * box_length_A * 1.0e-10)
    )
    return d_m2_per_s + correction


def diffusion_coefficient(
    frames: Frames,
    *,
    system: int | Sequence[int] = 0,
    timestep_fs: float | None = None,
    stride: int | None = None,
    fit_window: tuple[float, float] = (0.2, 0.7),
    n_blocks: int = 4,
    error_method: Literal["auto", "replicas", "blocks"] = "auto",
    viscosity_Pa_s: float | None = None,
    temperature_K: float | None = None,
    remove_drift: bool = True,
    max_step_fraction: float = 0.25,
    require_phase_ok: bool = True,
) -> DiffusionResult:
    """Self-diffusion coefficient D = slope/6 of MSD(τ) = 6Dτ + c, with an error estimate.

    The F frames are cut into ``n_blocks`` blocks of L_b = ⌊F/n_blocks⌋ frames. MSD(τ) is
    computed (multiple origins, whole trajectory, every system in ``system``) up to one
    block, τ_max = (L_b − 1)·Δt, and fitted by least squares on the lags
    [fit_window[0], fit_window[1]]·τ_max (default 20 %–70 %: past the ballistic start,
    before the noisy tail); D is the fit of the MSD averaged over the systems.

    Error (stated in ``error_method`` of the result):

    * ``"replicas"``: the systems are independent replicas of one state point; D_s is
      fitted for each, σ = std(D_s)/√S.
    * ``"blocks"``: every system's trajectory is split into its ``n_blocks`` blocks and D_b
      fitted in each on the same lag window (the blocks are nearly independent once L_b is
      well beyond the velocity correlation time); σ = std(D_b)/√(S·n_blocks). It is slightly
      conservative: the whole-trajectory MSD also uses origins that straddle blocks.
    * ``"auto"``: replicas with at least 4 systems (fewer give a poor spread), else blocks.

    With ``viscosity_Pa_s`` the Yeh–Hummer infinite-size value is added
    (:func:`yeh_hummer_correction`, cubic box, L = ⟨V^{1/3}⟩, T = the state point's set
    temperature unless ``temperature_K``); the error is that of D_PBC (η's is not included).

    Args:
        frames: stored frames (positions Å, cells Å).
        system: one system index or several replicas of the same state point.
        timestep_fs, stride: the MD step and steps per frame (default: from ``frames``).
        fit_window: lag fractions (lo, hi) of τ_max.
        n_blocks: blocks per trajectory (sets τ_max and the block error); ≥ 2 for one system.
        error_method: ``"auto"``, ``"replicas"`` or ``"blocks"``.
        viscosity_Pa_s: shear viscosity η in Pa·s for the Yeh–Hummer correction (None: none).
        temperature_K: T for the correction (default: set temperature, else measured mean).
        remove_drift: subtract each system's centre-of-mass displacement.
        max_step_fraction: see :func:`unwrapped_displacements`.
        require_phase_ok: refuse frames flagged by the sampler's phase check (a liquid that
            crystallised has no meaningful D).
    """
    if hasattr(system, "__index__"):  # int, numpy or 0-d torch integer
        systems: tuple[int, ...] = (int(system),)
    else:
        systems = tuple(int(s) for s in system)
    if not systems:
        raise ValueError("no system given")
    if len(set(systems)) != len(systems):
        raise ValueError(f"systems must be distinct, got {list(systems)}")
    for s in systems:
        if not 0 <= s < frames.n_systems:
            raise IndexError(f"system {s} out of range (n_systems = {frames.n_systems})")
    if len(systems) > 1:
        _same_state(frames, systems)
    if error_method not in ("auto", "replicas", "blocks"):
        raise ValueError(f"unknown error_method {error_method!r}; use auto, replicas or blocks")
    method = error_method
    if method == "auto":
        method = "replicas" if len(systems) >= 4 else "blocks"
    if method == "replicas" and len(systems) < 2:
        raise ValueError("error_method='replicas' needs at least 2 systems")
    if not isinstance(n_blocks, int) or n_blocks < 1:
        raise ValueError(f"n_blocks must be a positive integer, got {n_blocks}")
    if method == "blocks" and n_blocks * len(systems) < 2:
        raise ValueError("error_method='blocks' with one system needs n_blocks >= 2")
    if viscosity_Pa_s is not None and not viscosity_Pa_s > 0:
        raise ValueError(f"viscosity_Pa_s must be > 0 (Pa·s) or None, got {viscosity_Pa_s}")
    if require_phase_ok:
        flagged = ~frames.phase_ok[:, list(systems)]
        if bool(flagged.any()):
            raise ValueError(
                f"{int(flagged.sum())} frames of systems {list(systems)} failed the phase "
                "check (the phase changed); pass require_phase_ok=False to use them anyway"
            )

    _check_restarts(frames, systems, timestep_given=timestep_fs is not None)
    interval = _frame_interval_fs(frames, timestep_fs, stride)
    n_frames = frames.n_frames
    block = n_frames // n_blocks
    max_lag = block - 1
    if max_lag < 3:
        raise ValueError(
            f"{n_frames} frames in {n_blocks} blocks leave {block} frames per block; need at "
            "least 4 (store more frames or use fewer blocks)"
        )
    k_lo, k_hi = _window(max_lag, fit_window)
    lag_fs = torch.arange(max_lag + 1, dtype=torch.float64) * interval
    t_fit = lag_fs[k_lo : k_hi + 1]

    msd_systems, block_d = [], []
    for s in systems:
        u = _system_displacements(
            frames, s, remove_drift=remove_drift, max_step_fraction=max_step_fraction
        )
        msd_systems.append(multiple_origin_msd(u, max_lag_frames=max_lag))
        if method == "blocks":
            for b in range(n_blocks):
                piece = multiple_origin_msd(u[b * block : (b + 1) * block], max_lag_frames=max_lag)
                block_d.append(_linear_fit(t_fit, piece[k_lo : k_hi + 1])[0] / 6.0)
    msd_per_system = torch.stack(msd_systems)
    msd = msd_per_system.mean(dim=0)
    slope, intercept = _linear_fit(t_fit, msd[k_lo : k_hi + 1])
    d_a2_fs = float(slope) / 6.0
    if method == "replicas":
        samples = _linear_fit(t_fit, msd_per_system[:, k_lo : k_hi + 1])[0] / 6.0
    else:
        samples = torch.stack(block_d)
    error_a2_fs = float(samples.std(correction=1)) / math.sqrt(samples.numel())

    window = msd[k_lo : k_hi + 1]
    if bool((window > 0).all()):
        log_slope = float(_linear_fit(t_fit.log(), window.log())[0])
    else:
        log_slope = float("nan")

    if temperature_K is not None:
        temperature = float(temperature_K)
    else:
        temperature = _temperature(frames, systems)
    box = _cubic_box_length(frames, systems, check=viscosity_Pa_s is not None)
    d_m2 = d_a2_fs * A2_PER_FS_IN_M2_PER_S
    corrected = None
    if viscosity_Pa_s is not None:
        corrected = float(
            yeh_hummer_correction(
                d_m2,
                temperature_K=temperature,
                viscosity_Pa_s=viscosity_Pa_s,
                box_length_A=box,
            )
        )
    return DiffusionResult(
        D_m2_per_s=d_m2,
        error_m2_per_s=error_a2_fs * A2_PER_FS_IN_M2_PER_S,
        error_method=method,
        samples_m2_per_s=samples * A2_PER_FS_IN_M2_PER_S,
        fit_window_fs=(float(t_fit[0]), float(t_fit[-1])),
        log_log_slope=log_slope,
        intercept_A2=float(intercept),
        lag_fs=lag_fs,
        msd_A2=msd,
        msd_per_system_A2=msd_per_system,
        systems=systems,
        temperature_K=temperature,
        box_length_A=box,
        viscosity_Pa_s=viscosity_Pa_s,
        D_corrected_m2_per_s=corrected,
    )
