"""Fault injection for the resume tests: ``PHASETUNE_FAULT=SITE:N`` raises
:class:`InjectedFaultError` the N-th time the code passes ``fault_point(SITE)``.

Sites: ``sampling`` (halfway through an MD run), ``optimizer_step`` (gradients computed,
parameters not yet updated), ``between_steps`` (at the start of a step, after the previous
step's checkpoint). Unset (the default), a fault point costs one dictionary lookup.
"""

from __future__ import annotations

import os

SITES = ("sampling", "optimizer_step", "between_steps")
_passes: dict[str, int] = {}


class InjectedFaultError(RuntimeError):
    """A crash injected on purpose (tests of resume parity)."""


def fault_point(site: str) -> None:
    spec = os.environ.get("PHASETUNE_FAULT")
    if not spec:
        return
    want, _, count = spec.partition(":")
    if want not in SITES:
        raise ValueError(f"PHASETUNE_FAULT site {want!r} unknown; sites: {', '.join(SITES)}")
    if want != site:
        return
    _passes[site] = _passes.get(site, 0) + 1
    if _passes[site] == int(count or 1):
        raise InjectedFaultError(f"injected fault at {site} (pass {_passes[site]})")


def reset_faults() -> None:
    """Forget how often each site was passed (call between runs in one process)."""
    _passes.clear()
