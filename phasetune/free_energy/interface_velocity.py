"""From solid fractions x_s(t) of two-phase boxes to a melting temperature and its error.

Each box (temperature T_i, replica r) has two solid|liquid interfaces; its interface
velocity is

    v = (L_z / 2) dx_s/dt        (v > 0: the solid grows),

a least-squares slope over the frames before x_s leaves [s, 1 − s]. Near T_m, v is linear
in T, v = a + b T with b < 0, and T_m = −a/b.

Errors. Four estimates, and the reported σ(T_m) is the largest:

* the line fit's own error through every box (delta method on −a/b);
* the spread of the replicas' own T_m, std/√R (one or two degrees of freedom with two or
  three replicas, so it can come out far too small on its own);
* **the boxes' own noise**: each box's velocity error from the slopes of its production cut
  into ``n_blocks`` time blocks (batch means: for an interface that moves as a random walk
  with drift, std(block slopes)/√B is the error of the whole run's slope), propagated
  through the line fit to T_m. A faceted interface (Ti1 hcp basal) moves in
  whole layers at random times, so x_s(t) is a staircase: three boxes can lie on a line by
  chance (the line fit's error, 1 degree of freedom) while the blocks of each box disagree;
* **replica disagreement**: boxes at the same temperature whose interfaces move in opposite
  directions. At the temperatures next to T_m that is chance; at half the temperatures or
  more, or farther from T_m than one box's own scatter allows (2σ), it means the boxes do
  not measure a bulk melting point (too short a box along z, so the interfaces interact;
  too small a cross-section, so one fluctuation decides the box; or a phase classifier
  that misreads one phase). T_m lies somewhere among the temperatures where replicas
  disagree, so σ(T_m) is at least the largest distance from T_m to such a temperature, and
  the disagreement is reported.

A box whose solid turned into another crystal (:func:`converted_fraction`) measures that
crystal's growth; :func:`fit_untransformed` leaves such boxes out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from phasetune.sampling.phase_check import LIQUID_INDEX
from phasetune.structures import PHASES


def _linear_regime(x: np.ndarray, saturation: float) -> int:
    """Number of leading frames before the solid fraction leaves [s, 1 − s]."""
    outside = (x < saturation) | (x > 1 - saturation)
    return int(np.argmax(outside)) if outside.any() else len(x)


def frame_mean(values: np.ndarray) -> np.ndarray:
    """The mean over frames (axis 0) of each box's series, exactly rounded (math.fsum), so
    that a box's numbers do not depend on how many other boxes shared its batch (a
    vectorised mean over [frames, boxes] can differ in the last bit with the column count)."""
    values = np.asarray(values, dtype=np.float64)
    return np.apply_along_axis(lambda c: math.fsum(c) / len(c), 0, values)


def interface_velocities(
    time_ps: np.ndarray, solid_fraction: np.ndarray, box_length_z_A: np.ndarray, saturation: float
) -> np.ndarray:
    """v = (L_z/2) dx_s/dt per box (Å/ps), a least-squares slope over the linear regime."""
    velocities = np.empty(solid_fraction.shape[1])
    for s in range(solid_fraction.shape[1]):
        n = max(_linear_regime(solid_fraction[:, s], saturation), 3)
        slope = np.polyfit(time_ps[:n], solid_fraction[:n, s], 1)[0]
        velocities[s] = 0.5 * box_length_z_A[s] * slope
    return velocities


def interface_velocity_errors(
    time_ps: np.ndarray,
    solid_fraction: np.ndarray,
    box_length_z_A: np.ndarray,
    saturation: float,
    n_blocks: int = 3,
) -> np.ndarray:
    """σ(v) per box (Å/ps): std of the slopes of ``n_blocks`` equal time blocks of the linear
    regime, over √n_blocks (NaN where a block would have fewer than 3 frames)."""
    errors = np.full(solid_fraction.shape[1], math.nan)
    for s in range(solid_fraction.shape[1]):
        n = _linear_regime(solid_fraction[:, s], saturation)
        size = n // n_blocks
        if n_blocks < 2 or size < 3:
            continue
        slopes = [
            np.polyfit(
                time_ps[k * size : (k + 1) * size], solid_fraction[k * size : (k + 1) * size, s], 1
            )[0]
            for k in range(n_blocks)
        ]
        errors[s] = 0.5 * box_length_z_A[s] * float(np.std(slopes, ddof=1)) / math.sqrt(n_blocks)
    return errors


def velocity_noise_error(
    temperatures_K: np.ndarray, velocities: np.ndarray, velocity_errors: np.ndarray
) -> float:
    """σ(T_m) that the boxes' own velocity errors σ_i give the reported T_m (the unweighted
    line v = a + b (T − T̄), T_m = T̄ − a/b): the sandwich covariance
    (XᵀX)⁻¹ Xᵀ diag(σ²) X (XᵀX)⁻¹ of (b, a), then the delta method."""
    sigma = np.asarray(velocity_errors, dtype=float)
    if len(np.unique(temperatures_K)) < 2 or not np.all(np.isfinite(sigma)):
        return math.nan
    centred = temperatures_K - temperatures_K.mean()
    design = np.stack([centred, np.ones_like(centred)], axis=1)
    inverse = np.linalg.inv(design.T @ design)
    b, a = inverse @ (design.T @ velocities)
    if not b < 0:
        return math.nan
    cov = inverse @ (design.T * sigma**2) @ design @ inverse
    grad = np.array([a / b**2, -1.0 / b])  # ∂(T̄ − a/b)/∂(b, a)
    return float(math.sqrt(grad @ cov @ grad))


def fit_melting_temperature(temperatures_K: np.ndarray, velocities: np.ndarray) -> float:
    """T where the least-squares line v = a + b T crosses zero (needs b < 0)."""
    b, a = np.polyfit(temperatures_K, velocities, 1)
    if not b < 0:
        return math.nan
    return float(-a / b)


def fit_error(temperatures: np.ndarray, velocities: np.ndarray) -> float:
    """σ(T_m) of a single line fit from its residuals (delta method)."""
    if len(temperatures) < 3:
        return math.nan
    coeffs, cov = np.polyfit(temperatures, velocities, 1, cov=True)
    b, a = coeffs
    grad = np.array([a / b**2, -1.0 / b])  # ∂(−a/b)/∂(b, a)
    return float(math.sqrt(grad @ cov @ grad))


def disagreeing_temperatures(temperatures_K: np.ndarray, velocities: np.ndarray) -> list[float]:
    """Temperatures at which some boxes' solids grow (v > 0) and others melt (v < 0); the
    boxes at one temperature are its replicas."""
    out = []
    for t in np.unique(temperatures_K):
        v = velocities[temperatures_K == t]
        if len(v) > 1 and (v > 0).any() and (v < 0).any():
            out.append(float(t))
    return out


@dataclass(frozen=True)
class MeltingPointFit:
    """T_m of one pressure's boxes, its error and what the error rests on."""

    melting_temperature_K: float
    error_K: float
    replica_melting_temperatures_K: np.ndarray
    fit_error_K: float
    replica_spread_K: float
    disagreement_K: list[float]
    bracketed: bool
    n_temperatures: int = 0
    #: one box's own T_m scatter: the residual spread of v about the line over |slope|
    box_error_K: float = math.nan
    #: σ(T_m) from each box's velocity error (time blocks; :func:`velocity_noise_error`)
    velocity_noise_K: float = math.nan

    @property
    def replicas_disagree(self) -> bool:
        """More than chance: disagreement at half the temperatures or more (at least two), or
        at a temperature more than 2 σ_box from T_m (σ_box: one box's scatter). Neighbours
        of T_m that straddle zero by chance are not flagged (LJ at P* = 5: 120 and 123 K
        around T_m = 120.8 ± 2.2 K; 120 K around 121.7 ± 1.7 K)."""
        many = max(2, math.ceil(self.n_temperatures / 2))
        if len(self.disagreement_K) >= many:
            return True
        reach = 2 * self.box_error_K if math.isfinite(self.box_error_K) else 0.0
        return any(abs(t - self.melting_temperature_K) > reach for t in self.disagreement_K)


def fit_melting_point(
    temperatures_K: np.ndarray,
    replica: np.ndarray,
    velocities: np.ndarray,
    velocity_errors: np.ndarray | None = None,
) -> MeltingPointFit:
    """T_m from every box of one pressure, with the error of the module docstring
    (``velocity_errors``: σ(v) per box from :func:`interface_velocity_errors`, optional)."""
    n_replicas = len(np.unique(replica))
    per_replica = np.array(
        [
            fit_melting_temperature(temperatures_K[replica == r], velocities[replica == r])
            if len(np.unique(temperatures_K[replica == r])) > 1
            else math.nan
            for r in np.unique(replica)
        ]
    )
    t_m = fit_melting_temperature(temperatures_K, velocities)
    fit = fit_error(temperatures_K, velocities)
    finite = per_replica[np.isfinite(per_replica)]
    spread = (
        float(finite.std(ddof=1) / math.sqrt(len(finite)))
        if n_replicas > 1 and len(finite) > 1
        else math.nan
    )
    disagreement = disagreeing_temperatures(temperatures_K, velocities)
    reach = max((abs(t - t_m) for t in disagreement), default=math.nan)
    noise = (
        velocity_noise_error(temperatures_K, velocities, velocity_errors)
        if velocity_errors is not None
        else math.nan
    )
    candidates = [e for e in (fit, spread, reach, noise) if math.isfinite(e)]
    error = max(candidates) if candidates else math.nan
    bracketed = bool(math.isfinite(t_m) and temperatures_K.min() <= t_m <= temperatures_K.max())
    return MeltingPointFit(
        melting_temperature_K=t_m,
        error_K=error,
        replica_melting_temperatures_K=per_replica,
        fit_error_K=fit,
        replica_spread_K=spread,
        disagreement_K=disagreement,
        bracketed=bracketed,
        n_temperatures=len(np.unique(temperatures_K)),
        box_error_K=_box_error(temperatures_K, velocities),
        velocity_noise_K=noise,
    )


def _box_error(temperatures: np.ndarray, velocities: np.ndarray) -> float:
    """σ of one box's T_m: the residual spread of v about the fitted line, over |slope|."""
    if len(temperatures) < 3:
        return math.nan
    b, a = np.polyfit(temperatures, velocities, 1)
    residuals = velocities - (a + b * temperatures)
    spread = math.sqrt(float((residuals**2).sum()) / (len(temperatures) - 2))
    return spread / abs(b) if b != 0 else math.nan


#: a box whose solid lost more than this fraction of the box's atoms to another crystal (beyond
#: what melted) between the first and the last fifth of production has transformed: its
#: interface velocity is that crystal's growth, not the solid's melting. Ti1 hcp with its c
#: axis along the interface lost 15–37 % of the atoms to bcc in 9 ps at 1677–1853 K; with c
#: across the interface, ≤ 1 % (bench/RESULTS.md, "the hcp|liquid boxes").
TRANSFORMED_FRACTION = 0.1


def converted_fraction(start: np.ndarray, end: np.ndarray, solid_phase: str) -> np.ndarray:
    """Fraction of atoms the solid's own crystal lost to another crystal from ``start`` to ``end``.

    The smaller of what the solid lost beyond what melted, −Δx_solid − max(Δx_liquid, 0), and
    the largest gain Δx_c of another crystal c: both must show it, so that the classifier's
    noise between close crystals (fcc/hcp in small LJ boxes: 12–16 % hcp-like atoms
    throughout) does not. ``start`` and ``end`` are phase fractions with
    :data:`~phasetune.structures.PHASES` on the last axis.
    """
    own = PHASES.index(solid_phase)
    melted = np.clip(end[..., LIQUID_INDEX] - start[..., LIQUID_INDEX], 0.0, None)
    lost = start[..., own] - end[..., own] - melted
    others = [i for i, p in enumerate(PHASES) if i not in (own, LIQUID_INDEX)]
    gained = (end[..., others] - start[..., others]).max(-1)
    return np.minimum(lost, gained)


def fit_untransformed(
    temperatures_K: np.ndarray,
    replica: np.ndarray,
    velocities: np.ndarray,
    transformed,
    velocity_errors: np.ndarray | None = None,
) -> MeltingPointFit | None:
    """:func:`fit_melting_point` on the boxes that did not transform; None when fewer than
    two temperatures are left."""
    keep = ~np.asarray(transformed, dtype=bool)
    if len(np.unique(temperatures_K[keep])) < 2:
        return None
    errors = None if velocity_errors is None else np.asarray(velocity_errors)[keep]
    return fit_melting_point(temperatures_K[keep], replica[keep], velocities[keep], errors)
