"""A built wheel, installed without ``-e`` into a fresh environment, works from any directory:
the configs ship inside the package and the console scripts find them."""

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import TINY_TRAIN

from phasetune import __version__

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of a copy of the source tree (the checkout stays free of build files)."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(
        REPO / "phasetune", source / "phasetune", ignore=shutil.ignore_patterns("__pycache__")
    )
    out = tmp_path_factory.mktemp("dist")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return next(out.glob("phasetune-*.whl"))


def test_the_wheel_carries_every_shipped_config(wheel):
    shipped = {
        "phasetune/conf/" + p.relative_to(REPO / "phasetune" / "conf").as_posix()
        for p in (REPO / "phasetune" / "conf").rglob("*.yaml")
    }
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert shipped and shipped <= names, sorted(shipped - names)
    assert {"phasetune/conf/train.yaml", "phasetune/data/ti_small.pt"} <= names


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel (no ``-e``); dependencies come from the test venv via a
    path entry (its editable phasetune finder is not activated by a plain path line)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = Path(
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (purelib / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return venv


def test_installed_wheel_answers_help_and_version_from_an_unrelated_directory(installed, tmp_path):
    python = installed / "bin" / "python"
    where = subprocess.run(
        [str(python), "-c", "import phasetune; print(phasetune.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(installed) and not Path(where).is_relative_to(REPO), where
    help_text = subprocess.run(
        [str(installed / "bin" / "phasetune"), "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert help_text.returncode == 0, help_text.stderr[-2000:]
    assert "fine-tune" in help_text.stdout.lower() and "export" in help_text.stdout
    version = subprocess.run(
        [str(installed / "bin" / "phasetune"), "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert version.stdout.strip().endswith(__version__), version.stdout


def test_installed_wheel_runs_a_tiny_fine_tuning_from_an_unrelated_directory(installed, tmp_path):
    run_dir = tmp_path / "run"
    done = subprocess.run(
        [str(installed / "bin" / "phasetune"), *TINY_TRAIN, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "WANDB_MODE": "disabled", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = (run_dir / "report.csv").read_text().splitlines()
    assert len(report) == 2, report  # header + the one argon target
    assert not (REPO / "build").exists()
