"""Pytest plugin: the `slow` physics validations run last, and only while they fit a budget.

Each slow test carries its measured cost on the 2-core development machine,
``@pytest.mark.slow(seconds=...)``. With ``PHASETUNE_TEST_BUDGET_S`` set (CI sets it), a slow
test is skipped, with the reason printed, when the time used so far plus its cost times the
machine's slowness (the largest measured/nominal ratio of the slow tests already run, at
least 1) would overrun the budget. The quick tests always run whole: they come first.

A costly module fixture shared by several slow tests is charged to whichever of them builds
it: ``@pytest.mark.slow(seconds=10, shared={"ti1_rows": 3000})`` costs 3010 s until a test
has set ``ti1_rows`` up, 10 s after.
"""

import os
import time

import pytest

_state = {
    "start": time.monotonic(),
    "slowness": 1.0,
    "nominal": {},
    "shared": {},
    "built": set(),
    "charged": {},
    "setup_s": {},
}
_ran: list[str] = []
_skipped: list[str] = []


def slow_test_fits(*, elapsed_s: float, nominal_s: float, slowness: float, budget_s: float):
    """True when elapsed + nominal·slowness ≤ budget (all in seconds)."""
    return elapsed_s + nominal_s * slowness <= budget_s


def _slow_seconds(item) -> float | None:
    marker = item.get_closest_marker("slow")
    if marker is None:
        return None
    if "seconds" not in marker.kwargs:
        raise pytest.UsageError(f"{item.nodeid}: give its cost, @pytest.mark.slow(seconds=...)")
    return float(marker.kwargs["seconds"])


def _shared_costs(item) -> dict[str, float]:
    marker = item.get_closest_marker("slow")
    shared = dict(marker.kwargs.get("shared", {})) if marker is not None else {}
    unknown = set(shared) - set(item.fixturenames)
    if unknown:
        raise pytest.UsageError(f"{item.nodeid}: shared={sorted(unknown)} are not its fixtures")
    return {name: float(cost) for name, cost in shared.items()}


def _cost_now(nodeid: str) -> float:
    """Nominal cost of a slow test now: its own plus its shared fixtures not yet built."""
    pending = _state["shared"].get(nodeid, {})
    extra = sum(cost for name, cost in pending.items() if name not in _state["built"])
    return _state["nominal"][nodeid] + extra


def pytest_sessionstart(session):
    _state["start"] = time.monotonic()


def pytest_collection_modifyitems(config, items):
    """Quick tests first, then the slow ones in their own order, except that those marked
    ``xfail`` (known failures, open issues) go last and ``@pytest.mark.slow(..., order=1)``
    (end-to-end runs that check no published value) go after the literature checks: a
    tight budget skips them first. Tests sharing a module fixture stay together."""
    nominal = {item.nodeid: _slow_seconds(item) for item in items}
    _state["nominal"] = {k: v for k, v in nominal.items() if v is not None}
    _state["shared"] = {i.nodeid: _shared_costs(i) for i in items if nominal[i.nodeid] is not None}
    slow = [i for i in items if nominal[i.nodeid] is not None]
    items[:] = [i for i in items if nominal[i.nodeid] is None] + sorted(
        slow,
        key=lambda i: (
            i.get_closest_marker("xfail") is not None,
            int(i.get_closest_marker("slow").kwargs.get("order", 0)),
        ),
    )


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if item.nodeid not in _state["nominal"]:
        return
    nominal = _state["charged"][item.nodeid] = _cost_now(item.nodeid)
    budget = float(os.environ.get("PHASETUNE_TEST_BUDGET_S") or 0)
    if budget <= 0:
        return
    elapsed = time.monotonic() - _state["start"]
    slowness = _state["slowness"]
    if not slow_test_fits(elapsed_s=elapsed, nominal_s=nominal, slowness=slowness, budget_s=budget):
        _skipped.append(item.nodeid)
        pytest.skip(
            f"{item.name} is over the test budget: {elapsed:.0f} s used of"
            f" PHASETUNE_TEST_BUDGET_S={budget:.0f}, it takes ≈ {nominal * slowness:.0f} s"
            f" ({nominal:.0f} s × {slowness:.2f})"
        )


def pytest_runtest_logreport(report):
    """Learn the machine's slowness from each slow test that ran (setup + call vs. nominal)."""
    nominal = _state["charged"].get(report.nodeid)
    if nominal is None or report.skipped:
        return
    if report.when == "setup":
        _state["setup_s"][report.nodeid] = report.duration
        if report.passed:
            _state["built"].update(_state["shared"].get(report.nodeid, {}))
    elif report.when == "call":
        actual = _state["setup_s"].pop(report.nodeid, 0.0) + report.duration
        _ran.append(report.nodeid)
        _state["slowness"] = max(_state["slowness"], actual / nominal)


def pytest_terminal_summary(terminalreporter):
    if _ran or _skipped:
        terminalreporter.write_line(
            f"slow validations: {len(_ran)} ran, {len(_skipped)} skipped for the test budget"
            f" (machine slowness {_state['slowness']:.2f} of their measured costs)"
        )
        for nodeid in _skipped:
            terminalreporter.write_line(f"SKIPPED for the test budget, NOT VALIDATED: {nodeid}")
