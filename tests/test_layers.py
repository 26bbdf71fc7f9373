"""The exporter's layers are folders, and which may import which is checked here, not only said in a comment.

config/ reads files into frozen objects; scrape/ polls chargers into metric families and bytes; serve/ is the HTTP
app; report/ reads the record back from Prometheus; simulator/ plays chargers. ``cli`` sits on top and may import
any of them. Every import counts, including one inside a function.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXPORTER = ROOT / "exporter"

# What each part of exporter/ may import from exporter/ (besides itself). "exporter" alone is the package's
# __init__ (the version).
ALLOWED: dict[str, set[str]] = {
    "exporter.catalogue": set(),
    "exporter.memory": set(),
    "exporter.eventloop": set(),
    "exporter.config": set(),
    "exporter.scrape": {"exporter", "exporter.catalogue", "exporter.config"},
    "exporter.serve": {"exporter", "exporter.catalogue", "exporter.config", "exporter.scrape"},
    "exporter.report": {"exporter", "exporter.catalogue"},
    "exporter.simulator": {"exporter", "exporter.config"},
}
# Third-party modules a part must not import: the config layer reads files and nothing else; the scrape layer is
# an HTTP client and builds bytes, serving them is the serve layer's job.
FORBIDDEN_THIRD_PARTY: dict[str, tuple[str, ...]] = {
    "exporter.config": ("aiohttp", "prometheus_client"),
    "exporter.scrape": ("aiohttp.web",),
    "exporter.catalogue": ("aiohttp", "prometheus_client", "yaml"),
}
TOP_LEVEL_MODULES_MAX = 6  # besides __init__, __main__ and cli


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every import in the file, relative ones resolved, ``from a import b`` as ``a.b`` when
    ``a.b`` is a module of the project and as ``a`` otherwise."""
    found = []
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((node.lineno, full if is_module(full) else base))
    return found


def is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def part_of(name: str) -> str:
    """The layer a module of exporter/ belongs to (its package, or the top-level module itself)."""
    parts = name.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else name


def exporter_files() -> list[Path]:
    return sorted(EXPORTER.rglob("*.py"))


def test_each_layer_imports_only_the_layers_below_it() -> None:
    offenders = []
    for path in exporter_files():
        me = module_name(path)
        part = part_of(me)
        if part in ("exporter", "exporter.cli", "exporter.__main__"):
            continue
        allowed = ALLOWED[part] | {part}
        for line, name in imports_of(path):
            if name.split(".")[0] != "exporter":
                if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN_THIRD_PARTY.get(part, ())):
                    offenders.append(f"{path.relative_to(ROOT)}:{line}: {part} must not import {name}")
                continue
            target = "exporter" if name == "exporter" else part_of(name)
            if target not in allowed:
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {part} must not import {name}")
    assert offenders == []


def test_every_part_of_the_exporter_has_a_rule() -> None:
    """A new top-level module or package must say where it stands (add it to ALLOWED)."""
    parts = {part_of(module_name(p)) for p in exporter_files()} - {"exporter", "exporter.cli", "exporter.__main__"}
    assert parts - set(ALLOWED) == set()


def test_the_top_of_exporter_holds_few_modules() -> None:
    top = sorted(p.name for p in EXPORTER.glob("*.py") if p.name not in {"__init__.py", "__main__.py", "cli.py"})
    assert len(top) <= TOP_LEVEL_MODULES_MAX, top


def test_no_two_modules_import_each_other() -> None:
    """No import cycle between modules of exporter/, direct or through others (a package's __init__ that
    re-exports its own modules is not a cycle of its modules)."""
    graph: dict[str, set[str]] = {}
    for path in exporter_files():
        me = module_name(path)
        targets = {name for _, name in imports_of(path) if name.split(".")[0] == "exporter" and name != me}
        if path.name == "__init__.py":  # re-exports point down into the package, not back up
            targets = {t for t in targets if not t.startswith(me + ".")}
        graph[me] = {t for t in targets if is_module(t)}
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join([*trail, nxt]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*trail, nxt]))
    assert cycles == []
