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
    packages = [p for p in (ROOT / "exporter").iterdir() if (p / "__init__.py").exists()]
    modules += [p for p in packages if p.name in ("report", "simulator")]  # a row for the folder
    modules += [  # the layers' modules have a row each
        p
        for pkg in packages
        if pkg.name not in ("report", "simulator")
        for p in pkg.glob("*.py")
        if p.name != "__init__.py"
    ]
    modules += [
        p for top in ("grafana", "deploy", "bench") for p in (ROOT / top).rglob("*.py") if p.name != "__init__.py"
    ]
    named = {f"`{p.relative_to(ROOT)}{'/' if p.is_dir() else ''}`" for p in modules}
    missing = sorted(name for name in named if name not in readme)
    assert missing == [], "add a row to tests/README.md for each"


MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 120


def python_files() -> list[Path]:
    """Every Python file of the project (generated files are JSON and YAML, so none is exempt)."""
    return sorted(p for top in ("exporter", "grafana", "deploy", "bench", "tests") for p in (ROOT / top).rglob("*.py"))


def test_no_module_over_600_lines_and_no_function_over_120() -> None:
    too_long = []
    for path in python_files():
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(ROOT)
        if text.count("\n") > MAX_MODULE_LINES:
            too_long.append(f"{where}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{where}:{node.lineno}: {node.name}() is {length} lines")
    assert too_long == [], "split these: a reader should see a module or a function whole"
