"""The records that pass between the pipeline's stages, and the vocabulary they share.

config → :mod:`exporter.scrape.poll` (coalescing, min_interval, deadlines) → :mod:`exporter.scrape.fetch`
(:class:`ChargerFetch`: raw bodies or transport errors) → :mod:`exporter.scrape.parse` (:class:`ChargerResult`: values
in the metrics' units, or payload errors) → :mod:`exporter.scrape.families` (one family per metric name) →
:mod:`exporter.scrape.exposition` (the exposition). Nothing here does work; it only names things, so that every stage
can import it without importing another stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final, Generic, TypeVar

from exporter.config import ChargerConfig

ENDPOINTS: Final = ("configuration", "transaction", "charging", "limits")

T = TypeVar("T")


class Reason(StrEnum):
    """Why an endpoint gave no usable reply: the ``reason`` label of the error metrics, in one place."""

    TIMEOUT = "timeout"  # no complete answer before the charger's own timeout ran out
    CONNECT = "connect"  # connection refused or reset, DNS or TLS failure
    HTTP_STATUS = "http_status"  # an HTTP status other than 200 (and other than 401/403)
    UNAUTHORIZED = "unauthorized"  # HTTP 401 or 403: credentials missing, wrong, or the API is switched off
    INVALID_JSON = "invalid_json"  # the body is not JSON (or not UTF-8)
    INVALID_PAYLOAD = "invalid_payload"  # JSON, but not the object the endpoint documents; or an oversized body
    EXPORTER_ERROR = "exporter_error"  # a bug in the exporter, never the charger's fault
    EXPORTER_FDS = "exporter_fds"  # the exporter ran out of file descriptors (EMFILE/ENFILE), not the charger's fault
    THROTTLED = "throttled"  # waited for a max_concurrency polling slot past the deadline: never contacted
    # Cut off by the scrape's budget (Prometheus' scrape timeout) before the charger's own timeout ran out: the
    # exporter's doing (or the scrape config's), never counted against the charger
    SCRAPE_TIMEOUT = "scrape_timeout"


REASONS: Final = tuple(reason.value for reason in Reason)


@dataclass(frozen=True, slots=True)
class EndpointFetch:
    """What fetching one endpoint gave: the body of a 200 reply, or the reason it failed."""

    endpoint: str
    body: bytes | None = None
    reason: Reason | None = None
    detail: str = ""  # safe to show: never contains a credential


@dataclass(frozen=True, slots=True)
class ChargerFetch:
    charger: ChargerConfig
    endpoints: Mapping[str, EndpointFetch]
    duration: float  # seconds from the first request to the last answer (or the deadline)
    taken_at: float = 0.0  # Unix time at which the charger was polled


@dataclass(frozen=True, slots=True)
class Problem:
    """One value that was skipped: the device field it came from and why."""

    field: str
    message: str


@dataclass(frozen=True, slots=True)
class Parsed(Generic[T]):
    values: T
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True, slots=True)
class EndpointResult:
    endpoint: str
    parsed: Parsed[Any] | None = None
    reason: Reason | None = None  # set when the endpoint failed (fetching or parsing)
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.parsed is not None


@dataclass(frozen=True, slots=True)
class ChargerResult:
    charger: ChargerConfig
    endpoints: Mapping[str, EndpointResult]
    duration: float
    taken_at: float = 0.0

    @property
    def up(self) -> bool:
        return all(result.ok for result in self.endpoints.values())

    def values(self, endpoint: str) -> Any:
        """The values parsed from ``endpoint``'s reply, or None when it failed."""
        result = self.endpoints.get(endpoint)
        return result.parsed.values if result is not None and result.parsed is not None else None
