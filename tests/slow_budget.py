"""Pytest plugin: the `slow` physics validations run last, and only while they fit a budget.

Each slow test carries its measured cost on the 2-core development machine under
``scripts/test.sh`` (two xdist workers of one thread each), ``@pytest.mark.slow(seconds=...)``.
With ``PHASETUNE_TEST_BUDGET_S`` set (CI sets it), a slow test is skipped, with the reason
printed, when the time used so far plus its cost times the machine's slowness would overrun
the budget. The slowness is learned from the slow tests
already run: their summed wall time (setup + call) over their summed nominal cost, at least 1
(a ratio of sums, so that a small test's fixed overhead does not stand for the machine). The
quick tests always run whole: they come first. The summary lists every slow test's wall
time against its nominal cost, so that a CI log shows which costs to re-measure.

A costly module fixture shared by several slow tests is charged to whichever of them builds
it: ``@pytest.mark.slow(seconds=10, shared={"ti1_rows": 3000})`` costs 3010 s until a test
has set ``ti1_rows`` up, 10 s after.

With pytest-xdist (``scripts/test.sh`` runs two workers, ``--dist loadgroup``) each worker
applies the budget to the wall time of its own session, and tests that share a
module-scoped fixture are put in one ``xdist_group`` (one per connected set of such
fixtures), so that the fixture is built once and a group keeps its place in the order
above. The controller prints the summary, with the largest slowness of the workers.
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
    "actual_sum": 0.0,
    "nominal_sum": 0.0,
}
_ran: list[str] = []
_skipped: list[str] = []
_timings: dict[str, list[float]] = {}  # nodeid -> [wall s (setup + call), nominal s]
BUDGET_SKIP = "is over the test budget"


def _key(nodeid: str) -> str:
    """The test's id without the ``@group`` suffix xdist's loadgroup appends."""
    return nodeid.split("@", 1)[0]


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


def _module_fixtures(item) -> list[str]:
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return []
    return [
        f"{item.path}::{name}"
        for name, defs in info.name2fixturedefs.items()
        if defs and defs[-1].scope == "module"
    ]


def _group_by_module_fixtures(items) -> None:
    """``xdist_group`` marks: one group per connected set of module-scoped fixtures."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    used = {item.nodeid: _module_fixtures(item) for item in items}
    for names in used.values():
        for name in names[1:]:
            parent[root(name)] = root(names[0])
    for item in items:
        if used[item.nodeid] and not any(item.iter_markers("xdist_group")):
            group = root(used[item.nodeid][0]).rsplit("/", 1)[-1]
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """Quick tests first, then the slow ones in their own order, except that those marked
    ``xfail`` (known failures, open issues) go last and ``@pytest.mark.slow(..., order=1)``
    (end-to-end runs that check no published value) go after the literature checks: a
    tight budget skips them first. Tests sharing a module fixture stay together."""
    _group_by_module_fixtures(items)
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
    key = _key(item.nodeid)
    if key not in _state["nominal"] or item.get_closest_marker("skip") is not None:
        return  # a skip mark skips it anyway, with its own reason
    nominal = _state["charged"][key] = _cost_now(key)
    item.user_properties.append(("phasetune_nominal_s", nominal))  # for the controller
    budget = float(os.environ.get("PHASETUNE_TEST_BUDGET_S") or 0)
    if budget <= 0:
        return
    elapsed = time.monotonic() - _state["start"]
    slowness = _state["slowness"]
    if not slow_test_fits(elapsed_s=elapsed, nominal_s=nominal, slowness=slowness, budget_s=budget):
        pytest.skip(
            f"{item.name} {BUDGET_SKIP}: {elapsed:.0f} s used of"
            f" PHASETUNE_TEST_BUDGET_S={budget:.0f}, it takes ≈ {nominal * slowness:.0f} s"
            f" ({nominal:.0f} s × {slowness:.2f})"
        )


def pytest_runtest_logreport(report):
    """Learn the machine's slowness from each slow test that ran (setup + call vs. nominal).

    Also counts the slow tests that ran or were skipped for the budget, from the reports
    alone: under xdist the controller sees only those."""
    key = _key(report.nodeid)
    if "slow" in report.keywords:
        if report.when == "call":
            _ran.append(key)
        elif report.when == "setup" and report.skipped and BUDGET_SKIP in str(report.longrepr):
            _skipped.append(key)
        if report.when in ("setup", "call") and not report.skipped:
            props = dict(report.user_properties)
            if "phasetune_nominal_s" in props:
                row = _timings.setdefault(key, [0.0, float(props["phasetune_nominal_s"])])
                row[0] += report.duration
    nominal = _state["charged"].get(key)
    if nominal is None or report.skipped:
        return
    if report.when == "setup":
        if report.passed:
            _state["built"].update(_state["shared"].get(key, {}))
    elif report.when == "call":
        _state["actual_sum"] += _timings[key][0]  # setup + call, summed above
        _state["nominal_sum"] += nominal
        _state["slowness"] = max(1.0, _state["actual_sum"] / _state["nominal_sum"])


def pytest_sessionfinish(session):
    """An xdist worker hands its slowness to the controller."""
    output = getattr(session.config, "workeroutput", None)
    if output is not None:
        output["phasetune_slowness"] = _state["slowness"]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """The controller keeps the largest slowness of its workers."""
    slowness = getattr(node, "workeroutput", {}).get("phasetune_slowness")
    if slowness is not None:
        _state["slowness"] = max(_state["slowness"], float(slowness))


def pytest_terminal_summary(terminalreporter):
    if _ran or _skipped:
        terminalreporter.write_line(
            f"slow validations: {len(_ran)} ran, {len(_skipped)} skipped for the test budget"
            f" (machine slowness {_state['slowness']:.2f} of their measured costs)"
        )
        for nodeid in _skipped:
            terminalreporter.write_line(f"SKIPPED for the test budget, NOT VALIDATED: {nodeid}")
        for nodeid, (wall, nominal) in sorted(_timings.items(), key=lambda kv: -kv[1][0]):
            terminalreporter.write_line(
                f"slow test wall time {wall:7.0f} s, nominal {nominal:6.0f} s"
                f" (× {wall / max(nominal, 1e-9):.2f}): {nodeid}"
            )
