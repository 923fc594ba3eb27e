"""The GPU check's dry run on the CPU (``bench/gpu_check.py --device cpu --quick``): every part
completes and reports numbers that hang together, so the one command the GPU machine runs is
not debugged on its scarce time."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow(seconds=80, order=1)
def test_gpu_check_dry_run_completes_on_the_cpu(tmp_path):
    out = tmp_path / "gpu_check"
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--device", "cpu", "--quick", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())["parts"]
    assert set(report) >= {"environment", "md", "pipeline", "ase", "reweight", "done"}, report
    md = report["md"]
    for name in ("ti_small", "mace_medium_size"):
        row = md[name]
        # 102 atoms per step: atom-steps/s is atoms over the step's wall time
        assert row["atom_steps_per_s"] == pytest.approx(102 / (row["ms_per_step"] / 1e3))
        assert row["step_over_bare"] == pytest.approx(row["ms_per_step"] / row["bare_call_ms"])
        timing = report["reweight"][name]
        assert timing["step_over_bare"] == pytest.approx(timing["step_s"] / timing["bare_s"])
    if report["environment"]["cuequivariance"]:
        # the same model with cuEquivariance tensor products: the same energies
        assert md["cueq_max_energy_difference_eV_per_atom"] < 1e-5, md
    pipeline = report["pipeline"]
    assert pipeline["returncode"] == 0 and pipeline["steps"] == 2, pipeline
    ase = report["ase"]
    ratio = ase["ase_ms_per_point_step"] / ase["batch_ms_per_point_step"]
    assert ase["speedup"] == pytest.approx(ratio), ase
    assert (out / "gpu_check.md").read_text().count("|") > 20
