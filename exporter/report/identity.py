"""Which series are one charger: the ledger's identity rules (docs/energy-reports.md, "Which charger a row is").

A charger is its own labels, never the scrape's: series that differ only in ``job``, ``instance`` or a replica
label (an HA pair's copies) are one charger and their looks are merged, so where one replica missed a scrape the
other fills it. A charger whose labels changed (``site`` changed by a reload) keeps one history: label sets that
carry the same ``charger`` name and show the same session (the same plausible start time: a session *is* its start
on a charger) are one charger. Two chargers that share a name but never a session (two depots' ``garage``, told
apart by an external label) stay two. Pure functions: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from exporter.report.ledger import EPOCH_2010, Obs
from exporter.report.series import REPLICA_LABELS, TARGET_LABELS, Key

NAME = "charger"


def dropped(replica_labels: Sequence[str] = ()) -> frozenset[str]:
    """The labels that say how a series was scraped or stored, not which charger it is."""
    return frozenset((*TARGET_LABELS, *REPLICA_LABELS, *replica_labels))


def charger_labels(key: Key, drop: frozenset[str]) -> Key:
    return tuple((k, v) for k, v in key if k not in drop)


def name_of(labels: Key) -> str:
    return next((v for k, v in labels if k == NAME), "")


@dataclass(frozen=True, slots=True)
class Charger:
    """One charger's history: every label set it carried, the first being the one it carried longest ago."""

    label_sets: tuple[Key, ...]

    @property
    def labels(self) -> Key:
        return self.label_sets[-1]


def group(observations: Mapping[Key, Iterable[Obs]], also: Iterable[Key] = ()) -> list[Charger]:
    """The chargers that label sets (keys of ``observations`` and ``also``) belong to: label sets with the same
    ``charger`` name that show a common session are one charger (union-find over shared session starts)."""
    parent: dict[Key, Key] = {}

    def find(k: Key) -> Key:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    first_seen: dict[Key, float] = {}
    owner: dict[tuple[str, float], Key] = {}
    for labels, obs in observations.items():
        parent.setdefault(labels, labels)
        for ob in obs:
            if labels not in first_seen or ob.t < first_seen[labels]:
                first_seen[labels] = ob.t
            if ob.start is None or ob.start < EPOCH_2010:
                continue
            slot = (name_of(labels), ob.start)
            other = owner.setdefault(slot, labels)
            if other != labels and name_of(labels):
                parent[find(labels)] = find(other)
    for labels in also:
        parent.setdefault(labels, labels)
    members: dict[Key, list[Key]] = {}
    for labels in parent:
        members.setdefault(find(labels), []).append(labels)
    out = []
    for sets in members.values():
        sets.sort(key=lambda k: (first_seen.get(k, float("inf")), k))
        out.append(Charger(tuple(sets)))
    out.sort(key=lambda c: c.labels)
    return out


def segments(observations: Iterable[Obs], start: float, labels_at_start: Key) -> list[tuple[float, Key]]:
    """The charger's labels from ``start`` on: [(from when, labels)], beginning with those it carried at
    ``start`` (the labels of the meter reading there), then one entry at the first look after ``start`` with a
    label set not seen before. A look with labels already left is a look back at older scrapes (the raw
    series' steps look back six minutes), not a change back."""
    out = [(start, labels_at_start)]
    seen = {labels_at_start}
    for ob in sorted(observations, key=lambda o: o.t):
        if ob.t > start and ob.labels not in seen:
            out.append((ob.t, ob.labels))
            seen.add(ob.labels)
    return out
