"""Stopping on convergence: confirmed on frames sampled at the final θ, not on fitted ones."""

import pytest
import torch

from phasetune.learn.anchor import Anchor
from phasetune.learn.data import StatePointDataModule
from phasetune.learn.module import DiffTReModule
from phasetune.learn.resampling import Resampling, new_link_error
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.sampling.sampler import SamplerSettings
from phasetune.targets import target_from_dict

BOUND_MEV = 0.3 * 0.12  # the stopping bound, meV/atom: 0.3 tol, tol = 1 K · Δs = 0.12 meV/atom


def _argon_target(*, n_atoms: int):
    """fcc|liquid argon at 75 K, 0 GPa, tolerance 1 K."""
    return target_from_dict(
        {
            "name": "ar",
            "phases": ["fcc", "liquid"],
            "temperature_K": 75.0,
            "pressure_GPa": 0.0,
            "tolerance_K": 1.0,
            "structures": {
                "fcc": {"element": "Ar", "lattice_A": 5.40, "n_atoms": n_atoms},
                "liquid": {"element": "Ar", "lattice_A": 5.70, "n_atoms": n_atoms},
            },
        }
    )


def _argon_anchor(delta_g_eV: float) -> Anchor:
    """A given anchor with Δs = 1.2e-4 eV/K (so tol = 1.2e-4 eV/atom)."""
    return Anchor(
        target="ar",
        temperature_K=75.0,
        pressure_GPa=0.0,
        model_transition_K=75.0,
        model_transition_error_K=0.5,
        delta_g_eV=delta_g_eV,
        delta_g_error_eV=1e-5,
        delta_s_eV_per_K=1.2e-4,
        method="given",
    )


def _fit(argon, tmp_path, quiet_trainer, *, confirm: bool, delta_g_eV: float):
    model = LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"], cutoff_sigma=2.5)
    target = _argon_target(n_atoms=108)
    # Δs = 1.2e-4 eV/K: tol = 1.2e-4 eV, and the stopping bound is 0.3 tol = 36 μeV
    anchor = _argon_anchor(delta_g_eV)
    datamodule = StatePointDataModule(
        [target],
        SamplerSettings(
            timestep_fs=10.0,
            equilibration_steps=200,
            melt_steps=150,
            production_steps=200,
            stride=10,
            compressibility_per_GPa=0.5,
            progress=False,
        ),
        frames_dir=tmp_path,
    )
    module = DiffTReModule(
        model,
        [target],
        [anchor],
        trainable=["epsilon"],
        converged_fraction=0.3,
        patience=2,
        confirm_convergence=confirm,
    )
    # no ESS-triggered re-sampling: only the confirmation samples
    trainer = quiet_trainer(10, Resampling(ess_threshold=0.01))
    trainer.fit(module, datamodule=datamodule)
    return module, datamodule, model


def test_a_streak_on_fitted_frames_is_confirmed_on_fresh_ones_before_stopping(
    argon, tmp_path, quiet_trainer
):
    # Δg(θ₀) = 1 μeV: within the bound from the start. Step 0 estimates on fresh frames and
    # updates θ; step 1 completes the streak on frames θ was fitted to, so step 2 samples both
    # phases at the current θ, is still converged (a 1 μeV residual moves ε by ~1e-5 relative,
    # far inside the bound), and stops without an update.
    module, datamodule, model = _fit(argon, tmp_path, quiet_trainer, confirm=True, delta_g_eV=1e-6)
    rows = [r for r in module.history if "loss" in r]
    assert [r["fresh_frames"] for r in rows] == [1.0, 0.0, 1.0]
    assert datamodule.resamplings == 2  # both phases once, for the confirmation
    assert all(abs(r["dg_meV/ar"]) < BOUND_MEV for r in rows)
    # the reported model is the one the fresh frames were sampled with
    for ensemble in datamodule.ensembles.values():
        assert torch.equal(model.epsilon.detach(), ensemble.reference_params["epsilon"])


def test_without_confirmation_the_streak_on_fitted_frames_stops_the_run(
    argon, tmp_path, quiet_trainer
):
    module, datamodule, _ = _fit(argon, tmp_path, quiet_trainer, confirm=False, delta_g_eV=1e-6)
    rows = [r for r in module.history if "loss" in r]
    assert [r["fresh_frames"] for r in rows] == [1.0, 0.0]
    assert datamodule.resamplings == 0


def test_with_confirmation_fresh_frames_decide(argon, tmp_path, quiet_trainer):
    # Δg(θ₀) = 1 meV ≈ 8 tol. The ESS threshold near 0 re-samples nothing on its own, so the
    # capped steps (max_step) fit the frames until the estimate is inside the bound; that
    # streak makes the next step sample afresh, and the fresh estimate decides alone
    module, datamodule, _ = _fit(argon, tmp_path, quiet_trainer, confirm=True, delta_g_eV=1e-3)
    rows = [r for r in module.history if "loss" in r]
    assert abs(rows[0]["dg_meV/ar"] - 1.0) < 1e-9  # fresh frames: Δg = the anchor
    i = next(k for k in range(1, len(rows)) if rows[k]["fresh_frames"] == 1.0)
    streak = rows[i - 2 : i]
    assert all(r["fresh_frames"] == 0.0 and abs(r["dg_meV/ar"]) < BOUND_MEV for r in streak)
    assert datamodule.resamplings == 2 * sum(r["fresh_frames"] for r in rows[1:])
    if abs(rows[i]["dg_meV/ar"]) < BOUND_MEV:
        assert len(rows) == i + 1  # confirmed: stopped there
    else:
        assert len(rows) > i + 1  # the fresh frames disagreed with the fit: training goes on


def test_without_confirmation_fitted_frames_stop_the_run(argon, tmp_path, quiet_trainer):
    module, datamodule, _ = _fit(argon, tmp_path, quiet_trainer, confirm=False, delta_g_eV=1e-3)
    rows = [r for r in module.history if "loss" in r]
    assert 2 < len(rows) < 10 and datamodule.resamplings == 0
    assert all(r["fresh_frames"] == 0.0 and abs(r["dg_meV/ar"]) < BOUND_MEV for r in rows[-2:])
    assert abs(rows[-3]["dg_meV/ar"]) >= BOUND_MEV  # the first streak stopped it


@pytest.mark.parametrize(
    ("radius", "reduction", "predicted", "step", "expected"),
    [
        (0.1, -0.5, 1.0, 0.08, 0.04),  # worse on the same frames (ρ < 0): half the step taken
        (0.02, 0.9, 1.0, 0.02, 0.04),  # ρ = 0.9 at the cap: doubled ...
        (0.08, 0.9, 1.0, 0.08, 0.1),  # ... but never above max_step
        (0.05, 0.9, 1.0, 0.01, 0.05),  # ρ = 0.9 below the cap: unchanged
        (0.05, 0.5, 1.0, 0.05, 0.05),  # ρ = 0.5: unchanged
        (0.05, -1.0, 0.001, 0.05, 0.05),  # a noise-level promise is not judged
        (0.05, -1.0, 1.0, 1e-6, 0.1 / 64),  # the cap has a floor
    ],
)
def test_trust_radius_rule(radius, reduction, predicted, step, expected):
    from phasetune.learn.optimizers import trust_radius_update

    got = trust_radius_update(
        radius, reduction=reduction, predicted_reduction=predicted, step_size=step, max_step=0.1
    )
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("radius", "link_error", "expected"),
    [
        (0.02, 4.0, 0.01),  # links err 4x what is allowed: the cap shrinks by √4
        (0.02, 100.0, 0.005),  # ... at most 4x at once
        (0.002, 1e6, 0.1 / 64),  # ... and never below max_step/64
        (0.02, 0.5, 0.02),  # within the allowance: unchanged
        (0.02, 0.1, 0.04),  # well within: doubled ...
        (0.08, 0.1, 0.1),  # ... up to max_step
        (0.02, float("nan"), 0.02),  # no link to judge
    ],
)
def test_link_error_rule(radius, link_error, expected):
    from phasetune.learn.optimizers import link_error_radius

    got = link_error_radius(radius, link_error=link_error, allowed_error=1.0, max_step=0.1)
    assert got == pytest.approx(expected, rel=1e-12)


def test_new_chain_links_are_judged_once_in_quadrature_over_the_phases():
    from types import SimpleNamespace

    pairs, tolerance_eV = [("ar/fcc", "ar/liquid")], [1.2e-4]  # tol = Δs · 1 K
    tol_meV = 1e3 * tolerance_eV[0]
    seen: dict = {}

    def ensemble(round_, error_meV):
        return SimpleNamespace(round=round_, history=[{"error_meV": error_meV}] * round_)

    fresh = {"ar/fcc": ensemble(0, 0.0), "ar/liquid": ensemble(0, 0.0)}
    assert new_link_error(fresh, pairs, tolerance_eV, seen) is None  # first frames: no link
    both = {"ar/fcc": ensemble(1, 0.06 * tol_meV), "ar/liquid": ensemble(1, 0.08 * tol_meV)}
    error = new_link_error(both, pairs, tolerance_eV, seen)
    assert error == pytest.approx(0.1, rel=1e-12)  # √(0.06² + 0.08²) tol
    assert new_link_error(both, pairs, tolerance_eV, seen) is None  # judged once
    one = {**both, "ar/liquid": ensemble(2, 0.2 * tol_meV)}
    assert new_link_error(one, pairs, tolerance_eV, seen) == pytest.approx(0.2)


def _gauss_newton(size: int, **settings):
    """A DampedGaussNewton on one parameter θ = 1 (θ₀ = s = 1), max_step 2 %."""
    from phasetune.learn.optimizers import DampedGaussNewton

    theta = torch.nn.Parameter(torch.ones(size, dtype=torch.float64))
    reference = {"theta": torch.ones(size, dtype=torch.float64)}
    optimizer = DampedGaussNewton(
        [("theta", theta)],
        theta0=reference,
        scales=reference,
        n_targets=1,
        max_step=0.02,
        **settings,
    )
    return theta, reference, optimizer


def test_the_gauss_newton_cap_follows_the_link_error_over_its_allowance():
    """on_new_frames(link_error) in tolerance units, over link_error_fraction, sets the cap."""
    theta, reference, optimizer = _gauss_newton(2, link_error_fraction=0.1, initial_step=0.02)
    optimizer.on_new_frames(link_error=0.4)  # 4x the allowance: the cap shrinks by √4
    optimizer.step(lambda: (theta.sum() - 2.0).reshape(1))  # r = 0: no step, the cap set
    assert optimizer.trust_radius == pytest.approx(0.01, rel=1e-12)
    assert torch.equal(theta.detach(), reference["theta"])


def test_the_gauss_newton_first_step_is_capped_at_initial_step():
    """A far target: the first step moves by the initial cap (max_step/4 by default), not by
    max_step; a cap above max_step is refused."""
    for initial, expected in ((None, 0.005), (0.01, 0.01)):
        theta, _, optimizer = _gauss_newton(1, initial_step=initial)
        optimizer.step(lambda theta=theta: (theta - 2.0).reshape(1))  # wants +100 %
        assert float(theta) - 1.0 == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="initial_step must not exceed max_step"):
        _gauss_newton(1, initial_step=0.03)
