"""Where the shipped Hydra configs live, their schemas, and the dtype names of the commands.

The configs are package data (``phasetune/conf/``), so the console scripts and a
non-editable install find them from any working directory. The settings blocks (sampler,
coexistence, Frenkel–Ladd, anchor) are typed by the dataclasses of :mod:`phasetune.settings`
as Hydra structured configs (:func:`register_schemas`, run when this module is imported,
so that every composition of ``CONFIG_DIR`` has them): a config file names its schema in
its defaults list (``- /schema/sampler@_here_``). Torch-free, so that ``phasetune --help``
answers without importing the heavy stack.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from pathlib import Path

from phasetune import settings

#: Absolute path of the shipped config tree (``train.yaml``, ``measure.yaml``, groups).
CONFIG_DIR = str(Path(__file__).resolve().parent / "conf")

#: The ``dtype=`` values of the commands.
DTYPE_NAMES = ("float64", "float32")


#: The structured-config schemas, ``/schema/<name>`` in the config tree.
SCHEMAS = {
    "sampler": settings.SamplerSettings,
    "stability": settings.StabilitySettings,
    "coexistence": settings.CoexistenceSettings,
    "frenkel_ladd": settings.FrenkelLaddSettings,
    "anchor": settings.AnchorSettings,
}


def _config_type(kind):
    """The OmegaConf-typed annotation of a settings field (OmegaConf knows Optional, not ``|``)."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        inner = _config_type(args[0]) if len(args) == 1 else typing.Any
        return typing.Optional[inner] if type(None) in typing.get_args(kind) else inner  # noqa: UP045
    if kind in (bool, int, float, str):
        return kind
    if kind is dict or origin is dict:
        return dict[str, typing.Any]
    if kind is list or origin is list:
        return list[typing.Any]
    return typing.Any


@functools.cache
def schema_of(cls: type) -> type:
    """The structured config of settings dataclass ``cls``: its fields, their types and
    defaults (nested settings as nested schemas), and ``_target_`` naming ``cls`` so that
    ``hydra.utils.instantiate`` builds it (with plain Python containers, ``_convert_``)."""
    hints = typing.get_type_hints(cls)
    target = f"{cls.__module__}.{cls.__qualname__}"
    specs = [
        ("_target_", str, dataclasses.field(default=target)),
        # plain dicts and lists in the settings (``extra``), not OmegaConf containers
        ("_convert_", str, dataclasses.field(default="all")),
    ]
    for item in dataclasses.fields(cls):
        if not item.init:
            continue
        kind = hints[item.name]
        if item.default is not dataclasses.MISSING:
            default = item.default
        elif item.default_factory is not dataclasses.MISSING:
            default = item.default_factory()
        else:
            default = None
        if dataclasses.is_dataclass(kind):
            nested = functools.partial(_schema_value, default)
            specs.append((item.name, schema_of(kind), dataclasses.field(default_factory=nested)))
        elif isinstance(default, dict | list):
            copy = functools.partial(type(default), default)
            specs.append((item.name, _config_type(kind), dataclasses.field(default_factory=copy)))
        else:
            specs.append((item.name, _config_type(kind), dataclasses.field(default=default)))
    return dataclasses.make_dataclass(f"{cls.__name__}Schema", specs)


def _schema_value(value):
    """A settings instance as an instance of its schema (nested ones too)."""
    if not dataclasses.is_dataclass(value):
        return value
    values = {f.name: _schema_value(getattr(value, f.name)) for f in dataclasses.fields(value)}
    return schema_of(type(value))(**values)


def register_schemas() -> None:
    """Store the :data:`SCHEMAS` in Hydra's config store as ``schema/<name>`` (idempotent)."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    for name, cls in SCHEMAS.items():
        store.store(group="schema", name=name, node=schema_of(cls))


register_schemas()


def compose_config(command: str = "train", overrides: list[str] | tuple[str, ...] = ()):
    """The config a command would run with, composed from the shipped tree (no run dir).

    ``command`` is ``"train"``, ``"measure"`` or ``"sample"``; ``overrides`` are the
    command-line overrides, e.g. ``["experiment=ti_phase_diagram", "threads=4"]``. The
    result goes to :func:`phasetune.fine_tune`, :func:`phasetune.measure_transitions` or
    :func:`phasetune.sample_state_points` with an output directory.
    """
    from hydra import compose, initialize_config_dir

    if command not in ("train", "measure", "sample"):
        raise ValueError(f"command must be train, measure or sample, got {command!r}")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=command, overrides=list(overrides))


def torch_dtype(name: str):
    """The torch dtype of a ``dtype=`` value (ValueError naming the allowed ones)."""
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype must be one of {', '.join(sorted(DTYPE_NAMES))}, got {name!r}")
    import torch

    return getattr(torch, name)


def restores_process_state(function):
    """Decorate a run function (``train``, ``measure``, ``sample``) so that a library call
    leaves no trace in the process: torch's thread count (set from ``cfg.threads``), the
    random states of torch, numpy and ``random`` (``pl.seed_everything``), the warning
    filters and the environment variables (Lightning's ``PL_GLOBAL_SEED``, a wandb
    fallback's ``WANDB_MODE``) are put back when it returns or raises."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        import os
        import random
        import warnings

        import numpy as np
        import torch

        threads = torch.get_num_threads()
        # the legacy global numpy state is the one Lightning's seed_everything seeds
        states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state())  # noqa: NPY002
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
        filters = list(warnings.filters)
        environment = dict(os.environ)
        try:
            return function(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)
            random.setstate(states[0])
            np.random.set_state(states[1])  # noqa: NPY002
            torch.random.set_rng_state(states[2])
            if cuda is not None:
                torch.cuda.set_rng_state_all(cuda)
            warnings.filters[:] = filters
            for key in set(os.environ) - set(environment):
                del os.environ[key]
            os.environ.update(environment)

    return call
