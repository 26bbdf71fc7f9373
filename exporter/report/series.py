"""The series the report reads and how it tells chargers apart: the vocabulary that the raw-series reader
(:mod:`exporter.report.queries`) and the recording rules' reader (:mod:`exporter.report.recorded`) share."""

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
# Labels a Prometheus server adds to every target: they identify a charger's series but are not the charger's own
# labels, so they are not report columns.
TARGET_LABELS = ("job", "instance")
PARALLEL = 2  # queries in flight at once: enough to overlap one query's transfer with the next one's evaluation

Key = tuple[tuple[str, str], ...]


def output_labels(key: Key) -> dict[str, str]:
    return {k: v for k, v in key if k not in TARGET_LABELS}


def key_of(metric: dict[str, str]) -> Key:
    return tuple(sorted((k, v) for k, v in metric.items() if k != "__name__" and k not in INFO_LABELS))
