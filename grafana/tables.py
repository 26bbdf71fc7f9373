"""Table panels. A table of several queries declares its columns as :class:`Column` (title, query, unit …): each
column's query gets a refId derived from the column's title, and the table's transformations and overrides name that
refId, so a column cannot show another column's query whatever order the columns are written in."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from grafana.panels import Json, Panel, Query, extras, instant, override, target


@dataclass(frozen=True)
class Column:
    """A table column and the instant query it shows: its sample value, or with ``label`` that label of its series
    (then the value is hidden, or shown as a second column ``value_title``). ``props`` are the column's field
    properties (unit, decimals, mappings …; ``custom__x`` for ``custom.x``)."""

    title: str
    expr: str
    props: tuple[tuple[str, Any], ...] = ()
    label: str = ""
    value_title: str = ""
    value_props: tuple[tuple[str, Any], ...] = ()

    @property
    def ref(self) -> str:
        """The refId of the column's query, from its title: "Scrape errors (range)" → ``scrape_errors_range``."""
        return re.sub(r"\W+", "_", self.title).strip("_").lower()

    @property
    def value_field(self) -> str:
        """The name Grafana's merge gives the query's value: ``Value #`` and the refId."""
        return f"Value #{self.ref}"

    def fields(self) -> list[tuple[str, str, tuple[tuple[str, Any], ...]]]:
        """(field name, column title, properties) of each column shown."""
        if not self.label:
            return [(self.value_field, self.title, self.props)]
        value = [(self.value_field, self.value_title, self.value_props)] if self.value_title else []
        return [(self.label, self.title, self.props), *value]


def column(title: str, expr: str, **props: Any) -> Column:
    """A column showing the value of ``expr``."""
    return Column(title, expr, tuple(props.items()))


def label_column(
    title: str, label: str, expr: str, *, value_title: str = "", value_props: Json | None = None, **props: Any
) -> Column:
    """A column showing the label ``label`` of the series of ``expr`` (and their value as ``value_title``)."""
    return Column(title, expr, tuple(props.items()), label, value_title, tuple((value_props or {}).items()))


def _table_options(sort_by: str, desc: bool) -> Json:
    return {
        "showHeader": True,
        "cellHeight": "sm",
        "footer": {"show": False, "reducer": ["sum"], "fields": "", "countRows": False},
        "sortBy": [{"displayName": sort_by, "desc": desc}],
    }


def _table_custom(filterable: bool) -> Json:
    return {
        "align": "auto",
        "cellOptions": {"type": "auto"},
        "inspect": False,
        **({"filterable": True} if filterable else {}),
    }


def table(
    title: str,
    description: str,
    keys: dict[str, str],
    columns: Sequence[Column],
    *,
    w: int,
    h: int,
    sort_by: str,
    desc: bool = False,
    filterable: bool = False,
    overrides: Iterable[Json] = (),
) -> Panel:
    """A table of several instant queries merged into one row per series: ``keys`` are the labels the queries
    share (label → column title, shown first), ``columns`` the rest, in order."""
    refs = [c.ref for c in columns]
    if len(set(refs)) != len(refs):
        raise ValueError(f"{title}: two columns with one refId: {refs}")
    shown = [entry for c in columns for entry in c.fields()]
    exclude = {"Time": True, **{c.value_field: True for c in columns if c.label and not c.value_title}}
    fields = [*keys, *(name for name, _, _ in shown)]
    rename = {**keys, **{name: column_title for name, column_title, _ in shown}}
    organize = {"excludeByName": exclude, "indexByName": {f: i for i, f in enumerate(fields)}, "renameByName": rename}
    return Panel(
        "table",
        title,
        description,
        "none",
        [target(Query(c.expr, instant=True), c.ref, table=True) for c in columns],
        w,
        h,
        {"mode": "thresholds"},
        custom=_table_custom(filterable),
        options=_table_options(sort_by, desc),
        overrides=[*overrides, *(override(name, **dict(props)) for _, name, props in shown if props)],
        transformations=[{"id": "merge", "options": {}}, {"id": "organize", "options": organize}],
    )


def label_table(
    title: str,
    description: str,
    expr: str,
    columns: dict[str, str],
    *,
    w: int,
    h: int,
    unit: str = "none",
    value: str = "",
    no_value: str = "",
) -> Panel:
    """A table of one instant query's series: ``columns`` maps label → column title, in order; the sample value is
    shown as column ``value`` (hidden when empty)."""
    order = {label: i for i, label in enumerate(columns)}
    rename = {"charger": "Charger", "site": "Site", **columns}
    exclude = {"Time": True, "__name__": True, "job": True, "instance": True}
    if value:
        order["Value"] = len(order)
        rename["Value"] = value
    else:
        exclude["Value"] = True
    return Panel(
        "table",
        title,
        description,
        unit,
        [target(instant(expr), "A", table=True)],
        w,
        h,
        {"mode": "thresholds"},
        extra=extras(no_value=no_value),
        custom=_table_custom(filterable=False),
        options=_table_options("Charger", desc=False),
        transformations=[
            {"id": "organize", "options": {"excludeByName": exclude, "indexByName": order, "renameByName": rename}}
        ],
    )
