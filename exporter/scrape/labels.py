"""Label text: the ``name="value",...`` between a sample's braces, written once per charger and label set.

:mod:`exporter.scrape.families` stores each sample's label text already rendered (a string, not a dict), so that a
scrape of thousands of chargers allocates little and :mod:`exporter.scrape.exposition` writes a sample line with one
join. The text is written here, in the sorted order and with the escaping prometheus_client uses, and read back here
(:func:`parse_text`) for the one consumer that needs the pairs again: prometheus_client's own writer, which
renders the escapings and versions :mod:`exporter.scrape.exposition` does not write itself.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Final

from exporter.config import ChargerConfig

MAX_CACHED_TEXTS: Final = 256  # label texts kept per charger: a safety bound, it has about 70 stable series


def escape(value: str) -> str:
    """A label value as the exposition formats write it."""
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


class Labels:
    """One charger's label pairs (``charger`` and its extra labels), rendered once.

    ``text(("phase",), ("L1",))`` is the label text of a sample with more labels, in the sorted order
    prometheus_client writes. Nearly every such text is the same in every scrape (the phases, the endpoints, the
    known values of a state): those (``stable``) are kept, along with the template per set of label names. Texts
    with values the device chooses (info labels, an unknown state) are not kept, so that a device cannot fill the
    cache: only the last one per set of label names is, as a device reports the same names scrape after scrape.
    """

    __slots__ = ("_last", "_sets", "_templates", "_texts", "base", "pairs")

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.pairs = tuple(sorted(pairs))
        self.base = ",".join(f'{k}="{escape(v)}"' for k, v in self.pairs)
        self._templates: dict[tuple[str, ...], str] = {}
        self._texts: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
        self._sets: dict[tuple[str, tuple[str, ...]], tuple[str, ...]] = {}
        self._last: dict[tuple[str, ...], tuple[tuple[str, ...], str]] = {}  # label names -> (values, text)

    def texts(self, name: str, values: tuple[str, ...]) -> tuple[str, ...]:
        """The label texts of a sample per value of one label (a state set's known values, the four endpoints): a
        fixed set the code names, so kept whole and found with one look-up."""
        key = (name, values)
        texts = self._sets.get(key)
        if texts is None:
            texts = self._sets[key] = tuple(self.text((name,), (value,)) for value in values)
        return texts

    def text(self, names: tuple[str, ...], values: tuple[str, ...], stable: bool = True) -> str:
        key = (names, values)
        if stable:
            text = self._texts.get(key)
            if text is not None:
                return text
        else:
            last = self._last.get(names)
            if last is not None and last[0] == values:
                return last[1]
        template = self._templates.get(names)
        if template is None:
            extra = [(name, f'"{{{i}}}"') for i, name in enumerate(names)]
            base = [(k, '"' + escape(v).replace("{", "{{").replace("}", "}}") + '"') for k, v in self.pairs]
            template = ",".join(f"{k}={v}" for k, v in sorted(base + extra))
            self._templates[names] = template
        text = template.format(*[escape(v) for v in values])
        if not stable:
            self._last[names] = (values, text)
        elif len(self._texts) < MAX_CACHED_TEXTS:
            self._texts[key] = text
        return text


NO_LABELS: Final = Labels(())  # the exporter's own metrics


@functools.lru_cache(maxsize=65536)
def charger_labels(charger: ChargerConfig) -> Labels:
    """The labels of a configured charger, kept across scrapes (bounded, so a reloaded config cannot grow it)."""
    return Labels((("charger", charger.name), *charger.labels))


_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')
_UNESCAPE = {"\\\\": "\\", "\\n": "\n", '\\"': '"'}


def parse_text(text: str) -> dict[str, str]:
    """The pairs of a label text written by :class:`Labels` (the inverse of its escaping)."""
    labels = {}
    end = 0
    for match in _LABEL_RE.finditer(text):
        if match.start() != end:
            raise ValueError(f"malformed label text: {text!r}")
        labels[match.group(1)] = re.sub(r"\\.", lambda m: _UNESCAPE.get(m.group(0), m.group(0)), match.group(2))
        end = match.end()
    if end != len(text):
        raise ValueError(f"malformed label text: {text!r}")
    return labels
