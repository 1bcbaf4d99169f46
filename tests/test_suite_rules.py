"""How the test suite itself is put together.

A test module never imports another: what two modules share lives in a rig
(tests/fe_harness.py, tests/target_rig.py, tests/inventory_rig.py, ...), so
that running, moving or deleting one test module cannot break another.

Reads files only: no root, no build.
"""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_no_test_module_imports_another():
    modules = sorted(TESTS.glob("test_*.py"))
    assert len(modules) > 20
    own = {p.stem for p in modules}
    found = {p.name: sorted(imported_modules(p) & own) for p in modules}
    assert not {k: v for k, v in found.items() if v}, (
        "move what the modules share into a rig module (tests/*_rig.py, tests/fe_harness.py)")
