"""Results for bodies obtained without a network (tests and benchmarks): the fetch step's output, then parsed."""

from __future__ import annotations

from collections.abc import Mapping

from exporter.config import ChargerConfig
from exporter.scrape.parse import parse_charger
from exporter.scrape.results import ENDPOINTS, ChargerFetch, ChargerResult, EndpointFetch, Reason


def result_from_bodies(
    charger: ChargerConfig, bodies: Mapping[str, bytes], duration: float = 0.0, taken_at: float = 0.0
) -> ChargerResult:
    """A ChargerResult as if these bodies had been fetched; an endpoint without a body counts as a timeout."""
    endpoints = {
        ep: EndpointFetch(ep, body=bodies[ep]) if ep in bodies else EndpointFetch(ep, reason=Reason.TIMEOUT)
        for ep in ENDPOINTS
    }
    return parse_charger(ChargerFetch(charger, endpoints, duration=duration, taken_at=taken_at))
