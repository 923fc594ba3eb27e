"""Third-party noise is silenced at its source, and only there."""

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
