"""Write the exposition of one scrape: Prometheus text 0.0.4 or OpenMetrics 1.0.0, byte for byte what
prometheus_client writes for the same families (``tests/test_render.py`` proves it), several times faster.

The speed comes from the families' shape (:mod:`exporter.metrics`): each sample's label text is already rendered
and sorted, so a sample line is one string join. Any other format or escaping a client asks for is rendered by
prometheus_client itself, from the same families.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final, cast

from prometheus_client import CollectorRegistry, utils
from prometheus_client.exposition import choose_encoder

from exporter.metrics import Family, StaticCollector

TEXT: Final = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS: Final = "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
floatToGoString = cast(Callable[[float], str], utils.floatToGoString)  # the library's number format, as it is


def render_families(families: Sequence[Family], openmetrics: bool) -> str:
    """The lines of these families, without OpenMetrics' closing ``# EOF``."""
    out: list[str] = []
    for family in families:
        spec = family.spec
        if openmetrics:
            name = spec.family
            kind = spec.type
            doc = spec.help.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
        else:
            name = spec.name
            kind = "gauge" if spec.type == "info" else spec.type
            doc = spec.help.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {kind}\n")
        prefix = spec.name + "{"
        out.extend(
            f"{prefix}{labels}}} {floatToGoString(value)}\n" if labels else f"{spec.name} {floatToGoString(value)}\n"
            for labels, value in zip(family.label_texts, family.values, strict=True)
        )
    return "".join(out)


def exposition(families: Sequence[Family], accept: str, extra: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The body and content type for a client that sent this ``Accept`` header."""
    encoder, content_type = choose_encoder(accept)
    if content_type not in (TEXT, OPENMETRICS):  # an escaping or version we do not write ourselves
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StaticCollector(families))
        if extra is not None:
            registry.register(extra)
        return encoder(registry), content_type
    openmetrics = content_type == OPENMETRICS
    text = render_families(families, openmetrics)
    if extra is not None:
        rest = encoder(extra)
        text += rest.decode() if not openmetrics else rest.decode().removesuffix("# EOF\n")
    if openmetrics:
        text += "# EOF\n"
    return text.encode(), content_type
