"""The series the report reads and how it tells chargers apart: the vocabulary that the raw-series reader
(:mod:`exporter.report.raw`), the recording rules' reader (:mod:`exporter.report.recorded`) and the identity rules
(:mod:`exporter.report.identity`) share."""

from __future__ import annotations

from exporter.catalogue import (
    ENERGY_IMPORTED,
    SESSION_END,
    SESSION_ENERGY,
    SESSION_INFO,
    SESSION_METER_START,
    SESSION_START,
)

START = SESSION_START
END = SESSION_END
METER_START = SESSION_METER_START
ENERGY = SESSION_ENERGY
INFO = SESSION_INFO
METER = ENERGY_IMPORTED
SESSION_SERIES = (START, END, METER_START, ENERGY, INFO)
INFO_LABELS = ("start_reason", "stop_reason", "allocation_source", "used_phases")
# Labels a Prometheus server adds to every target: they say how a charger was scraped, not which charger it is.
TARGET_LABELS = ("job", "instance")
# The external labels by which an HA pair's replicas tell their copies apart (prometheus-operator's
# `prometheus_replica`, Thanos' and Cortex's `replica`); --replica-label adds more.
REPLICA_LABELS = ("prometheus_replica", "replica")
PARALLEL = 2  # queries in flight at once: enough to overlap one query's transfer with the next one's evaluation

Key = tuple[tuple[str, str], ...]


def key_of(metric: dict[str, str]) -> Key:
    """A series' own labels (without its name and the session's reasons): one replica's copy of one label set."""
    return tuple(sorted((k, v) for k, v in metric.items() if k != "__name__" and k not in INFO_LABELS))
