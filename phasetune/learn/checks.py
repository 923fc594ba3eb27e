"""Checks of the training layer's numeric settings: one message format for every key.

Each raises ``ValueError("<name> must be ..., got <value>")``; the command line prefixes
the config group (``optimizer.lr must be a finite number > 0, got 'abc'``). Cheap, so the
objects run them in their constructors, and the preflight builds the objects before any MD.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def check_number(
    name: str,
    value,
    *,
    low: float,
    low_ok: bool = True,
    high: float = math.inf,
    integer: bool = False,
) -> float:
    """``value`` as a float, if it is a (finite, or +inf when ``high`` is inf) number in
    [low, high] (low excluded unless ``low_ok``), an integer where ``integer``."""
    bad = isinstance(value, bool) or not isinstance(value, int | float)
    bad = bad or (integer and not float(value).is_integer())
    if not bad:
        number = float(value)
        bad = not (math.isfinite(number) or high == math.inf and number == math.inf)
        bad = bad or number < low or (number == low and not low_ok) or number > high
    if bad:
        lower = f"{'>=' if low_ok else '>'} {low:g}"
        span = lower if high == math.inf else f"{lower} and <= {high:g}"
        noun = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {noun} {span}, got {value!r}")
    return float(value)


def check_choice(name: str, value, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_flag(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value!r}")
    return value
