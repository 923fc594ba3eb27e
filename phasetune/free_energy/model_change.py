"""Gibbs-energy change between two parameter sets of a model, measured without reweighting.

DiffTRe estimates g(θ₁) − g(θ₀) of each sampled phase by a chain of FEP/BAR rounds. This
module measures the same change directly, to check a fine-tuned model (``bench/
delta_g_change_check.py``). Each state point is sampled with the mixed Hamiltonian

    H(λ) = (1 − λ) U_a + λ U_b

at λ nodes 0 = λ₀ < … < λ_m = 1 (every node of every state point in ONE batch, with
:class:`~phasetune.free_energy.switching.LambdaPath`), and in the state point's ensemble
(NPT: Gibbs, NVT: Helmholtz)

    G_b − G_a = ∫₀¹ ⟨U_b − U_a⟩_λ dλ                     (thermodynamic integration),

exact along this path for any pair of models: the endpoints alone fix the difference. Since
H(λ') − H(λ) = (λ' − λ)(U_b − U_a), the same frames also give BAR between neighbouring
nodes, ΔG = Σ_i ΔG_{i→i+1}, a second estimate with no quadrature error. Per atom throughout.

Errors: each node's mean carries its series' statistical inefficiency (blocking), and BAR's
asymptotic error is scaled by √g of its work series (consecutive MD frames are correlated).
Frames the phase check flags are excluded, as in the reweighting.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch_sim.models.interface import ModelInterface

from phasetune.free_energy.switching import LambdaPath
from phasetune.potentials.evaluation import frame_energies
from phasetune.sampling.sampler import SamplerSettings, StatePoint, sample_state_points
from phasetune.thermo.bar import correlated_bennett_acceptance_ratio
from phasetune.thermo.statistics import mean_and_drift_aware_error
from phasetune.units import KB_EV_PER_K


@dataclass
class ModelChangeResult:
    """G_b − G_a per atom (eV) at one state point, by TI and by BAR over the λ nodes."""

    name: str
    n_atoms: int
    temperature_K: float
    lambdas: np.ndarray
    #: ⟨U_b − U_a⟩_λ / N per node, eV/atom, and its standard error
    mean_delta_u_eV: np.ndarray
    mean_error_eV: np.ndarray
    n_valid_frames: np.ndarray
    ti_eV: float
    ti_error_eV: float
    bar_eV: float
    bar_error_eV: float

    def describe(self) -> str:
        return (
            f"{self.name}: G_b − G_a = {1e3 * self.ti_eV:+.3f} ± {1e3 * self.ti_error_eV:.3f} "
            f"meV/atom (TI, {len(self.lambdas)} nodes), {1e3 * self.bar_eV:+.3f} ± "
            f"{1e3 * self.bar_error_eV:.3f} (BAR); frames kept per node "
            f"{', '.join(str(int(n)) for n in self.n_valid_frames)}"
        )


def integration_weights(lambdas: Sequence[float]) -> np.ndarray:
    """Quadrature weights on the nodes: composite Simpson when they are equally spaced and odd
    in number, the trapezoid rule otherwise."""
    x = np.asarray(lambdas, dtype=np.float64)
    steps = np.diff(x)
    if len(x) >= 3 and len(x) % 2 == 1 and np.allclose(steps, steps[0]):
        w = np.ones(len(x))
        w[1:-1:2], w[2:-1:2] = 4.0, 2.0
        return w * steps[0] / 3.0
    return np.array([np.trapezoid(e, x) for e in np.eye(len(x))])


def lambda_state_points(
    state_points: Sequence[StatePoint], lambdas: Sequence[float]
) -> list[StatePoint]:
    """Every state point at every node, state point major: [p₀λ₀, p₀λ₁, …, p₁λ₀, …]."""
    return [
        dataclasses.replace(sp, name=f"{sp.name}_lambda{lam:g}")
        for sp in state_points
        for lam in lambdas
    ]


def _check_lambdas(lambdas: Sequence[float]) -> list[float]:
    out = [float(x) for x in lambdas]
    if len(out) < 2 or out[0] != 0.0 or out[-1] != 1.0 or any(np.diff(out) <= 0):
        raise ValueError(f"λ nodes must rise strictly from 0 to 1, got {out}")
    return out


def _mean_and_error(series: torch.Tensor) -> tuple[float, float]:
    """Mean and error of one node's run, drift included (:func:`mean_and_drift_aware_error`;
    fewer than 16 frames: σ/√n, a lower bound)."""
    if len(series) < 2:
        return math.nan, math.nan
    return mean_and_drift_aware_error(series)


def _bar_step(work_f: torch.Tensor, work_r: torch.Tensor, kT: float) -> tuple[float, float]:
    """BAR ΔG (eV) between two neighbouring nodes and its error scaled by √g."""
    if len(work_f) < 2 or len(work_r) < 2:
        return math.nan, math.nan
    result, _ = correlated_bennett_acceptance_ratio(work_f, work_r, kT)
    return float(result.delta_f), float(result.std_error)


def gibbs_change_between_models(
    model_a: ModelInterface,
    model_b: ModelInterface,
    state_points: Sequence[StatePoint],
    settings: SamplerSettings,
    *,
    lambdas: Sequence[float] = (0.0, 0.5, 1.0),
    chunk_frames: int = 16,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> list[ModelChangeResult]:
    """G_b − G_a per atom at each state point (its own ensemble), by λ-integration.

    Args:
        model_a, model_b: the two potentials (sampling copies; neither is trained here).
        state_points: phases and (T, P) to compare at; each runs at every λ node.
        settings: MD settings of the batch.
        lambdas: the nodes, rising from 0 to 1 (equally spaced and odd in number: Simpson).
        chunk_frames: frames per energy evaluation (1 for models tied to one batch layout,
            such as :class:`~phasetune.free_energy.einstein.EinsteinCrystal`).
    """
    nodes = _check_lambdas(lambdas)
    if not state_points:
        raise ValueError("no state points to compare the models at")
    points = lambda_state_points(state_points, nodes)
    path = LambdaPath(model_a, model_b)
    path.lam = torch.tensor([lam for _ in state_points for lam in nodes], dtype=dtype)
    frames, _ = sample_state_points(path, points, settings, device=device, dtype=dtype)
    with torch.no_grad():
        delta_u = frame_energies(model_b, frames, chunk_frames=chunk_frames) - frame_energies(
            model_a, frames, chunk_frames=chunk_frames
        )
    delta_u = delta_u.double().cpu()
    weights = integration_weights(nodes)
    results = []
    for p, sp in enumerate(state_points):
        n = len(sp.atoms)
        kT = KB_EV_PER_K * sp.temperature_K
        series = []
        for k in range(p * len(nodes), (p + 1) * len(nodes)):
            series.append(delta_u[frames.valid_frames(k).cpu(), k])
        stats = np.array([_mean_and_error(s / n) for s in series])
        bar, bar_var = 0.0, 0.0
        for i in range(len(nodes) - 1):
            step = nodes[i + 1] - nodes[i]
            dg, err = _bar_step(step * series[i], -step * series[i + 1], kT)
            bar += dg / n
            bar_var += (err / n) ** 2
        results.append(
            ModelChangeResult(
                name=sp.name,
                n_atoms=n,
                temperature_K=float(sp.temperature_K),
                lambdas=np.array(nodes),
                mean_delta_u_eV=stats[:, 0],
                mean_error_eV=stats[:, 1],
                n_valid_frames=np.array([len(s) for s in series]),
                ti_eV=float(weights @ stats[:, 0]),
                ti_error_eV=float(np.sqrt(weights**2 @ stats[:, 1] ** 2)),
                bar_eV=bar,
                bar_error_eV=math.sqrt(bar_var),
            )
        )
    return results
