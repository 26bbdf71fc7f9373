"""Scraping the in-process exporter and reading the exposition back, sample by sample."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.support.fleet import ExporterClient

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float | None:
    """The value of the first sample called ``name`` that has (at least) ``labels``; None if there is none."""
    for (sample_name, sample_labels), value in samples.items():
        if sample_name == name and all((k, v) in sample_labels for k, v in labels.items()):
            return value
    return None


def chargers_in(samples: Samples) -> set[str]:
    return {dict(labels)["charger"] for (_, labels) in samples if "charger" in dict(labels)}


async def scrape(client: ExporterClient, path: str = "/metrics", **headers: str) -> Samples:
    """GET ``path`` with ``headers``; it must answer 200, and its samples are returned."""
    response = await client.get(path, headers=headers)
    assert response.status == 200, await response.text()
    return parse(await response.text())
