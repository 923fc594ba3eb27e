"""Every value of a command's config checked before any work: one line naming the key.

:func:`precheck` composes the command line's overrides
(:func:`~phasetune.config_check.check_overrides`: unknown keys get "did you mean"), once per
combination of a sweep's values with ``-m``, and hands each composed config to the command's
own check, which builds its settings objects (their ``__post_init__`` checks) without running
anything. A refusal is one line on stderr and exit status 2, before Hydra creates a run
directory; ``HYDRA_FULL_ERROR=1`` shows the traceback instead.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig

from phasetune.config_check import ConfigError, check_overrides, nearest_existing_parent


def _root_cause(err: BaseException) -> BaseException:
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def build_settings(key: str, node, *, separator: str = ": ") -> object:
    """``instantiate(node)``, a settings error raised as :class:`ConfigError` naming ``key``
    (``separator="."`` where the error names the field: ``resampling.ess_threshold ...``)."""
    try:
        return instantiate(node)
    except Exception as err:  # Hydra wraps the settings' own ValueError/TypeError
        raise ConfigError(f"{key}{separator}{_root_cause(err)}") from None


def check_common(cfg: DictConfig) -> None:
    """``dtype`` and ``threads``, which every command has."""
    from phasetune.configs import torch_dtype

    try:
        torch_dtype(cfg.get("dtype"))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    threads = cfg.get("threads")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"threads must be an integer >= 1 (CPU threads), got {threads!r}")


def sweep_combinations(overrides: list[str]) -> list[list[str]]:
    """The single runs of a ``-m`` command line: one override list per combination of the
    sweep values (``optimizer.lr=0.1,0.2 seed=0,1`` gives four)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    choices = []
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        if override.is_sweep_override():
            choices.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [list(combination) for combination in itertools.product(*choices)]


def precheck(
    args: list[str],
    *,
    config_dir: str,
    config_name: str,
    prog: str,
    check: Callable[[DictConfig], None],
) -> None:
    """Check every run ``args`` asks for; on a bad value print one line and exit 2.
    ``--version`` prints the version and exits."""
    if "--version" in args:
        from phasetune import __version__

        print(f"{prog} {__version__}")
        raise SystemExit(0)
    multirun = any(a in ("-m", "--multirun") for a in args)
    overrides = [a for a in args if a not in ("-m", "--multirun")]
    if any(a.startswith("-") for a in overrides):
        return  # Hydra's own flags (--help, --cfg, --config-dir, ...): Hydra handles them
    try:
        try:
            runs = sweep_combinations(overrides) if multirun else [overrides]
        except Exception as err:  # Hydra's override grammar
            raise ConfigError(f"bad command-line override: {_root_cause(err)}") from None
        configs = [check_overrides(config_dir, config_name, run) for run in runs]
        for cfg in configs:
            check(cfg)
        hydra_cfg = configs[0].hydra
        run_dir = Path(str(hydra_cfg.sweep.dir if multirun else hydra_cfg.run.dir))
        parent = nearest_existing_parent(run_dir)
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            where = "hydra.sweep.dir" if multirun else "hydra.run.dir"
            raise ConfigError(
                f"output directory {run_dir} cannot be created ({parent} is not writable); "
                f"choose another with {where}=/writable/path"
            )
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"{prog}: {err}", file=sys.stderr)
        raise SystemExit(2) from None
