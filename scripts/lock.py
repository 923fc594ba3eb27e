"""Write requirements.lock: phasetune's runtime dependencies pinned to the installed versions.

Walks the requirements of the installed ``phasetune`` (no extras) through the installed
distributions, evaluating environment markers for this platform, and pins each one found
(``name==version``). Run it in the environment the tests passed in::

    .venv/bin/python scripts/lock.py            # writes requirements.lock
    .venv/bin/python scripts/lock.py --check    # exit 1 when the lock is stale

``scripts/setup.sh`` and the Dockerfile install with ``-c requirements.lock``, so an image
or a venv built later resolves to the same versions.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

LOCK = Path(__file__).resolve().parent.parent / "requirements.lock"
HEADER = "# phasetune's runtime dependencies, pinned (scripts/lock.py writes this file)\n"


def runtime_closure(root: str = "phasetune") -> dict[str, str]:
    """Canonical name → installed version for every runtime dependency of ``root``."""
    pinned: dict[str, str] = {}
    expanded: set[tuple[str, tuple[str, ...]]] = set()
    pending = [(Requirement(r), ()) for r in metadata.requires(root) or []]
    while pending:
        requirement, extras = pending.pop()
        environment = {"extra": extras[0]} if extras else {"extra": ""}
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        distribution = metadata.distribution(requirement.name)
        new_extras = tuple(sorted(requirement.extras))
        if (name, new_extras) in expanded:
            continue
        expanded.add((name, new_extras))
        pinned[name] = distribution.version
        for extra in new_extras or ("",):
            for text in distribution.requires or []:
                pending.append((Requirement(text), (extra,) if extra else ()))
    return dict(sorted(pinned.items()))


def lock_text() -> str:
    return HEADER + "".join(f"{name}=={version}\n" for name, version in runtime_closure().items())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when the lock is stale")
    args = parser.parse_args()
    text = lock_text()
    if args.check:
        stale = not LOCK.exists() or LOCK.read_text() != text
        if stale:
            print(f"{LOCK.name} is stale: run scripts/lock.py", file=sys.stderr)
        return int(stale)
    LOCK.write_text(text)
    print(f"wrote {LOCK} ({text.count(chr(10)) - 1} packages)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
