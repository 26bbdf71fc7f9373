"""The tests' own layout: shared helpers only in tests/support/, and tests/README.md naming every module's tests."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def test_no_test_module_imports_another() -> None:
    """A test module that imports another breaks when that one is edited, split or renamed: helpers belong in
    tests/support/ (conftest.py holds only fixtures)."""
    offenders = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                last = name.rsplit(".", 1)[-1]
                if name.startswith("tests.") and (last.startswith("test_") or last == "conftest"):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: imports {name}")
    assert offenders == []


def test_the_readme_table_names_every_module() -> None:
    readme = (TESTS / "README.md").read_text(encoding="utf-8")
    modules = [p for p in (ROOT / "exporter").iterdir() if p.suffix == ".py" and not p.name.startswith("__")]
    modules += [p for p in (ROOT / "exporter").iterdir() if (p / "__init__.py").exists()]  # packages
    modules += [
        p for top in ("grafana", "deploy", "bench") for p in (ROOT / top).rglob("*.py") if p.name != "__init__.py"
    ]
    named = {f"`{p.relative_to(ROOT)}{'/' if p.is_dir() else ''}`" for p in modules}
    missing = sorted(name for name in named if name not in readme)
    assert missing == [], "add a row to tests/README.md for each"
