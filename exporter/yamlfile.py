"""Reading a config file and its YAML, hardened: what a wrong file (a log, ``/dev/zero``, a FIFO, an alias bomb,
generated garbage, a duplicated key) does is one clear, one-line error, never a hang, a traceback, an exhausted
memory or a silently kept last value. A YAML error never quotes a line that holds a credential.

Used for the config file (:mod:`exporter.config`), the secret files it names and ``--web.config.file``
(:mod:`exporter.webconfig`); ``error`` picks the :class:`~exporter.problems.ConfigError` subclass to raise.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Any

import yaml

from exporter.problems import ConfigError, describe, show

# A real config is far inside these: 10,000 chargers with auth and labels take 5 levels of nesting and 150,000 YAML
# nodes.
MAX_DEPTH = 32
MAX_NODES = 1_000_000
# A line that holds a credential inline: a YAML error there must not quote the line (PyYAML quotes an undefined
# alias, an unknown tag or an unreadable value, e.g. a password that starts with '*' or '!').
SECRET_LINE_RE = re.compile(r"(?:^|[\s{,])[\"']?(password|token)[\"']?\s*:")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one, reports a value it cannot
    convert (``2001-13-45``, ``!!int abc``) as a YAML error at its position instead of a bare exception, and stops
    composing at MAX_DEPTH levels (the composer recurses: thousands of levels were a RecursionError) or MAX_NODES
    nodes with aliases expanded (an alias bomb would expand into memory further on)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._deepest = 0
        self._nodes = 0
        self._anchor_shapes: dict[str, tuple[int, int]] = {}  # anchor -> (nodes, levels) it stands for

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            nodes, levels = self._anchor_shapes.get(event.anchor or "", (1, 0))
            self._grow(nodes, self._depth + levels, event.start_mark)
            return super().compose_node(parent, index)
        outer_deepest, start = self._deepest, self._nodes
        self._depth += 1
        self._grow(1, self._depth, event.start_mark)
        self._deepest = self._depth
        node = super().compose_node(parent, index)
        if event.anchor:
            self._anchor_shapes[event.anchor] = (self._nodes - start, self._deepest - self._depth + 1)
        self._depth -= 1
        self._deepest = max(outer_deepest, self._deepest)
        return node

    def _grow(self, nodes: int, depth: int, mark: Any) -> None:
        self._nodes += nodes
        self._deepest = max(self._deepest, depth)
        if depth > MAX_DEPTH:
            raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
        if self._nodes > MAX_NODES:
            problem = f"more than {MAX_NODES:,} values with aliases expanded (alias bomb?)"
            raise yaml.composer.ComposerError(None, None, problem, mark)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # PyYAML lets ValueError, KeyError, AttributeError... escape from its constructors
            kind = node.tag.rpartition(":")[2]
            problem = f"cannot read {show(node.value)} as a {kind} (quote it if it is text)"
            raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from exc


MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG:  # '<<: *defaults': construct_mapping merges it; explicit keys win
            continue
        key = loader.construct_object(key_node, deep=deep)
        try:
            duplicate = key in seen
        except TypeError:  # a list or mapping used as a key
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be a string, got {describe(key)}", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key '{show(key)}'", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str, source: str, *, max_chars: int, error: type[ConfigError] | None = None) -> Any:
    """The YAML document in ``text`` as plain Python data; any problem is a one-line ``error`` naming ``source``."""
    error_type = error or ConfigError
    if len(text) > max_chars:
        raise error_type(source, [f"larger than the limit of {max_chars // (1024 * 1024)} MiB"])
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None)
        if isinstance(exc, yaml.reader.ReaderError):  # a character YAML does not allow anywhere, e.g. NUL
            line = text.count("\n", 0, exc.position) + 1
            column = exc.position - text.rfind("\n", 0, exc.position)
            char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else repr(exc.character)
            problem = f"the character {char} is not allowed in YAML (binary data?)"
            raise error_type(source, [f"line {line}, column {column}: invalid YAML: {problem}"]) from None
        if (secret_key := _secret_key_at(text, mark)) is not None:
            problem = f"the value of '{secret_key}' is not valid YAML as written (not shown); put it in single quotes"
        raise error_type(source, [f"{_where(mark)}invalid YAML: {problem or exc}"]) from None
    except RecursionError:  # the loader stops at MAX_DEPTH first; never a traceback all the same
        raise error_type(source, [f"invalid YAML: nested more than {MAX_DEPTH} levels deep"]) from None


def _secret_key_at(text: str, mark: Any) -> str | None:
    """The credential key ('password', 'token') on the line a YAML error points at, if there is one."""
    if mark is None:
        return None
    lines = text.splitlines()
    line = lines[mark.line] if 0 <= mark.line < len(lines) else ""
    found = SECRET_LINE_RE.search(line)
    return found.group(1) if found else None


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def read_bounded(file_path: Path, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes of a file. Opened without blocking and refused if it is a named pipe: a FIFO
    with no writer would otherwise hang the start-up, or a reload while it holds the reload lock."""
    fd = os.open(file_path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        if stat.S_ISFIFO(os.fstat(f.fileno()).st_mode):
            raise OSError(errno.EINVAL, "is a named pipe, not a file")
        return f.read(max_bytes + 1)


def read_text_file(
    file_path: Path, source: str, *, max_bytes: int, what: str, error: type[ConfigError] | None = None
) -> str:
    """A UTF-8 text file of at most ``max_bytes``; a directory, a device, binary data... is an ``error``."""
    error_type = error or ConfigError
    if file_path.is_dir():
        raise error_type(source, [f"is a directory, not a {what}"])
    try:
        data = read_bounded(file_path, max_bytes)
    except OSError as exc:
        raise error_type(source, [f"cannot read {what}: {exc.strerror or exc}"]) from None
    if len(data) > max_bytes:
        raise error_type(source, [f"{what} is larger than the limit of {max_bytes // (1024 * 1024)} MiB"])
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise error_type(source, [f"{what} is not UTF-8 text (byte {exc.start} is {data[exc.start]:#04x})"]) from None


__all__ = ["MAX_DEPTH", "MAX_NODES", "load_yaml", "read_bounded", "read_text_file"]
