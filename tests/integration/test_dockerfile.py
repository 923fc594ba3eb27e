"""The Dockerfile lints clean, caches its dependencies, runs as a non-root user, installs the
locked versions, and its default command is a config that composes."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from phasetune.configs import CONFIG_DIR

REPO = Path(__file__).resolve().parents[2]


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_command_composes():
    text = (REPO / "Dockerfile").read_text()
    cmd = next(line for line in text.splitlines() if line.startswith("CMD "))
    args = json.loads(cmd[4:])  # the exec (JSON array) form
    assert args[0] == "phasetune" and "FROM python:3.12" in text
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=args[1:])
    assert cfg.trainer.accelerator == "gpu" and len(cfg.targets) == 12


def _instructions() -> list[str]:
    lines = (REPO / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dependencies_are_installed_from_the_lock_before_the_code_is_copied():
    steps = _instructions()
    lock_install = next(i for i, s in enumerate(steps) if "-r /tmp/requirements.lock" in s)
    code_copy = next(i for i, s in enumerate(steps) if s.startswith("COPY phasetune"))
    assert lock_install < code_copy, "a code change would reinstall the dependencies"
    assert any("--no-deps" in s for s in steps[code_copy:]), "the package re-resolves its deps"
    user = [s for s in steps if s.startswith("USER ")]
    assert user and not user[-1].split()[1].startswith(("0", "root"))


def test_dockerignore_keeps_the_venv_and_outputs_out_of_the_build_context():
    ignored = (REPO / ".dockerignore").read_text().split()
    for path in (".venv/", ".git/", "outputs/"):
        assert path in ignored


def test_the_lock_pins_the_tested_versions_of_every_runtime_dependency():
    """scripts/lock.py --check fails when pyproject.toml or the venv moved away from the lock."""
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "lock.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    pins = dict(
        line.split("==") for line in (REPO / "requirements.lock").read_text().splitlines()[1:]
    )
    assert pins["torch"].startswith("2.") and pins["mace-torch"] == "0.3.16"
    assert pins["pytorch-lightning"].startswith("2.6") and "lightning" not in pins
