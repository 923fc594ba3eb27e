"""phasetune: fine-tune interatomic potentials to experimental phase-transition temperatures.

The commands (``phasetune``, ``phasetune-measure``, ``phasetune-sample``, ``phasetune
export``) are thin wrappers around these functions, usable from Python::

    import phasetune
    cfg = phasetune.compose_config("train", ["threads=4"])
    summary = phasetune.fine_tune(cfg, "outputs/my_run")

- :func:`compose_config`: the config of a command, from the shipped tree and overrides.
- :func:`fine_tune`: anchor, DiffTRe fine-tuning, re-measurement, report (``phasetune``).
- :func:`measure_transitions`: transition temperatures of a model (``phasetune-measure``).
- :func:`sample_state_points`: batched MD of state points into frames (``phasetune-sample``).
- :func:`export_run`: a run's fine-tuned model as files (``phasetune export``).
- :func:`load_report`: the before/after rows of a run's ``report.csv``.

They are imported on first use, so ``import phasetune`` stays light. (They are not named
after their modules, ``phasetune.train`` etc., which an import would shadow.)
"""

__version__ = "0.1.0"

import warnings as _warnings
from importlib import import_module as _import_module

# e3nn (through mace) scripts its modules with torch.jit.script at import, which torch ≥ 2.9
# deprecates with a FutureWarning per call: third-party noise, silenced for that module only
_warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", module=r"torch\.jit\._script"
)
# ... and a UserWarning per scripted class ("instance-level annotations on empty non-base
# types"), and, when a model is copied (a sampling copy), its codegen modules go through
# torch.jit.save/load, each deprecated with a FutureWarning
_warnings.filterwarnings(
    "ignore",
    message=r"`torch\.jit\.(save|load)` is deprecated",
    module=r"torch\.jit\._serialization",
)
_warnings.filterwarnings(
    "ignore", message=r"The TorchScript type system doesn't support instance-level annotations"
)

#: public name → (module, attribute); resolved lazily by :func:`__getattr__`
_ENTRY_POINTS = {
    "compose_config": ("phasetune.configs", "compose_config"),
    "fine_tune": ("phasetune.train", "train"),
    "measure_transitions": ("phasetune.measure", "measure"),
    "sample_state_points": ("phasetune.cli", "sample"),
    "export_run": ("phasetune.export", "export_run"),
    "load_report": ("phasetune.report.rows", "load_report"),
}

__all__ = ["__version__", *_ENTRY_POINTS]


def __getattr__(name: str):
    if name not in _ENTRY_POINTS:
        raise AttributeError(f"module 'phasetune' has no attribute {name!r}")
    module, attribute = _ENTRY_POINTS[name]
    value = getattr(_import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ENTRY_POINTS))
