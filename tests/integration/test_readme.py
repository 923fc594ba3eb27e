"""The README is a front door: short, with the two commands, and CI runs exactly the second."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_readme_is_short_and_its_test_command_is_what_ci_runs():
    text = (REPO / "README.md").read_text()
    assert len(text.encode()) <= 8000, len(text.encode())  # bytes: the stricter count
    assert "bash scripts/run.sh" in text and "bash scripts/test.sh" in text
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert [line for line in ci if line and not line.startswith(("#", "set ", "cd "))] == [
        "bash scripts/test.sh"
    ]


def test_readme_links_resolve():
    text = (REPO / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if not target.startswith("http"):
            assert (REPO / target).exists(), target
