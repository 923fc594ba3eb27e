"""Fault injection for the resume tests: an injectable hook called at named fault points.

Production code calls ``fault_point(SITE)`` at a few places; with no hook installed (the
default) that is one ``None`` check. A test installs :func:`crash_at` (``with crash_at(site,
n): ...``) to raise :class:`InjectedFaultError` the n-th time the code passes the site.

Sites: ``sampling`` (halfway through an MD run), ``optimizer_step`` (gradients computed,
parameters not yet updated), ``between_steps`` (at the start of a step, after the previous
step's checkpoint).

A run in other processes (the installed command, DDP ranks) takes the same crash from the
environment: ``PHASETUNE_CRASH_AT=SITE:N`` makes every process that imports this module raise
the N-th time it passes SITE.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

SITES = ("sampling", "optimizer_step", "between_steps")
#: the environment variable of a crash in another process (tests only)
CRASH_VARIABLE = "PHASETUNE_CRASH_AT"


class InjectedFaultError(RuntimeError):
    """A crash injected on purpose (tests of resume parity)."""


def fault_point(site: str) -> None:
    """A named place where an installed hook may raise (no-op without one)."""
    if _hook is not None:
        _hook(site)


def _crash_hook(site: str, count: int) -> Callable[[str], None]:
    """A hook raising InjectedFaultError the ``count``-th time ``site`` is passed."""
    if site not in SITES:
        raise ValueError(f"fault site {site!r} unknown; sites: {', '.join(SITES)}")
    passes = 0

    def hook(at: str) -> None:
        nonlocal passes
        if at == site:
            passes += 1
            if passes == count:
                raise InjectedFaultError(f"injected fault at {site} (pass {passes})")

    return hook


def _hook_from_environment() -> Callable[[str], None] | None:
    spec = os.environ.get(CRASH_VARIABLE)
    if not spec:
        return None
    site, _, count = spec.partition(":")
    return _crash_hook(site, int(count or 1))


_hook: Callable[[str], None] | None = _hook_from_environment()


@contextlib.contextmanager
def crash_at(site: str, count: int = 1) -> Iterator[None]:
    """Within the block, raise InjectedFaultError the ``count``-th time ``site`` is passed;
    the previous hook (normally none) is restored on exit."""
    global _hook
    previous, _hook = _hook, _crash_hook(site, count)
    try:
        yield
    finally:
        _hook = previous
