"""A state point that leaves its phase: its target is skipped (or the run stops), the
others go on training."""

import logging

import pytest

from phasetune.learn.anchor import Anchor
from phasetune.learn.data import StatePointDataModule
from phasetune.learn.module import DiffTReModule
from phasetune.learn.resampling import Resampling
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.sampling.sampler import SamplerSettings
from phasetune.targets import target_from_dict


def _target(name, temperature_K):
    return target_from_dict(
        {
            "name": name,
            "phases": ["fcc", "liquid"],
            "temperature_K": temperature_K,
            "pressure_GPa": 0.0,
            "tolerance_K": 1.0,
            "structures": {
                "fcc": {"element": "Ar", "lattice_A": 5.40, "n_atoms": 108},
                "liquid": {"element": "Ar", "lattice_A": 5.70, "n_atoms": 108},
            },
        }
    )


def _anchor(target):
    return Anchor(
        target=target.name,
        temperature_K=target.temperature_K,
        pressure_GPa=0.0,
        model_transition_K=75.0,
        model_transition_error_K=0.5,
        delta_g_eV=1e-3,
        delta_g_error_eV=1e-4,
        delta_s_eV_per_K=1.2e-4,
        method="given",
    )


def _fit(argon, tmp_path, policy, quiet_trainer):
    model = LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"], cutoff_sigma=2.5)
    # fcc argon at 250 K (3.3 T_m) melts within picoseconds: that state point loses its phase
    targets = [_target("hot", 250.0), _target("ok", 70.0)]
    datamodule = StatePointDataModule(
        targets,
        SamplerSettings(
            timestep_fs=10.0,
            equilibration_steps=250,
            melt_steps=150,
            production_steps=100,
            stride=10,
            compressibility_per_GPa=0.5,
            progress=False,
        ),
        frames_dir=tmp_path,
    )
    module = DiffTReModule(
        model,
        targets,
        [_anchor(t) for t in targets],
        trainable=["epsilon"],
        patience=100,
    )
    trainer = quiet_trainer(2, Resampling(on_phase_change=policy))
    epsilon0 = model.epsilon.item()
    trainer.fit(module, datamodule=datamodule)
    return module, datamodule, epsilon0, model, trainer.resampling


def test_lost_phase_skips_its_target_and_the_others_train(argon, tmp_path, caplog, quiet_trainer):
    with caplog.at_level(logging.WARNING):
        module, datamodule, epsilon0, model, resampling = _fit(
            argon, tmp_path, "skip", quiet_trainer
        )
    assert module.skipped == ["hot"]
    assert datamodule.ensembles["hot/fcc"].n_valid() < 2
    assert resampling.phase_resamples == {"hot/fcc": 1}  # one fresh try from the crystal
    assert "target hot skipped this step" in caplog.text and "fcc phase at 250 K" in caplog.text
    rows = [r for r in module.history if "loss" in r]
    assert len(rows) == 2 and all(r["skipped_targets"] == 1.0 for r in rows)
    # the remaining target (Δg = +1 meV/atom at 70 K: the model's T_m is too high) trains,
    # and in the right direction: T* = 70 K + Δg/Δs = 78.3 K must come down, and at P = 0 a
    # Lennard-Jones T_m is proportional to ε (σ drops out), so ε must fall (by 70/78.3 − 1
    # = −11 % at most to reach 70 K; measured after 2 steps: −4.0 %) and the reweighted Δg
    # of the target must shrink toward 0 (measured 1.00 → 0.76 meV/atom)
    assert model.epsilon.item() != epsilon0
    change = model.epsilon.item() / epsilon0 - 1
    assert -0.11 < change < -0.01, change
    assert 0 < rows[1]["dg_meV/ok"] < rows[0]["dg_meV/ok"], rows
    assert rows[1]["loss"] < rows[0]["loss"], rows
    assert rows[0]["dg_meV/hot"] != rows[0]["dg_meV/hot"]  # NaN: not estimated


def test_lost_phase_stops_the_run_with_a_message(argon, tmp_path, quiet_trainer):
    with pytest.raises(RuntimeError, match=r"target hot: state point hot/fcc kept \d+/10 frames"):
        _fit(argon, tmp_path, "stop", quiet_trainer)
