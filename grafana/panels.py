"""A small panel library for the classic Grafana dashboard JSON model (schema 39).

Each constructor returns a :class:`Panel` with the defaults of this project written once (legend, tooltip, line
style, reduce options …); :class:`Dashboard` lays panels out left to right in rows of 24 columns. Tables are in
:mod:`grafana.tables`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

Json = dict[str, Any]

SCHEMA_VERSION: Final = 39
DATASOURCE: Final[Json] = {"type": "prometheus", "uid": "${datasource}"}
TAGS: Final = ["pulsatrix", "ev-charging"]

# --- field config ------------------------------------------------------------------------------------------------


def steps(*pairs: tuple[str, float | None]) -> Json:
    """Absolute thresholds: (colour, from value), the first from None (−∞)."""
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for color, value in pairs]}


GREEN: Final = steps(("green", None))
DASHED: Final[Json] = {"fill": "dash", "dash": [10, 10]}


def value_map(*texts: tuple[str, str | None]) -> list[Json]:
    """Value mappings 0, 1, … → (text, colour); a colour of None keeps the field's own colour."""
    options = {}
    for index, (text, color) in enumerate(texts):
        options[str(index)] = {"text": text, **({"color": color} if color else {}), "index": index}
    return [{"type": "value", "options": options}]


def yes_no(one: str, zero: str, one_color: str = "green", zero_color: str = "text") -> list[Json]:
    return value_map((zero, zero_color), (one, one_color))


UP_DOWN: Final = value_map(("DOWN", "red"), ("UP", "green"))


def regex_map(*patterns: tuple[str, str]) -> list[Json]:
    """Regex mappings: a text matching the pattern gets the colour."""
    return [
        {"type": "regex", "options": {"pattern": pattern, "result": {"color": color, "index": index}}}
        for index, (pattern, color) in enumerate(patterns)
    ]


def override(name: str, **props: Any) -> Json:
    """Field properties for the field named ``name`` (``custom__x`` is the property ``custom.x``)."""
    return by_props({"id": "byName", "options": name}, props)


def regex_override(pattern: str, **props: Any) -> Json:
    """Field properties for the fields whose name matches ``pattern``."""
    return by_props({"id": "byRegexp", "options": pattern}, props)


def by_props(matcher: Json, props: dict[str, Any]) -> Json:
    return {"matcher": matcher, "properties": [{"id": key.replace("__", "."), "value": v} for key, v in props.items()]}


def regex_color(pattern: str, color: str) -> Json:
    return regex_override(pattern, color={"mode": "fixed", "fixedColor": color})


def fixed(color: str) -> Json:
    return {"mode": "fixed", "fixedColor": color}


# --- queries -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One PromQL target; ``legend`` names its series (``{{label}}``)."""

    expr: str
    legend: str = ""
    instant: bool = False
    interval: str = ""  # the query's own step (1d: one point per calendar day)


def instant(expr: str, legend: str = "") -> Query:
    return Query(expr, legend, instant=True)


def target(query: Query, ref: str, table: bool) -> Json:
    out: Json = {
        "datasource": DATASOURCE,
        "refId": ref,
        "expr": query.expr,
        "legendFormat": query.legend or "__auto",
        "range": not query.instant,
        "instant": query.instant,
        "format": "table" if table else "time_series",
    }
    if query.interval:
        out["interval"] = query.interval
    return out


def _letters(queries: Sequence[Query]) -> list[Json]:
    return [target(query, chr(ord("A") + i), table=False) for i, query in enumerate(queries)]


# --- panels ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Panel:
    """A panel before layout: everything but its id and position."""

    type: str
    title: str
    description: str
    unit: str
    targets: list[Json]
    w: int
    h: int
    color: Json
    thresholds: Json = field(default_factory=lambda: GREEN)
    mappings: list[Json] = field(default_factory=list)
    extra: Json = field(default_factory=dict)  # decimals, min, max, noValue
    custom: Json | None = None
    options: Json = field(default_factory=dict)
    overrides: list[Json] = field(default_factory=list)
    transformations: list[Json] = field(default_factory=list)
    time_from: str = ""  # this panel's own time range, whatever the dashboard's

    def to_json(self, panel_id: int, x: int, y: int) -> Json:
        defaults: Json = {
            "unit": self.unit,
            "color": self.color,
            "thresholds": self.thresholds,
            "mappings": self.mappings,
            **self.extra,
        }
        if self.custom is not None:
            defaults["custom"] = self.custom
        panel: Json = {
            "id": panel_id,
            "type": self.type,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"h": self.h, "w": self.w, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "options": self.options,
            "targets": self.targets,
        }
        if self.time_from:
            panel["timeFrom"] = self.time_from
        if self.transformations:
            panel["transformations"] = self.transformations
        return panel


def extras(decimals: int | None = None, min: float | None = None, max: float | None = None, no_value: str = "") -> Json:
    """The optional field defaults, in the order Grafana writes them."""
    out: Json = {}
    if decimals is not None:
        out["decimals"] = decimals
    if min is not None:
        out["min"] = min
    if max is not None:
        out["max"] = max
    if no_value:
        out["noValue"] = no_value
    return out


LEGEND_TABLE: Final[Json] = {"displayMode": "table", "placement": "right", "showLegend": True, "calcs": ["lastNotNull"]}
LEGEND_LIST: Final[Json] = {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []}
TOOLTIP: Final[Json] = {"mode": "multi", "sort": "desc"}
REDUCE_LAST: Final[Json] = {"calcs": ["lastNotNull"], "fields": "", "values": False}
HIDE_FROM: Final[Json] = {"legend": False, "tooltip": False, "viz": False}


def line_style(
    fill: int = 10, bars: bool = False, stack: bool = False, thresholds: str = "off", bar_alignment: int = 0
) -> Json:
    """The ``custom`` field config of a time series: lines (or bars) without points."""
    return {
        "drawStyle": "bars" if bars else "line",
        "lineInterpolation": "linear",
        "lineWidth": 1,
        "fillOpacity": 80 if bars else fill,
        "gradientMode": "none",
        "showPoints": "never",
        "pointSize": 4,
        "spanNulls": False,
        "axisPlacement": "auto",
        "axisLabel": "",
        "axisCenteredZero": False,
        "barAlignment": bar_alignment,  # -1: bar ends at its timestamp, 0: centred, 1: starts there
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        "thresholdsStyle": {"mode": thresholds},
        "hideFrom": HIDE_FROM,
        **({"axisSoftMin": 0} if stack or bars else {}),
    }


def timeseries(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    w: int,
    h: int = 8,
    style: Json | None = None,
    legend: Json = LEGEND_TABLE,
    thresholds: Json = GREEN,
    overrides: Iterable[Json] = (),
    time_from: str = "",
    **field_extras: Any,
) -> Panel:
    """A time series panel; ``style`` is its :func:`line_style` (default: lines filled 10 %)."""
    return Panel(
        "timeseries",
        title,
        description,
        unit,
        _letters(queries),
        w,
        h,
        {"mode": "palette-classic"},
        thresholds=thresholds,
        extra=extras(**field_extras),
        custom=style if style is not None else line_style(),
        options={"legend": legend, "tooltip": TOOLTIP},
        overrides=list(overrides),
        time_from=time_from,
    )


def stat(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    w: int = 4,
    h: int = 4,
    color_mode: str = "value",
    text: str = "auto",
    color: Json | None = None,
    thresholds: Json = GREEN,
    mappings: list[Json] | None = None,
    overrides: Iterable[Json] = (),
    **field_extras: Any,
) -> Panel:
    """A stat panel of the last value of each series, without a sparkline."""
    options = {
        "reduceOptions": REDUCE_LAST,
        "colorMode": color_mode,
        "graphMode": "none",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": text,
        "wideLayout": True,
        "showPercentChange": False,
    }
    return Panel(
        "stat",
        title,
        description,
        unit,
        _letters(queries),
        w,
        h,
        color or {"mode": "thresholds"},
        thresholds=thresholds,
        mappings=mappings or [],
        extra=extras(**field_extras),
        options=options,
        overrides=list(overrides),
    )


def bargauge(
    title: str,
    description: str,
    unit: str,
    queries: Sequence[Query],
    *,
    w: int,
    h: int,
    gradient: bool = False,
    color: Json | None = None,
    thresholds: Json = GREEN,
    time_from: str = "",
    **field_extras: Any,
) -> Panel:
    """Horizontal bars of the last value of each series."""
    options = {
        "reduceOptions": REDUCE_LAST,
        "displayMode": "gradient" if gradient else "basic",
        "orientation": "horizontal",
        "showUnfilled": True,
        "valueMode": "color",
        "namePlacement": "auto",
        "sizing": "auto",
        "minVizHeight": 16,
        "minVizWidth": 8,
        "maxVizHeight": 300,
    }
    return Panel(
        "bargauge",
        title,
        description,
        unit,
        _letters(queries),
        w,
        h,
        color or {"mode": "thresholds"},
        thresholds=thresholds,
        extra=extras(**field_extras),
        options=options,
        time_from=time_from,
    )


def state_timeline(
    title: str,
    description: str,
    queries: Sequence[Query],
    *,
    w: int,
    h: int,
    mappings: list[Json],
    color: Json | None = None,
    overrides: Iterable[Json] = (),
) -> Panel:
    """One row per series, coloured by value (``mappings``), equal values merged."""
    options = {
        "mergeValues": True,
        "showValue": "never",
        "alignValue": "left",
        "rowHeight": 0.8,
        "legend": {"displayMode": "list", "placement": "bottom", "showLegend": False},
        "tooltip": {"mode": "single", "sort": "none"},
    }
    return Panel(
        "state-timeline",
        title,
        description,
        "none",
        _letters(queries),
        w,
        h,
        color or {"mode": "thresholds"},
        mappings=mappings,
        custom={"lineWidth": 0, "fillOpacity": 80, "hideFrom": HIDE_FROM},
        options=options,
        overrides=list(overrides),
    )


# --- layout ------------------------------------------------------------------------------------------------------


@dataclass
class Dashboard:
    """Panels placed left to right, a new line when the next one does not fit in 24 columns."""

    uid: str
    title: str
    description: str
    panels: list[Json] = field(default_factory=list)
    _next_id: int = 1
    _x: int = 0
    _y: int = 0
    _row_height: int = 0
    _into: list[Json] | None = None

    def row(self, title: str, collapsed: bool = False) -> None:
        """A row; the panels added after a collapsed row live inside it (shown when it is opened)."""
        self._newline()
        row: Json = {
            "id": self._id(),
            "type": "row",
            "title": title,
            "collapsed": collapsed,
            "gridPos": {"h": 1, "w": 24, "x": 0, "y": self._y},
            "panels": [],
        }
        self.panels.append(row)
        self._into = row["panels"] if collapsed else self.panels
        self._y += 1

    def add(self, *panels: Panel) -> None:
        for panel in panels:
            if self._x + panel.w > 24:
                self._newline()
            (self.panels if self._into is None else self._into).append(panel.to_json(self._id(), self._x, self._y))
            self._x += panel.w
            self._row_height = max(self._row_height, panel.h)

    def _newline(self) -> None:
        self._y += self._row_height
        self._x = 0
        self._row_height = 0

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id - 1

    def to_json(self, variables: list[Json], links: list[Json]) -> Json:
        return {
            "annotations": {"list": []},
            "description": self.description,
            "editable": True,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "id": None,
            "links": links,
            "liveNow": False,
            "panels": self.panels,
            "refresh": "30s",
            "schemaVersion": SCHEMA_VERSION,
            "tags": TAGS,
            "templating": {"list": variables},
            "time": {"from": "now-6h", "to": "now"},
            "timepicker": {},
            "timezone": "browser",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
            "weekStart": "",
        }
