"""What the benchmark scripts share: timestamps, the machine's load, the argon Lennard-Jones
parameters, the thread count from the environment and a pass-through model wrapper.

The scripts are modules of the ``bench`` package: run them from the repository root as
``python -m bench.<name>`` (``python -m bench.ti1.<name>``, ``python -m bench.lj.<name>``),
so that ``phasetune`` and ``bench`` are imported from the working tree.
"""

from __future__ import annotations

import datetime
import os

import torch

from phasetune.units import KB_EV_PER_K

#: Lennard-Jones argon, ε/k_B = 119.8 K and σ = 3.405 Å (as tests/conftest.py), in eV and Å
ARGON_EPSILON_EV = 119.8 * KB_EV_PER_K
ARGON_SIGMA_A = 3.405


def utc() -> str:
    """The time now, e.g. ``2026-11-25 02:43:00 UTC``."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def load_average() -> str:
    """The machine's 1, 5 and 15 minute load averages, e.g. ``1.02, 0.98, 0.75``."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def threads_from_env(default: int = 2) -> int:
    """Torch's CPU thread count from the environment variable ``THREADS`` (else ``default``)."""
    return int(os.environ.get("THREADS", str(default)))


class Delegating(torch.nn.Module):
    """A torch-sim model that hands every call to ``inner`` and reports its device and dtype;
    subclasses extend :meth:`forward` to count or time the calls."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    @property
    def device(self) -> torch.device:
        return self.inner.device

    @property
    def dtype(self) -> torch.dtype:
        return self.inner.dtype

    def forward(self, state, **kwargs):
        return self.inner(state, **kwargs)


def quick_preset(model: str = "ti1_eam"):
    """``phasetune-measure model=MODEL preset=quick``'s measurement settings (an
    ``AnchorSettings``: ``.coexistence``, ``.solid``, ``.liquid``, ``.enthalpy``), so that a
    bench script runs exactly what the preset runs."""
    from hydra import compose, initialize_config_dir

    from phasetune.configs import CONFIG_DIR
    from phasetune.measure import measurement_settings

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="measure", overrides=[f"model={model}", "preset=quick"])
    return measurement_settings(cfg, "free_energy")
