"""The report's error bars against the spread of independent repeats, on Lennard-Jones.

The "after" column is a coexistence re-measurement (``measure_transitions``), the
"reweighted" column T_k + Δg(θ)/Δs from the anchor and the reweighting chain. Each is
repeated here with independent seeds; an honest σ makes the repeats scatter by about σ
(reduced χ² about 1; an understated σ gives χ² ≫ 1). For the reweighted column the answer is
also known exactly: at P = 0, T_m ∝ ε, so reweighting the frames of ε₀ to 0.98 ε₀ must give
0.98 T*(ε₀), and the χ² is taken about that answer (a bias counts too). With 108 atoms at
1.03 T_m one seed's crystal partly melted and its estimate sat 9σ off (a phase change, not
noise); 256 atoms below T_m here. Costs measured on the 2-core machine: 401 s and 299 s.
"""

import dataclasses
import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from test_train import _anchor_settings, _target

from phasetune.learn.anchor import compute_anchors, measure_transitions
from phasetune.learn.data import StatePointDataModule
from phasetune.learn.module import DiffTReModule
from phasetune.learn.resampling import Resampling
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.sampling.sampler import SamplerSettings

#: T_m(ε₀) of this LJ at P = 0: coexistence 75.48 ± 0.29 K and free energies 75.51 ± 0.77 K
#: (bench/RESULTS.md); the reweighting test gives it to the anchor as the model's T*
T_STAR_K = 75.5
SEEDS = range(6)
MELT_FACTOR = 1.5
#: χ²/dof of n = 6 repeats exceeds 2.6 by chance with probability ≈ 2 % (2.3 % for 5 degrees
#: of freedom, about their own mean; 1.6 % for 6, about an exact answer)
CHI2_LIMIT = 2.6


def _reduced_chi2(
    values: np.ndarray, errors: np.ndarray, centre: float, *, fitted_centre: bool
) -> float:
    """χ²/dof about ``centre``: n − 1 degrees of freedom if the centre was fitted to the
    values (their weighted mean), n if it is known independently (an exact answer)."""
    dof = len(values) - 1 if fitted_centre else len(values)
    return float((((values - centre) / errors) ** 2).sum() / dof)


def _lj(argon) -> LennardJones:
    return LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"], cutoff_sigma=2.5)


@pytest.mark.slow(seconds=445, order=1)
def test_remeasured_melting_point_error_covers_the_spread_of_repeats(argon):
    target = _target("p0", T_STAR_K, 0.0, n_atoms=108)
    rows = [
        measure_transitions(
            _lj(argon), [target], _anchor_settings(seed=100 + seed), guesses_K=[T_STAR_K]
        )[0]
        for seed in SEEDS
    ]
    print([(round(r.transition_temperature_K, 2), round(r.error_K, 2), r.bracketed) for r in rows])
    # 108-atom boxes are small: replicas disagree and a root may stay unbracketed after the
    # re-centring, which the measurement flags as not a result; the others are results
    results = [r for r in rows if r.bracketed]
    assert len(results) >= 4, rows
    t = np.array([r.transition_temperature_K for r in results])
    sigma = np.array([r.error_K for r in results])
    chi2 = _reduced_chi2(t, sigma, float(np.average(t, weights=sigma**-2)), fitted_centre=True)
    print(f"T_m {np.round(t, 2)} K, σ {np.round(sigma, 2)} K, χ²/dof {chi2:.2f}")
    assert chi2 < CHI2_LIMIT, (t, sigma, chi2)


def _reweighted_T(argon, seed: int, tmp_path, scale: float) -> tuple[float, float]:
    """T_k + Δg(ε)/Δs at ε = scale·ε₀ from frames sampled at ε₀ (no training step)."""
    model = _lj(argon)
    temperature_K = scale * T_STAR_K
    target = dataclasses.replace(
        _target("p0", temperature_K, 0.0, n_atoms=256), model_transition_K=T_STAR_K
    )
    # independent anchors too (their enthalpy runs seeded per repeat), and the liquids
    # melted at 1.5 T: with one shared anchor and the default 2 T melt (fixed cell) the six
    # estimates sat 0.1 K (≈ 3σ) below the exact answer (χ²/dof 6.7), with independent
    # anchors and 2 T χ²/dof was 4.9, with both changed 1.2 (bench/RESULTS.md, error bars;
    # why the 2 T melt biases these short runs is not understood yet)
    settings = _anchor_settings(seed=200 + seed)
    settings.enthalpy = dataclasses.replace(
        settings.enthalpy, seed=400 + seed, melt_temperature_factor=MELT_FACTOR
    )
    (anchor,) = compute_anchors(model, [target], settings)
    sampler = SamplerSettings(
        timestep_fs=10.0,
        equilibration_steps=400,
        melt_steps=200,
        melt_temperature_factor=MELT_FACTOR,
        production_steps=1600,
        stride=8,
        compressibility_per_GPa=0.5,
        seed=300 + seed,
        progress=False,
    )
    datamodule = StatePointDataModule([target], sampler, frames_dir=tmp_path / f"frames{seed}")
    module = DiffTReModule(model, [target], [anchor], trainable=["epsilon"])
    resampling = Resampling(ess_threshold=0.01)
    trainer = pl.Trainer(
        max_steps=0,
        callbacks=[resampling],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(module, datamodule=datamodule)  # samples at ε₀, takes no step
    with torch.no_grad():
        model.epsilon.mul_(scale)
    estimate = module.estimate(resampling.prepare(datamodule, module, differentiable=False))
    assert datamodule.resamplings == 0  # a pure reweighting of the ε₀ frames
    assert estimate["ess"] and min(estimate["ess"].values()) > 0.05, estimate["ess"]
    return estimate["implied_T_K"][0], estimate["implied_T_error_K"][0]


@pytest.mark.slow(seconds=315)
def test_reweighted_estimate_and_its_error_against_exact_scaling(argon, tmp_path):
    scale = 0.98  # below T_m: the crystal is stable, the liquid 2 % supercooled
    rows = np.array([_reweighted_T(argon, seed, tmp_path, scale) for seed in SEEDS])
    t, sigma = rows[:, 0], rows[:, 1]
    exact = scale * T_STAR_K
    # six degrees of freedom: the exact centre is not fitted (dividing by five, as this test
    # once did, raised the false-alarm rate to 4 %; a CI run failed at 2.67 that way, which
    # is 2.23 per degree of freedom)
    chi2 = _reduced_chi2(t, sigma, exact, fitted_centre=False)
    print(
        f"reweighted T {np.round(t, 2)} K, σ {np.round(sigma, 2)} K, exact {exact:.2f} K, "
        f"χ²/dof about it {chi2:.2f}"
    )
    # about the exact answer, not the repeats' mean: a bias of the estimator counts too
    assert chi2 < CHI2_LIMIT, (t, sigma, exact)
    assert all(math.isfinite(s) and s > 0 for s in sigma)
