"""Imports go down the layers, checked from the source (no import is executed).

thermo → sampling → potentials / observables → free_energy / report → learn → the commands.
A module may import its own layer and those below it, never one above: the physics core
does not depend on training, training not on the commands or the notebook helpers.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[3] / "phasetune"

#: layer of each top-level module or subpackage of phasetune (lower = more basic)
LAYERS = {
    "units": 0,
    "configs": 0,
    "settings": 0,
    "console": 0,
    "third_party": 0,
    "faults": 0,
    "thermo": 0,
    "structures": 1,
    "targets": 1,
    "sampling": 1,
    "potentials": 2,
    "observables": 2,
    "free_energy": 3,
    "report": 3,
    "learn": 4,
    "ti_small": 4,
    "config_check": 5,
    "preflight": 5,
    "export": 5,
    "train": 5,
    "measure": 5,
    "cli": 5,
    "analysis": 6,
    "commands": 6,
    "__main__": 7,
    "__init__": 7,
}


def _phasetune_imports(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("phasetune"):
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(a.name for a in node.names if a.name.startswith("phasetune"))
    return names


def _upward_imports(package: Path = PACKAGE) -> list[str]:
    upward = []
    for path in sorted(package.rglob("*.py")):
        own = path.relative_to(package).parts[0].removesuffix(".py")
        assert own in LAYERS, f"{path}: give phasetune.{own} a layer in this test"
        for name in _phasetune_imports(ast.parse(path.read_text())):
            parts = name.split(".")
            if len(parts) < 2 or parts[1] == own:
                continue
            assert parts[1] in LAYERS, f"{path} imports {name}: no such layer entry"
            if LAYERS[parts[1]] > LAYERS[own]:
                upward.append(f"{path.relative_to(package.parent)} imports {name}")
    return upward


def test_no_module_imports_from_a_higher_layer():
    assert _upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The check can fail: a thermo module importing the training layer is reported."""
    fake = tmp_path / "phasetune"
    (fake / "thermo").mkdir(parents=True)
    (fake / "learn").mkdir()
    (fake / "thermo" / "bad.py").write_text("from phasetune.learn.module import DiffTReModule\n")
    (fake / "learn" / "ok.py").write_text("from phasetune.thermo.bad import x\n")
    assert _upward_imports(fake) == ["phasetune/thermo/bad.py imports phasetune.learn.module"]
