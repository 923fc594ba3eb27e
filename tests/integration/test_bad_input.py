"""Bad input gets a clear message (the rest of the table lives beside the code it checks:
targets in test_targets.py, MACE files and elements in test_mace_finetune.py)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from phasetune.commands import COMMANDS, check_command
from phasetune.config_check import ConfigError, check_overrides, ensure_writable
from phasetune.configs import CONFIG_DIR
from phasetune.learn.anchor import Anchor
from phasetune.learn.module import DiffTReModule
from phasetune.learn.resampling import Resampling
from phasetune.potentials.lennard_jones import LennardJones
from phasetune.targets import target_from_dict
from phasetune.train import make_logger

REPO = Path(__file__).resolve().parents[2]
TRAIN = COMMANDS["phasetune"]


def test_override_typos_suggest_the_valid_key():
    with pytest.raises(
        ConfigError,
        match=r"unknown config key 'optimizer.max_stepp'\. Did you mean optimizer\.max_step",
    ):
        check_overrides(CONFIG_DIR, "train", ["optimizer.max_stepp=0.1"])
    with pytest.raises(ConfigError, match=r"Did you mean optimizer\.lr\b"):
        check_overrides(CONFIG_DIR, "train", ["optimizer=adam", "optimizer.lrr=0.1"])
    with pytest.raises(ConfigError, match="sampler.timestep_fs"):
        check_overrides(CONFIG_DIR, "train", ["sampler.timestep=2"])
    # a group option that does not exist: Hydra's own list of options is passed on
    with pytest.raises(ConfigError, match="mace_foundation"):
        check_overrides(CONFIG_DIR, "train", ["model=mace_foundatoin"])
    # and valid overrides compose
    cfg = check_overrides(CONFIG_DIR, "train", ["optimizer=adam", "optimizer.lr=0.1"])
    assert cfg.optimizer.lr == 0.1


def test_the_command_refuses_a_typo_before_starting(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "phasetune", "trainer.max_stepz=3"],
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
        [sys.executable, "-m", "phasetune", f"hydra.run.dir={blocker}/run"],
        cwd=REPO,
        env=dict(os.environ, WANDB_MODE="disabled"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 2 and "cannot be created" in done.stderr, done.stderr[-2000:]


def test_wandb_without_network_falls_back_to_offline_and_says_so(tmp_path, monkeypatch, caplog):
    import phasetune.config_check as config_check

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(config_check, "wandb_reachable", lambda *a, **k: False)
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=["logger=wandb"])
    with caplog.at_level("WARNING", logger="phasetune.train"):
        logger = make_logger(cfg, tmp_path)
    assert logger._offline is True
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("logging offline" in m and "wandb sync" in m for m in warned), warned
    # with WANDB_MODE=disabled nothing is probed and nothing changes
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr(
        config_check, "wandb_reachable", lambda *a, **k: pytest.fail("probed the network")
    )
    make_logger(cfg, tmp_path)


def _tiny_argon_target(argon):
    """A 4-atom fcc|liquid target at 80 K, a given anchor and the argon LJ model."""
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
    return target, anchor, LennardJones(epsilon_eV=argon["epsilon_eV"], sigma_A=argon["sigma_A"])


def test_ess_threshold_outside_zero_one(argon):
    target, anchor, model = _tiny_argon_target(argon)
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match=r"ess_threshold must be a finite number > 0 and <= 1"):
            Resampling(ess_threshold=bad)
    with pytest.raises(ValueError, match="on_phase_change must be one of"):
        Resampling(on_phase_change="ignore")
    with pytest.raises(ValueError, match=r"patience must be an integer >= 1, got 0"):
        DiffTReModule(model, [target], [anchor], patience=0)


def test_fit_without_a_resampling_callback_says_so_before_sampling(argon, tmp_path):
    import pytorch_lightning as pl

    from phasetune.learn.data import StatePointDataModule
    from phasetune.sampling.sampler import SamplerSettings

    target, anchor, model = _tiny_argon_target(argon)
    datamodule = StatePointDataModule(
        [target], SamplerSettings(progress=False), frames_dir=tmp_path / "frames"
    )
    trainer = pl.Trainer(
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    module = DiffTReModule(model, [target], [anchor])
    with pytest.raises(ValueError, match="needs a Resampling callback"):
        trainer.fit(module, datamodule=datamodule)
    assert not (tmp_path / "frames").exists() or not any((tmp_path / "frames").iterdir())


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["resampling.ess_threshold=1.5"],
            "resampling.ess_threshold must be a finite number > 0 and <= 1",
        ),
        (
            ["optimizer=adam", "optimizer.lr=abc"],
            "optimizer.lr must be a finite number > 0, got 'abc'",
        ),
        (["optimizer.max_step=0"], "optimizer.max_step must be a finite number > 0, got 0"),
        (["optimizer=adam", "optimizer.lr=nan"], "optimizer.lr must be a finite number > 0"),
        (["optimizer=sgd"], "optimizer=sgd: no such option; choose one of adam, gauss_newton"),
        (
            ["optimizer=adam", "loss.mean_energy_gauge=true"],
            "needs an optimizer that fits residuals",
        ),
        (["convergence.patience=1.5"], "convergence.patience must be an integer >= 1"),
        (["ckpt_path=/missing.ckpt"], "ckpt_path=/missing.ckpt: no such file"),
        (["sampler.timestep_fs=-1"], "sampler: sampler setting timestep_fs must be > 0"),
        (["sampler.production_steps=0"], "sampler: need stride >= 1 and production_steps"),
        (["anchor.settings.n_replicas=0"], "anchor.settings"),
        (
            [
                "anchor.settings.coexistence.cache_dir=/tmp",
                "anchor.settings.coexistence.box_share=0/2",
            ],
            "anchor.settings.coexistence.box_share: the anchor measures its targets in one run",
        ),
        (["threads=0"], "threads must be an integer >= 1"),
        (
            ["trainer.devices=2", "trainer.strategy=ddp"],
            "trainer.devices=2: each DDP rank samples whole targets and this run has 1; use at "
            "most 1 device",
        ),
        (["sampler.random_streams=system"], "unknown random_streams 'system'"),
        # the settings schemas (phasetune.settings as Hydra structured configs) refuse a
        # value of the wrong type when the config is composed
        (
            ["sampler.timestep_fs=abc"],
            "sampler.timestep_fs=abc: must be a number (SamplerSettings.timestep_fs)",
        ),
        (
            ["anchor.settings.n_temperatures=2.5"],
            "anchor.settings.n_temperatures=2.5: must be an integer "
            "(AnchorSettings.n_temperatures)",
        ),
        (
            ["sampler.stability.enabled=maybe"],
            "sampler.stability.enabled=maybe: must be true or false (StabilitySettings.enabled)",
        ),
        (
            ["anchor.settings.coexistence.production_step=5"],
            "Did you mean anchor.settings.coexistence.production_steps",
        ),
        (
            ["+sampler.thermostat=langevin"],
            "sampler.thermostat is already in the config: write sampler.thermostat=langevin",
        ),
        (["dtype=float16"], "dtype must be one of"),
        (["-m", "optimizer.max_stepp=0.1,0.2"], "Did you mean optimizer.max_step"),
        (
            ["-m", "optimizer.max_step=0.1,-1"],
            "optimizer.max_step must be a finite number > 0, got -1",
        ),
    ],
)
def test_bad_values_are_refused_in_one_line_before_any_work(tmp_path, capsys, args, message):
    """Each of these started minutes of anchor MD before failing (or ran silently)."""
    run_dir = tmp_path / "runs" / "x"
    with pytest.raises(SystemExit) as exit_info:
        check_command(TRAIN, [*args, f"hydra.run.dir={run_dir}", f"hydra.sweep.dir={run_dir}"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not run_dir.parent.exists()  # no empty run directory left behind


def test_garbage_checkpoint_is_refused_and_good_settings_pass(tmp_path, capsys):
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit):
        check_command(TRAIN, [f"ckpt_path={garbage}", f"hydra.run.dir={tmp_path}/run"])
    assert "not a checkpoint file" in capsys.readouterr().err
    accepted = ["optimizer=adam", "optimizer.lr=0.05", "threads=2", f"hydra.run.dir={tmp_path}/run"]
    check_command(TRAIN, accepted)
    check_command(TRAIN, ["-m", "optimizer.max_step=0.05,0.1", f"hydra.sweep.dir={tmp_path}/sweep"])


@pytest.mark.parametrize(
    ("function", "args", "message"),
    [
        (
            "measure_main",
            ["pressures=[]"],
            "pressures must list at least one",
        ),
        ("measure_main", ["pressure=[0]"], "Did you mean pressures"),
        ("measure_main", ["threads=0"], "threads must be an integer >= 1"),
        (
            "measure_main",
            [
                "model=ti1_eam",
                "pair=hcp_bcc",
                "method=free_energy",
                "free_energy.solid.n_replicas=1",
            ],
            "free_energy.solid: n_replicas must be >= 2",
        ),
        (
            "measure_main",
            ["coexistence.timestep_fs=-2"],
            "coexistence:",
        ),
        (
            "measure_main",
            ["preset=quick", "free_energy.enthalpy.stride=0.5"],
            "free_energy.enthalpy.stride=0.5: must be an integer (SamplerSettings.stride)",
        ),
        (
            "measure_main",
            ["free_energy.solid.n_replica=3"],
            "Did you mean free_energy.solid.n_replicas",
        ),
        ("sample_main", ["sampler.stride=0"], "sampler: need stride >= 1"),
        (
            "sample_main",
            ["dtype=half"],
            "dtype must be one of float32, float64",
        ),
    ],
)
def test_measure_and_sample_refuse_bad_values_before_any_work(
    tmp_path, capsys, monkeypatch, function, args, message
):
    import phasetune.commands

    run_dir = tmp_path / "runs" / "x"
    monkeypatch.setattr(sys, "argv", [function, *args, f"hydra.run.dir={run_dir}"])
    with pytest.raises(SystemExit) as exit_info:
        getattr(phasetune.commands, function)()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert not run_dir.parent.exists()


def test_a_bad_value_is_refused_by_the_installed_command_in_seconds(tmp_path):
    """As a user meets it: a fresh process in an empty directory (no anchor cache)."""
    import time

    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "phasetune", "optimizer.max_step=abc"],
        cwd=tmp_path,
        env=dict(os.environ, WANDB_MODE="disabled"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.perf_counter() - start
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert lines == ["phasetune: optimizer.max_step must be a finite number > 0, got 'abc'"], lines
    assert not any(tmp_path.iterdir())  # no run directory, no cache
    assert elapsed < 20, elapsed


@pytest.mark.parametrize(
    ("function", "prog"),
    [("train_main", "phasetune"), ("measure_main", "phasetune-measure")],
)
def test_help_describes_the_command_and_version_prints_it(function, prog):
    from phasetune import __version__

    code = f"import sys; from phasetune.commands import {function}; {function}()"
    env = dict(os.environ, WANDB_MODE="disabled")
    shown = subprocess.run(
        [sys.executable, "-c", code, "--help"], capture_output=True, text=True, env=env, timeout=300
    )
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.startswith(f"{prog}: "), shown.stdout[:300]
    assert "Examples:" in shown.stdout and "== Configuration groups ==" in shown.stdout
    if prog == "phasetune":
        assert "phasetune export RUN_DIR" in shown.stdout
    version = subprocess.run(
        [sys.executable, "-c", code, "--version"], capture_output=True, text=True, env=env
    )
    assert version.returncode == 0 and version.stdout.strip() == f"{prog} {__version__}"


def test_help_answers_without_importing_the_heavy_stack():
    """``phasetune --help`` from the configs alone: torch, torch-sim and Lightning (≈ 8 s of
    imports on 2 cores) are loaded only when a run starts."""
    code = (
        "import sys\n"
        "from phasetune.commands import train_main\n"
        "try:\n    train_main()\nexcept SystemExit:\n    pass\n"
        "heavy = ('torch', 'torch_sim', 'pytorch_lightning', 'mace')\n"
        "print('HEAVY', [m for m in heavy if m in sys.modules])\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", code, "--help"], capture_output=True, text=True, timeout=120
    )
    assert shown.stdout.strip().splitlines()[-1] == "HEAVY []", shown.stdout[-500:]


def test_export_of_a_non_mace_run_says_why_there_is_no_model_file(tmp_path, capsys):
    import torch
    from omegaconf import OmegaConf

    from phasetune.export import export_main

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    model_cfg = {
        "_target_": "phasetune.potentials.lennard_jones.LennardJones",
        "epsilon_eV": 0.0104,
        "sigma_A": 3.4,
    }
    OmegaConf.save(
        {"model": model_cfg, "dtype": "float64", "targets": []}, run / ".hydra/config.yaml"
    )
    model = LennardJones(epsilon_eV=0.0104, sigma_A=3.4)
    torch.save(model.state_dict(), run / "trained_model.pt")
    assert export_main([str(run)]) == 0
    out = capsys.readouterr().out
    assert "finetuned_state_dict.pt" in out and "no .model file: the run's model is not MACE" in out
    assert (run / "export" / "finetuned_state_dict.pt").is_file()
    assert not (run / "export" / "finetuned.model").exists()


def test_a_settings_typo_in_a_config_file_is_refused_when_composed(tmp_path):
    """The schema checks the files too, not only the command line: an experiment file with
    a misspelt sampler key used to reach the sampler as an unexpected keyword."""
    experiment = tmp_path / "experiment"
    experiment.mkdir()
    (experiment / "typo.yaml").write_text("# @package _global_\nsampler:\n  timestep_f: 2.0\n")
    with pytest.raises(ConfigError, match=r"timestep_f.*Did you mean sampler\.timestep_fs"):
        check_overrides(
            CONFIG_DIR, "train", [f"hydra.searchpath=[file://{tmp_path}]", "experiment=typo"]
        )


def test_each_settings_block_is_defined_once_and_typed_by_its_dataclass():
    """The sampler, coexistence, Frenkel–Ladd and anchor blocks are composed from one file
    each and typed by phasetune.settings (no hand-written _target_ for them), and the
    composed blocks build exactly the settings the files say."""
    from hydra.utils import instantiate

    from phasetune.settings import CoexistenceSettings, FrenkelLaddSettings, SamplerSettings

    conf = Path(CONFIG_DIR)
    for path in conf.rglob("*.yaml"):
        assert "Settings" not in path.read_text(), f"{path}: name the schema, not the class"
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        measure = compose("measure", overrides=["free_energy.enthalpy.stride=20"])
        train = compose("train")
    enthalpy = instantiate(measure.free_energy.enthalpy)
    liquid = instantiate(measure.free_energy.liquid)
    assert isinstance(enthalpy, SamplerSettings) and enthalpy.stride == 20
    assert liquid.stride == 10 and liquid.production_steps == enthalpy.production_steps == 1500
    anchor = instantiate(train.anchor.settings)
    assert isinstance(anchor.coexistence, CoexistenceSettings)
    assert anchor.coexistence.production_steps == 3000  # the anchor's one change
    coexistence = instantiate(measure.coexistence)
    differing = {k for k, v in vars(coexistence).items() if getattr(anchor.coexistence, k) != v}
    assert differing == {"production_steps"}
    assert isinstance(anchor.solid, FrenkelLaddSettings)
    assert anchor.enthalpy == SamplerSettings(**{**vars(liquid), "stability": liquid.stability})
