"""The status page at ``/``: each charger in the dashboards' words, with every failing endpoint's last error.

The words and their rules are the fleet dashboard's (its Status column and tiles, grafana/fleet.py), as far as one
exporter can know them: **Up** (every endpoint answered in the last poll), **Partial** (some endpoints failed, some
answered: the data is partial), **Down** (no endpoint answered) and **Unmonitored** (not polled yet: no reading, so
nothing is known). The dashboards' "Faulted" needs the device's state; the page links to ``/probe`` for that.

Everything a device or the config supplies is HTML-escaped; charger URLs (which may carry a host an operator keeps
private) and credentials are never shown. The page is plain HTML and CSS, no script, and stays readable from a
390 px phone to a desktop: the table scrolls sideways inside its own box instead of crushing its columns, a label
(``site=depot-3``) or a timestamp never breaks inside itself (tests/test_landing_browser.py looks at it in Chromium).
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Final
from urllib.parse import quote

from exporter.config import ChargerConfig
from exporter.scrape.health import ChargerStatus

UP: Final = "Up"
PARTIAL: Final = "Partial"
DOWN: Final = "Down"
UNMONITORED: Final = "Unmonitored"
# Worst first, as the fleet dashboard's Chargers table sorts: the charger that needs a look is at the top.
ORDER: Final = (DOWN, PARTIAL, UNMONITORED, UP)
MEANING: Final = {
    UP: "every endpoint answered",
    PARTIAL: "some endpoints fail",
    DOWN: "no endpoint answers",
    UNMONITORED: "not polled yet",
}
SIMULATED: Final = ("simulated", "true")  # the label --demo puts on every simulated charger, and only it

CSS: Final = """
body{font-family:system-ui,sans-serif;margin:1rem;line-height:1.4;color:#222}
h1{font-size:1.4rem;margin:.2rem 0}
.demo{background:#fff3cd;border:2px solid #b8860b;padding:.5rem .8rem;font-weight:bold;max-width:60rem}
.summary{font-size:1.1rem;font-weight:bold}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:left;vertical-align:top}
.nowrap,time,.label,th{white-space:nowrap}
.label{display:inline-block;background:#eef;border-radius:.3rem;padding:0 .3rem;margin:.1rem 0}
.errors{min-width:18rem}
.errors ul{margin:0;padding-left:1.1rem}
.errors li{overflow-wrap:anywhere}
.Up{color:#080;font-weight:bold}.Partial{color:#b35c00;font-weight:bold}
.Down{color:#b00;font-weight:bold}.Unmonitored{color:#6a3d9a;font-weight:bold}
.muted{color:#666}
"""


def state(status: ChargerStatus) -> str:
    """The charger's word on this page, by the fleet dashboard's rules (see the module's docstring)."""
    if status.up is None:
        return UNMONITORED
    if status.up:
        return UP
    return PARTIAL if status.answered > 0 else DOWN


def rfc3339(ts: float) -> str:
    """UTC, RFC 3339, whole seconds: ``2026-12-02T00:57:03Z``."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(ts: float, now: float) -> str:
    ago = max(0, int(now - ts))
    return f"<time datetime='{rfc3339(ts)}'>{rfc3339(ts)}</time> <span class='nowrap muted'>({ago} s ago)</span>"


def summary(states: Sequence[str]) -> str:
    """``6 chargers: 4 up, 1 partial, 1 down`` (and how many are unmonitored, when any are)."""
    counts = {word: states.count(word) for word in ORDER}
    parts = [f"{counts[word]} {word.lower()}" for word in (UP, PARTIAL, DOWN)]
    if counts[UNMONITORED]:
        parts.append(f"{counts[UNMONITORED]} {UNMONITORED.lower()}")
    return f"{len(states)} charger{'' if len(states) == 1 else 's'}: {', '.join(parts)}"


def _errors(status: ChargerStatus, now: float) -> str:
    if status.failing:
        items = "".join(
            f"<li><b>{html.escape(ep)}</b>: {html.escape(error)}</li>" for ep, error in status.failing.items()
        )
        return f"<ul>{items}</ul>"
    if status.last_error and status.last_error_time is not None:  # answers now; say what failed last, and when
        when = _time(status.last_error_time, now)
        return f"<span class='muted'>last: {html.escape(status.last_error)}, {when}</span>"
    return ""


def _row(charger: ChargerConfig, status: ChargerStatus, word: str, now: float) -> str:
    name = html.escape(charger.name)
    labels = " ".join(f"<span class='label'>{html.escape(f'{k}={v}')}</span>" for k, v in charger.labels)
    polled = _time(status.last_poll, now) if status.last_poll is not None else "<span class='muted'>never</span>"
    return (
        f"<tr><td class='nowrap'><a href='probe?target={html.escape(quote(charger.name))}'>{name}</a></td>"
        f"<td class='{word}' title='{MEANING[word]}'>{word}</td><td>{labels}</td><td>{polled}</td>"
        f"<td class='errors'>{_errors(status, now)}</td></tr>"
    )


def index_page(
    chargers: Sequence[ChargerConfig], statuses: Mapping[str, ChargerStatus], *, version: str, source: str, now: float
) -> str:
    """The whole page: banner (demo mode), summary, when it was rendered, and one row per charger, worst first."""
    rows = [(charger, statuses[charger.name]) for charger in chargers]
    words = [state(status) for _, status in rows]
    order = sorted(range(len(rows)), key=lambda i: ORDER.index(words[i]))  # stable: config order within a word
    demo = any(SIMULATED in charger.labels for charger in chargers)
    banner = (
        "<p class='demo' role='alert'>Demo mode: the chargers on this page are simulated (started in-process by "
        "--demo). Their data is not from real devices.</p>"
        if demo
        else ""
    )
    legend = " · ".join(f"<span class='{w}'>{w}</span>: {MEANING[w]}" for w in (UP, PARTIAL, DOWN, UNMONITORED))
    table_rows = "".join(_row(*rows[i], words[i], now) for i in order)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>pulsatrix exporter</title><style>{CSS}</style></head>
<body><h1>pulsatrix exporter</h1>
{banner}
<p class="summary">{summary(words)}</p>
<p>Rendered <time datetime="{rfc3339(now)}">{rfc3339(now)}</time> · version {html.escape(version)} · config
{html.escape(source)}</p>
<p><a href="metrics">/metrics</a> · <a href="-/metrics">/-/metrics</a> · <a href="sd">/sd</a> ·
<a href="-/healthy">/-/healthy</a> · <a href="-/ready">/-/ready</a></p>
<p class="muted">{legend}</p>
<div class="scroll"><table>
<tr><th>charger (probe)</th><th>status</th><th>labels</th><th>last poll</th><th>errors of the last poll</th></tr>
{table_rows}
</table></div></body></html>
"""
