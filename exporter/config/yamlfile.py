"""Reading a config file and its YAML, hardened: what a wrong file (a log, ``/dev/zero``, a FIFO, an alias bomb,
generated garbage, a duplicated key) does is one clear, one-line error, never a hang, a traceback, an exhausted
memory or a silently kept last value. A YAML error never quotes a line that holds a credential.

Used for the config file (:mod:`exporter.config`), the secret files it names and ``--web.config.file``
(:mod:`exporter.config.web`); ``error`` picks the :class:`~exporter.config.errors.ConfigError` subclass to raise.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import yaml

from exporter.config.errors import ConfigError, describe, show

# A real config is far inside these: 10,000 chargers with auth and labels take 5 levels of nesting and 150,000 YAML
# nodes.
MAX_DEPTH = 32
MAX_NODES = 1_000_000
# A line that holds a credential inline: a YAML error there must not quote the line (PyYAML quotes an undefined
# alias, an unknown tag or an unreadable value, e.g. a password that starts with '*' or '!').
SECRET_LINE_RE = re.compile(r"(?:^|[\s{,])[\"']?(password|token)[\"']?\s*:")
# What libyaml reads otherwise than PyYAML (found by tests/test_config_fast_yaml.py and random texts comparing the
# two): it accepts a tab where PyYAML refuses one (``a:<TAB>b``), a comment right after a block scalar's indicator
# (``|#``) and a '?' PyYAML refuses in a flow collection (``[b?,~]``), and reads a byte order mark inside the text,
# the Unicode line breaks (NEL, U+2028, U+2029) and a bare ``!`` tag differently. A text with one of these is read
# by the pure loader alone, as before: slower, never different. ('!' only where a tag can start, not inside a word
# such as a password; a '?' is rare in a config, whose URLs may not have a query string.)
PURE_ONLY_RE = re.compile(r"[\t\ufeff\x85\u2028\u2029?]|[|>][-+0-9]*#|(?:^|[\s,\[\]{}:-])!")


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
        return _construct_checked(super().construct_object, node, deep)


def _construct_checked(construct: Callable[..., Any], node: yaml.Node, deep: bool) -> Any:
    try:
        return construct(node, deep=deep)
    except yaml.YAMLError:
        raise
    except Exception as exc:  # PyYAML lets ValueError, KeyError, AttributeError... escape from its constructors
        kind = node.tag.rpartition(":")[2]
        problem = f"cannot read {show(node.value)} as a {kind} (quote it if it is text)"
        raise yaml.constructor.ConstructorError(None, None, problem, node.start_mark) from exc


MERGE_TAG = "tag:yaml.org,2002:merge"


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
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


class _FastLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's scanner, parser and composer (C; the pure-Python ones make a load several times slower:
    docs/benchmark/config_load.md)
    with the same duplicate-key check as :class:`_UniqueKeyLoader`; the depth and node limits are checked on the
    composed tree by :func:`_fits`. No wrapper around construct_object (280,000 calls for 10,000 chargers): a value
    that does not convert raises, and the pure loader words it."""


_FastLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
# Without libyaml (a PyYAML built without it) the pure loader does all the work, as it did before.
_FAST = bool(getattr(yaml, "__with_libyaml__", False)) and hasattr(yaml, "CSafeLoader")


def _load(text: str) -> Any:
    """The document in ``text``. libyaml reads it when it can; a text it refuses, or whose tree is past a limit, is
    read again by the pure loader, which says what is wrong exactly as it always has (positions, wording, the
    secret-safe wording). So errors cost a second read; a good file is read once, in C. Where libyaml and PyYAML
    disagree (:data:`PURE_ONLY_RE`), the pure loader alone reads the text, as before."""
    with _collector_paused():
        return _load_paused(text)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The garbage collector off while a file is read: the tree and the data are ~500,000 new objects for 10,000
    chargers and none of them is garbage yet, but the young-generation collections they set off took half of the
    load (1.2 of 2.5 s CPU measured). Process-wide and for that second only; cycles made meanwhile wait for the
    next collection."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load_paused(text: str) -> Any:
    if _FAST and PURE_ONLY_RE.search(text) is None:
        loader = _FastLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            if _fits(node):
                try:
                    return _build(loader, node, set())
                except _Irregular:
                    return loader.construct_document(node)
        except Exception:  # noqa: S110 - any refusal is the pure loader's to word (and it raises the same kinds)
            pass
        finally:
            loader.dispose()
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


STR_TAG = "tag:yaml.org,2002:str"
MAP_TAG = yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG
SEQ_TAG = yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG
SCALAR_TAGS = frozenset({STR_TAG, *(f"tag:yaml.org,2002:{kind}" for kind in ("int", "float", "bool", "null"))})


class _Irregular(Exception):
    """A tree :func:`_build` leaves to PyYAML's constructor: an alias, a merge key, another tag, a duplicate key."""


def _build(loader: yaml.BaseLoader, node: yaml.Node, seen: set[int]) -> Any:
    """The data of a composed tree of plain mappings, sequences and scalars, built directly: PyYAML's constructor
    (a generator per mapping, a memo and a constructor look-up per node) took 0.4 of 1.3 s CPU for 10,000 chargers,
    this a third of that. Anything else raises :class:`_Irregular` and the constructor builds the whole tree, so
    that every value and every error is what it has always been. Numbers, booleans and nulls are still converted
    by PyYAML (``0x1f``, ``1_000``, ``.inf``, ``yes``)."""
    if id(node) in seen:  # an alias: the constructor shares the object between its places
        raise _Irregular
    seen.add(id(node))
    kind, tag = type(node), node.tag
    if kind is yaml.ScalarNode:
        if tag == STR_TAG:
            return node.value
        if tag in SCALAR_TAGS:
            return loader.construct_object(node)
        raise _Irregular
    if kind is yaml.MappingNode and tag == MAP_TAG:
        data: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if type(key_node) is not yaml.ScalarNode or key_node.tag not in SCALAR_TAGS:  # merge key, a list as key
                raise _Irregular
            key = _build(loader, key_node, seen)
            if key in data:  # the constructor words the duplicate
                raise _Irregular
            data[key] = _build(loader, value_node, seen)
        return data
    if kind is yaml.SequenceNode and tag == SEQ_TAG:
        return [_build(loader, item, seen) for item in node.value]
    raise _Irregular


def _fits(root: yaml.Node) -> bool:
    """Whether the tree is within MAX_DEPTH levels and MAX_NODES nodes with aliases expanded, counted as
    :class:`_UniqueKeyLoader` counts them, and has no alias inside its own anchor. An alias is its anchor's node
    itself in the composed tree, so each collection's shape is computed once (linear in the text, not in the
    expansion), and the recursion stops at MAX_DEPTH levels."""
    shape = _shape(root, 1, {}, set())
    return shape is not None and shape[0] <= MAX_NODES and shape[1] <= MAX_DEPTH


def _shape(
    node: yaml.Node, depth: int, known: dict[int, tuple[int, int]], on_path: set[int]
) -> tuple[int, int] | None:
    """(nodes, levels) of ``node`` with aliases expanded; None past a limit or for a recursive alias."""
    if type(node) is yaml.ScalarNode:
        return 1, 1
    key = id(node)
    if (shape := known.get(key)) is not None:
        return shape
    if depth >= MAX_DEPTH or key in on_path:  # >=: its children would be deeper than the limit
        return None
    on_path.add(key)
    children = [part for pair in node.value for part in pair] if type(node) is yaml.MappingNode else node.value
    nodes, levels = 1, 1
    for child in children:
        if type(child) is yaml.ScalarNode:  # most nodes: no call for them (a third of the time of the check)
            nodes, levels = nodes + 1, max(levels, 2)
            continue
        sub = _shape(child, depth + 1, known, on_path)
        if sub is None:
            return None
        nodes, levels = nodes + sub[0], max(levels, sub[1] + 1)
        if nodes > MAX_NODES:
            return None
    on_path.discard(key)
    known[key] = nodes, levels
    return nodes, levels


def load_yaml(text: str, source: str, *, max_chars: int, error: type[ConfigError] | None = None) -> Any:
    """The YAML document in ``text`` as plain Python data; any problem is a one-line ``error`` naming ``source``."""
    error_type = error or ConfigError
    if len(text) > max_chars:
        raise error_type(source, [f"larger than the limit of {max_chars // (1024 * 1024)} MiB"])
    try:
        return _load(text)
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
    with no writer would otherwise hang the start-up, or a reload while it holds the reload lock.

    A file that changed while it was read (its size, modification time or inode differ before and after, or an
    immediate second read differs) is read again, READ_ATTEMPTS times at most: a config written in place while
    SIGHUP reloads it would otherwise be applied half-written (a race test applied 44-195 of 200 chargers)."""
    for _ in range(READ_ATTEMPTS):
        data, before, after = _read_once(file_path, max_bytes)
        if not stat.S_ISREG(before.st_mode):  # a device (/dev/zero, /dev/urandom) is what it is; no writer to wait for
            return data
        if _same(before, after) and _same(after, os.stat(file_path)) and _read_once(file_path, max_bytes)[0] == data:
            return data
    raise OSError(
        errno.EAGAIN,
        f"it changed while it was read, {READ_ATTEMPTS} times in a row; write it atomically "
        "(a complete file renamed into place)",
    )


READ_ATTEMPTS = 5


def _read_once(file_path: Path, max_bytes: int) -> tuple[bytes, os.stat_result, os.stat_result]:
    """The bytes, and the file's status before and after reading them."""
    fd = os.open(file_path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as f:
        before = os.fstat(f.fileno())
        if stat.S_ISFIFO(before.st_mode):
            raise OSError(errno.EINVAL, "is a named pipe, not a file")
        data = f.read(max_bytes + 1)
        return data, before, os.fstat(f.fileno())


def _same(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns, a.st_ctime_ns) == (
        b.st_dev,
        b.st_ino,
        b.st_size,
        b.st_mtime_ns,
        b.st_ctime_ns,
    )


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
