"""Shared test settings: few threads, no network for wandb, Lennard-Jones argon constants."""

import os

os.environ.setdefault("WANDB_MODE", "disabled")

import mace  # noqa: F401,E402  (must precede e3nn; sets torch.load defaults process-wide)
import pytest  # noqa: E402
import torch  # noqa: E402

from phasetune.units import KB_EV_PER_K  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))

#: Lennard-Jones argon (ε/k_B = 119.8 K, σ = 3.405 Å), the classic parameter set.
ARGON_EPSILON_K = 119.8
ARGON_EPSILON_EV = ARGON_EPSILON_K * KB_EV_PER_K
ARGON_SIGMA_A = 3.405


@pytest.fixture
def argon():
    return {"epsilon_eV": ARGON_EPSILON_EV, "sigma_A": ARGON_SIGMA_A, "epsilon_K": ARGON_EPSILON_K}
