"""Write the exposition of one scrape: Prometheus text 0.0.4 or OpenMetrics 1.0.0, byte for byte what
prometheus_client writes for the same families (``tests/test_render.py`` proves it), several times faster.

The speed comes from the families' shape (:mod:`exporter.scrape.families`): each sample's label text is already rendered
and sorted (:mod:`exporter.scrape.labels`), so a sample line is one string join. Any other format or escaping a client
asks for is rendered by prometheus_client itself, from the same families (:func:`to_metric`); so are the process
and platform metrics, which prometheus_client collects.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from math import copysign, inf
from typing import Final, cast

from prometheus_client import CollectorRegistry, utils
from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from exporter.catalogue import MetricSpec
from exporter.scrape.families import Family
from exporter.scrape.labels import parse_text

TEXT: Final = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS: Final = "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
JOIN_PIECES: Final = 2048  # pieces of lines joined and encoded at a time (see exposition())
floatToGoString = cast(Callable[[float], str], utils.floatToGoString)  # the library's number format, as it is


@functools.cache
def _header(spec: MetricSpec, openmetrics: bool) -> str:
    """A family's HELP and TYPE lines: the same in every scrape, so escaped once per spec and format."""
    if openmetrics:
        name = spec.family
        kind = spec.type
        doc = spec.help.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
    else:
        name = spec.name
        kind = "gauge" if spec.type == "info" else spec.type
        doc = spec.help.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {doc}\n# TYPE {name} {kind}\n"


def _number(value: float) -> str:
    """``floatToGoString(value)``, the library's number format, exactly."""
    if value == 1.0:
        return "1.0"
    if value == 0.0 and copysign(1.0, value) > 0:  # -0.0 == 0.0, but it is written "-0.0"
        return "0.0"
    if (
        value.__class__ is float and -inf < value < 1e6
    ):  # Go's format differs from repr only from 1e6 up (and ±Inf, NaN)
        return repr(value)
    return floatToGoString(value)


def _lines(families: Sequence[Family], openmetrics: bool) -> list[str]:
    """The pieces of the exposition's lines, in order, for one join."""
    out: list[str] = []
    append = out.append  # bound once: called ~3 times per sample
    for family in families:
        spec = family.spec
        append(_header(spec, openmetrics))
        name = spec.name
        prefix = name + "{"
        for labels, value in zip(family.label_texts, family.values, strict=True):
            if not labels:
                append(f"{name} {_number(value)}\n")
                continue
            # A sample is pieces of the final join, not a string of its own; 0 and 1 (up, state sets, flags: ~80 % of
            # a charger's samples) end in a constant; other numbers are _number's, inline (a call per sample costs).
            append(prefix)
            append(labels)
            if value == 1.0:
                append("} 1.0\n")
            elif value == 0.0 and copysign(1.0, value) > 0:
                append("} 0.0\n")
            elif value.__class__ is float and -inf < value < 1e6:
                append(f"}} {value!r}\n")
            else:
                append(f"}} {floatToGoString(value)}\n")
    return out


def render_families(families: Sequence[Family], openmetrics: bool) -> str:
    """The lines of these families, without OpenMetrics' closing ``# EOF``."""
    return "".join(_lines(families, openmetrics))


def exposition(families: Sequence[Family], accept: str, extra: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The body and content type for a client that sent this ``Accept`` header: ``families``, then what the
    collectors of ``extra`` (prometheus_client's process and platform metrics) give."""
    encoder, content_type = choose_encoder(accept)
    if content_type not in (TEXT, OPENMETRICS):  # an escaping or version we do not write ourselves
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StaticCollector(families))
        if extra is not None:
            registry.register(extra)
        return encoder(registry), content_type
    openmetrics = content_type == OPENMETRICS
    out = _lines(families, openmetrics)
    # Joined and encoded a slice (~50 KB) at a time, then joined once: the whole text joined, then encoded, took two
    # fresh body-sized buffers (~5 µs more per charger at N = 1000); the slices stay in the CPU's cache.
    parts = ["".join(out[i : i + JOIN_PIECES]).encode() for i in range(0, len(out), JOIN_PIECES)]
    if extra is not None:
        rest = encoder(extra)
        parts.append(rest if not openmetrics else rest.removesuffix(b"# EOF\n"))
    if openmetrics:
        parts.append(b"# EOF\n")
    return b"".join(parts), content_type


def gzip_accepted(accept_encoding: str) -> bool:
    """Whether a client with this ``Accept-Encoding`` takes gzip: tokenised as prometheus_client does (a coding,
    optional parameters after ``;``, case-insensitive), and, as RFC 9110 says, not when its ``q`` is 0."""
    for accepted in accept_encoding.split(","):
        coding, *params = accepted.split(";")
        if coding.strip().lower() != "gzip":
            continue
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    return float(value.strip()) > 0
                except ValueError:  # not a q-value: ignored, as prometheus_client ignores every parameter
                    break
        return True
    return False


def to_metric(family: Family) -> Metric:
    """The same family as prometheus_client's object, for its writer (and as the reference ours is tested against)."""
    spec = family.spec
    metric = Metric(spec.family, spec.help, spec.type)
    for text, value in zip(family.label_texts, family.values, strict=True):
        metric.add_sample(spec.name, parse_text(text), value)
    return metric


class StaticCollector(Collector):
    """Serves families that were built before ``collect()`` is called: no I/O and no work at collect time."""

    def __init__(self, families: Sequence[Family]) -> None:
        self._families = [to_metric(f) for f in families]

    def collect(self) -> Iterable[Metric]:
        return iter(self._families)
