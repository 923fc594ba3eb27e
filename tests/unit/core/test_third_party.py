"""Third-party noise is silenced at its source, and only there."""

import os
import subprocess
import sys

import pytest

from phasetune.third_party import cuda_driver_loadable

CODE = """
import sys, warnings
import phasetune.sampling.sampler  # imports torch-sim, which initialises Warp
import torch_sim, nvalchemiops
print("own stderr line", file=sys.stderr)
warnings.warn("own warning")
"""


@pytest.mark.skipif(cuda_driver_loadable(), reason="Warp prints nothing to hide with a driver")
def test_importing_the_stack_prints_only_phasetunes_own_messages_on_a_cpu_machine():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Warp" not in done.stdout + done.stderr, done.stdout + done.stderr
    assert "FutureWarning" not in done.stderr  # e3nn's torch.jit.script deprecation
    assert "own stderr line" in done.stderr and "UserWarning: own warning" in done.stderr


def test_without_the_fix_warp_would_print_its_line():
    """The check above can fail: Warp initialised plainly prints the no-driver line here."""
    if cuda_driver_loadable():
        pytest.skip("a CUDA driver is present")
    done = subprocess.run(
        [sys.executable, "-c", "import warp; warp.init()"], capture_output=True, text=True
    )
    assert "Could not find or load the NVIDIA CUDA driver" in done.stderr


MACE_CODE = """
import os, torch
from phasetune.potentials.mace import MacePotential, build_mace
module = build_mace(atomic_numbers=[22])
potential = MacePotential(module)
potential.sampling_model()  # imports torch-sim's MaceModel, which imports mace.calculators
from phasetune.potentials.base import sampling_copy
sampling_copy(potential)  # e3nn's codegen modules go through torch.jit.save/load
print("env after:", os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"))
torch.save({"x": object()}, "blob.pt")
try:
    torch.load("blob.pt")  # no weights_only given: torch's safe default must hold
    print("unpickled")
except Exception as err:
    print("refused:", type(err).__name__)
"""


def test_using_mace_leaves_torch_load_safe_and_says_nothing_about_cuequivariance(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    done = subprocess.run(
        [sys.executable, "-c", MACE_CODE],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,  # this pytest process may have imported mace itself
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "env after: None" in done.stdout, done.stdout
    assert "refused: UnpicklingError" in done.stdout, done.stdout
    assert "cuequivariance" not in (done.stdout + done.stderr).lower(), done.stdout
    # nor any third-party warning (e3nn's forced load, TorchScript, jit save/load: what
    # `phasetune-measure model=ti_small` printed ten of)
    assert "Warning" not in done.stderr, done.stderr[-3000:]


def test_without_the_guard_mace_would_force_unsafe_loads():
    """The check above can fail: a plain ``import mace`` sets the variable process-wide."""
    code = "import os, mace; print(os.environ.get('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD'))"
    env = {k: v for k, v in os.environ.items() if k != "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert done.stdout.strip() == "1", done.stdout + done.stderr
