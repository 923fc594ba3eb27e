"""The Dockerfile lints clean and its default command is a config that composes."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from phasetune.cli import CONFIG_DIR

REPO = Path(__file__).resolve().parent.parent


def test_dockerfile_passes_hadolint():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    done = subprocess.run([hadolint, str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_command_composes():
    text = (REPO / "Dockerfile").read_text()
    cmd = next(line for line in text.splitlines() if line.startswith("CMD "))
    args = json.loads(cmd[4:])  # the exec (JSON array) form
    assert args[0] == "phasetune" and "python3.12" in text
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("train", overrides=args[1:])
    assert cfg.trainer.accelerator == "gpu" and len(cfg.targets) == 12
