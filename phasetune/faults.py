"""Fault injection for the resume tests: an injectable hook called at named fault points.

Production code calls ``fault_point(SITE)`` at a few places; with no hook installed (the
default) that is one ``None`` check. A test installs :func:`crash_at` (``with crash_at(site,
n): ...``) to raise :class:`InjectedFaultError` the n-th time the code passes the site.

Sites: ``sampling`` (halfway through an MD run), ``optimizer_step`` (gradients computed,
parameters not yet updated), ``between_steps`` (at the start of a step, after the previous
step's checkpoint).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

SITES = ("sampling", "optimizer_step", "between_steps")
_hook: Callable[[str], None] | None = None


class InjectedFaultError(RuntimeError):
    """A crash injected on purpose (tests of resume parity)."""


def fault_point(site: str) -> None:
    """A named place where an installed hook may raise (no-op without one)."""
    if _hook is not None:
        _hook(site)


@contextlib.contextmanager
def crash_at(site: str, count: int = 1) -> Iterator[None]:
    """Within the block, raise InjectedFaultError the ``count``-th time ``site`` is passed;
    the previous hook (normally none) is restored on exit."""
    global _hook
    if site not in SITES:
        raise ValueError(f"fault site {site!r} unknown; sites: {', '.join(SITES)}")
    passes = 0

    def hook(at: str) -> None:
        nonlocal passes
        if at == site:
            passes += 1
            if passes == count:
                raise InjectedFaultError(f"injected fault at {site} (pass {passes})")

    previous, _hook = _hook, hook
    try:
        yield
    finally:
        _hook = previous
