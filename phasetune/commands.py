"""The console scripts ``phasetune``, ``phasetune-measure`` and ``phasetune-sample``.

Each answers ``--help`` and ``--version`` from its config alone (Hydra, no torch), checks
every value before any work (:mod:`phasetune.preflight`), and only then imports the heavy
stack (torch, torch-sim, Lightning) that does the work: the run function named in
:data:`COMMANDS`, called as ``run(cfg, output_dir)``.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

from phasetune.configs import CONFIG_DIR


@dataclass(frozen=True)
class Command:
    """A console script: its config, its run function and its check (``"module:function"``)."""

    prog: str
    config_name: str
    run: str
    check: str


COMMANDS = {
    "phasetune": Command(
        "phasetune", "train", "phasetune.train:train", "phasetune.train:preflight_train"
    ),
    "phasetune-measure": Command(
        "phasetune-measure",
        "measure",
        "phasetune.measure:measure",
        "phasetune.measure:preflight_measure",
    ),
    "phasetune-sample": Command(
        "phasetune-sample", "sample", "phasetune.cli:sample", "phasetune.cli:preflight_sample"
    ),
}


def _function(path: str):
    module, name = path.split(":")
    return getattr(importlib.import_module(module), name)


def check_command(command: Command, args: list[str]) -> None:
    """Every run ``args`` asks for checked; a bad value prints one line and exits 2."""
    from phasetune.preflight import precheck

    precheck(
        args,
        config_dir=CONFIG_DIR,
        config_name=command.config_name,
        prog=command.prog,
        check=lambda cfg: _function(command.check)(cfg),  # imported only when checking
    )


def run_command(command: Command, args: list[str]) -> None:
    """:func:`check_command`, then the run (or Hydra's ``--help``, ``-m`` sweep, ...)."""
    import hydra
    from hydra.core.hydra_config import HydraConfig

    check_command(command, args)

    @hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=command.config_name)
    def app(cfg) -> None:
        _function(command.run)(cfg, Path(HydraConfig.get().runtime.output_dir))

    sys.argv = [command.prog, *args]
    app()


def train_main() -> None:
    """``phasetune [overrides]`` fine-tunes; ``phasetune export RUN_DIR`` exports a run's model."""
    if len(sys.argv) > 1 and sys.argv[1] == "export":
        from phasetune.export import export_main

        raise SystemExit(export_main(sys.argv[2:]))
    run_command(COMMANDS["phasetune"], sys.argv[1:])


def measure_main() -> None:
    """``phasetune-measure [overrides]``: transition temperatures of a model."""
    if len(sys.argv) > 1 and sys.argv[1] == "merge":
        from phasetune.measure import merge_main

        raise SystemExit(merge_main(sys.argv[2:]))
    run_command(COMMANDS["phasetune-measure"], sys.argv[1:])


def sample_main() -> None:
    """``phasetune-sample [overrides]``: batched NPT sampling of state points."""
    run_command(COMMANDS["phasetune-sample"], sys.argv[1:])
