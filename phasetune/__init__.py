"""phasetune: fine-tune interatomic potentials to experimental phase-transition temperatures."""

__version__ = "0.1.0"

import warnings as _warnings

# e3nn (through mace) scripts its modules with torch.jit.script at import, which torch ≥ 2.9
# deprecates with a FutureWarning per call: third-party noise, silenced for that module only
_warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", module=r"torch\.jit\._script"
)
