"""Bad input gets a clear message (the rest of the table lives beside the code it checks:
targets in test_targets.py, MACE files and elements in test_mace_finetune.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from phasetune.cli import CONFIG_DIR
from phasetune.config_check import ConfigError, check_overrides, ensure_writable
from phasetune.learn.anchor import Anchor
from phasetune.learn.module import DiffTReModule
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.targets import target_from_dict
from phasetune.train import make_logger

REPO = Path(__file__).resolve().parent.parent


def test_override_typos_suggest_the_valid_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'loss.lrr'\. Did you mean loss\.lr"):
        check_overrides(CONFIG_DIR, "train", ["loss.lrr=0.1"])
    with pytest.raises(ConfigError, match="sampler.timestep_fs"):
        check_overrides(CONFIG_DIR, "train", ["sampler.timestep=2"])
    # a group option that does not exist: Hydra's own list of options is passed on
    with pytest.raises(ConfigError, match="mace_foundation"):
        check_overrides(CONFIG_DIR, "train", ["model=mace_foundatoin"])
    # and valid overrides compose
    cfg = check_overrides(CONFIG_DIR, "train", ["loss.lr=0.1"])
    assert cfg.loss.lr == 0.1


def test_the_command_refuses_a_typo_before_starting(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "phasetune.train", "trainer.max_stepz=3"],
        cwd=tmp_path,
        env=dict(os.environ, WANDB_MODE="disabled"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2
    assert "Did you mean trainer.max_steps" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "outputs").exists()  # nothing started


def test_unwritable_output_directory(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="not writable.*hydra.run.dir"):
        ensure_writable(blocker / "run")
    done = subprocess.run(
        [sys.executable, "-m", "phasetune.train", f"hydra.run.dir={blocker}/run"],
        cwd=REPO,
        env=dict(os.environ, WANDB_MODE="disabled"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "cannot be created" in done.stderr, done.stderr[-2000:]


def test_wandb_without_network_falls_back_to_offline_and_says_so(tmp_path, monkeypatch, capsys):
    import phasetune.config_check as config_check

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(config_check, "wandb_reachable", lambda *a, **k: False)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["logger=wandb"])
    logger = make_logger(cfg, tmp_path)
    assert logger._offline is True
    assert "logging offline" in capsys.readouterr().out
    # with WANDB_MODE=disabled nothing is probed and nothing changes
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr(
        config_check, "wandb_reachable", lambda *a, **k: pytest.fail("probed the network")
    )
    make_logger(cfg, tmp_path)


def test_ess_threshold_outside_zero_one(argon):
    target = target_from_dict(
        {
            "name": "t",
            "phases": ["fcc", "liquid"],
            "temperature_K": 80.0,
            "tolerance_K": 1.0,
            "structures": {
                "fcc": {"element": "Ar", "lattice_A": 5.4, "n_atoms": 4},
                "liquid": {"element": "Ar", "lattice_A": 5.7, "n_atoms": 4},
            },
        }
    )
    anchor = Anchor("t", 80.0, 0.0, 75.0, 0.5, 1e-3, 1e-4, 1.2e-4, "given")
    model = LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"])
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match=r"ess_threshold must be in \(0, 1\]"):
            DiffTReModule(model, [target], [anchor], ess_threshold=bad)
    with pytest.raises(ValueError, match="on_phase_change must be one of"):
        DiffTReModule(model, [target], [anchor], on_phase_change="ignore")
