"""``--format html``: a statement a person prints or saves as PDF.

Self-contained (no script, no external resource: the styles are inline and the chart is inline SVG), A4 print
styles that repeat the table header on every page and never cut a row. It shows the period and zone, the chargers
with their labels and the meter at the period's bounds (what a reimbursement form asks for), a chart of kWh per day
(per month for periods over two months), the sessions, the totals and cost, the flags in words, and the server it
was read from.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from exporter.report.outfile import ReportInfo

Row = dict[str, Any]
SECONDS = "%Y-%m-%d %H:%M:%S"
STYLE = """
@page { size: A4; margin: 14mm 12mm 16mm 12mm; }
body { font: 10pt/1.35 "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #111; margin: 0 auto;
       max-width: 190mm; }
h1 { font-size: 16pt; margin: 0 0 2mm; } h2 { font-size: 12pt; margin: 6mm 0 2mm; break-after: avoid; }
table { border-collapse: collapse; width: 100%; margin-bottom: 3mm; font-size: 8.5pt; }
th, td { padding: 0.8mm 1.2mm; border-bottom: 0.2mm solid #bbb; text-align: left; vertical-align: top; }
th { border-bottom: 0.4mm solid #111; font-weight: bold; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.t { white-space: nowrap; } td.f { overflow-wrap: break-word; font-size: 7.5pt; }
@media print { body { max-width: none; } }
tr { break-inside: avoid; } thead { display: table-header-group; } tfoot { display: table-row-group; }
tfoot td { font-weight: bold; border-top: 0.4mm solid #111; border-bottom: none; }
dl.meta { display: grid; grid-template-columns: 32mm 1fr; gap: 0.5mm 3mm; margin: 0 0 3mm; }
dl.meta dt { font-weight: bold; } dl.meta dd { margin: 0; overflow-wrap: anywhere; }
figure { margin: 0 0 3mm; break-inside: avoid; } svg text { font: 7pt "DejaVu Sans", Arial, sans-serif; }
.note { color: #444; font-size: 8.5pt; }
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def kwh(value: Any) -> str:
    return "" if value is None or value == "" else f"{float(value):,.3f}"


def money(value: Any, currency: str | None) -> str:
    if value is None or value == "":
        return ""
    return f"{Decimal(str(value)):,.2f} {currency or ''}".rstrip()


def when(value: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """An RFC 3339 row value as people read it: local date and time (the zone is named once, at the top)."""
    if not isinstance(value, str) or not value:
        return ""
    try:
        return datetime.fromisoformat(value).strftime(fmt)
    except ValueError:
        return value


def render_statement(
    info: ReportInfo,
    sessions: Sequence[Row],
    summary: Sequence[Row],
    labels: Sequence[str],
) -> str:
    """The statement for ``sessions`` (rows of the sessions view) and ``summary`` (per charger); ``labels`` are the
    charger's label columns besides ``charger`` (such as ``site``)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>Charging statement {_e(info.period)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Charging statement {_e(info.period)}</h1>",
        '<dl class="meta">',
        f"<dt>Period</dt><dd>{_e(_local(info, info.start))} to {_e(_local(info, info.end))} (end exclusive)</dd>",
        f"<dt>Time zone</dt><dd>{_e(info.zone_name)}: every time in this statement is local time there</dd>",
        f"<dt>Read from</dt><dd>{_e(info.server)} ({_e(info.source)})</dd>",
        f"<dt>Chargers</dt><dd>{_e(' '.join(info.matchers) or 'all')}</dd>",
        f"<dt>Pricing</dt><dd>{_e(info.pricing)}</dd>",
        f"<dt>Generated</dt><dd>{_e(_local(info, info.generated))}</dd>",
        "</dl>",
    ]
    parts += _chargers(info, summary, labels)
    parts += _chart(info, sessions)
    parts += _sessions(info, sessions)
    parts += _flags(info)
    parts.append(f'<p class="note">pulsatrix-exporter report · {_e(info.server)}</p>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _local(info: ReportInfo, t: float) -> str:
    return info.local(t).strftime("%Y-%m-%d %H:%M")


def _chargers(info: ReportInfo, summary: Sequence[Row], labels: Sequence[str]) -> list[str]:
    priced = any("cost" in row for row in summary)
    head = ["charger", *labels, "meter at start (kWh)", "meter at end (kWh)", "energy (kWh)", "sessions"]
    head += ["cost", "avg. price"] if priced else []
    out = ["<h2>Chargers and meter readings</h2>", "<table><thead><tr>"]
    out += [f'<th class="{"n" if i > len(labels) else ""}">{_e(h)}</th>' for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for row in summary:
        # a reading's own time, to the second (a form asks when the meter was read)
        start_time = when(row.get("meter_start_time"), SECONDS) or _local(info, info.start)
        end_time = when(row.get("meter_end_time"), SECONDS) or _local(info, info.end)
        cells = [f"<td>{_e(row.get('charger'))}</td>", *(f"<td>{_e(row.get(label))}</td>" for label in labels)]
        cells += [
            f'<td class="n">{kwh(row.get("meter_start_kwh"))}<br><span class="note">{_e(start_time)}</span></td>',
            f'<td class="n">{kwh(row.get("meter_end_kwh"))}<br><span class="note">{_e(end_time)}</span></td>',
            f'<td class="n">{kwh(row.get("energy_kwh"))}</td>',
            f'<td class="n">{_e(row.get("sessions"))}</td>',
        ]
        if priced:
            cells.append(f'<td class="n">{money(row.get("cost"), info.currency)}</td>')
            avg = row.get("avg_price")
            per = f"{avg} {info.currency or ''}/kWh" if avg is not None else ""
            cells.append(f'<td class="n">{_e(per)}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    energy = sum(float(r["energy_kwh"]) for r in summary if r.get("energy_kwh") is not None)
    n = sum(int(r.get("sessions") or 0) for r in summary)
    foot = [f'<td colspan="{len(labels) + 3}">Total</td>', f'<td class="n">{kwh(energy)}</td>']
    foot.append(f'<td class="n">{n}</td>')
    if priced:
        costs = [r.get("cost") for r in summary]
        total = sum((Decimal(str(c)) for c in costs if c is not None), Decimal("0.00"))
        partial = " *" if any(c is None for c in costs) else ""
        shown = money(total, info.currency) + partial if any(c is not None for c in costs) else ""
        foot += [f'<td class="n">{shown}</td>', "<td></td>"]
    out += ["</tbody><tfoot><tr>", *foot, "</tr></tfoot></table>"]
    out.append(
        '<p class="note">The meter at a bound is its last scrape at or before it (the time under each reading). '
        "Energy is the meter's rise within the period.</p>"
    )
    return out


def _chart(info: ReportInfo, sessions: Sequence[Row]) -> list[str]:
    """kWh per local day (per month for periods over 62 days) of the sessions started then, as inline SVG."""
    first = info.local(info.start).date()
    last = info.local(info.end - 1).date()
    monthly = (last - first).days > 62
    buckets: list[date] = []
    d = first.replace(day=1) if monthly else first
    while d <= last:
        buckets.append(d)
        d = (d.replace(day=28) + timedelta(days=4)).replace(day=1) if monthly else d + timedelta(days=1)
    energy: dict[date, float] = defaultdict(float)
    for row in sessions:
        start = row.get("start")
        if isinstance(start, str) and row.get("energy_kwh") is not None:
            day = datetime.fromisoformat(start).date()
            energy[day.replace(day=1) if monthly else day] += float(row["energy_kwh"])
    width, height, left, bottom, top = 680.0, 196.0, 44.0, 22.0, 16.0
    peak = max([energy[b] for b in buckets] + [1.0])
    scale = _nice(peak)
    slot = (width - left - 4) / max(len(buckets), 1)
    plot = height - bottom - top
    unit = "month" if monthly else "day"
    svg = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" width="100%" '
        f'role="img" aria-label="kWh per {unit}">'
    ]
    for k in range(5):
        y = top + plot - plot * k / 4
        svg.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - 4}" y2="{y:.1f}" stroke="#ddd" stroke-width="0.5"/>')
        svg.append(f'<text x="{left - 4}" y="{y + 2.5:.1f}" text-anchor="end">{scale * k / 4:g}</text>')
    every = max(1, round(len(buckets) / 16))
    for i, b in enumerate(buckets):
        value = energy.get(b, 0.0)
        h = plot * value / scale
        x = left + i * slot
        svg.append(
            f'<rect x="{x + slot * 0.15:.1f}" y="{top + plot - h:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
            f'fill="#2b6cb0"><title>{b.isoformat()}: {value:.3f} kWh</title></rect>'
        )
        if i % every == 0:
            label = b.strftime("%Y-%m") if monthly else b.strftime("%d.%m.")
            svg.append(f'<text x="{x + slot / 2:.1f}" y="{height - 8}" text-anchor="middle">{label}</text>')
    svg.append(f'<text x="{left - 4}" y="{top - 8}" text-anchor="end">kWh</text></svg>')
    return [f"<h2>Energy per {unit}</h2>", "<figure>", *svg, "</figure>"]


def _nice(peak: float) -> float:
    """The axis' top: 1, 2, 2.5 or 5 times a power of ten, at or above the peak."""
    magnitude = 10 ** len(str(int(peak))) / 10 if peak >= 1 else 1.0
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if peak <= step * magnitude:
            return step * magnitude
    return 10 * magnitude


def _sessions(info: ReportInfo, sessions: Sequence[Row]) -> list[str]:
    priced = any("cost" in row for row in sessions)
    head = ["charger", "start", "end", "energy (kWh)", "meter start", "meter stop", "status"]
    head += ["cost", "flags"] if priced else ["flags"]
    numeric = {"energy (kWh)", "meter start", "meter stop", "cost"}
    out = ["<h2>Sessions</h2>", "<table><thead><tr>"]
    out += [f'<th class="{"n" if h in numeric else ""}">{_e(h)}</th>' for h in head]
    out.append("</tr></thead><tbody>")
    for row in sessions:
        cells = [
            f"<td>{_e(row.get('charger'))}</td>",
            f'<td class="t">{_e(when(row.get("start")))}</td>',
            f'<td class="t">{_e(when(row.get("end")))}</td>',
            f'<td class="n">{kwh(row.get("energy_kwh"))}</td>',
            f'<td class="n">{kwh(row.get("meter_start_kwh"))}</td>',
            f'<td class="n">{kwh(row.get("meter_stop_kwh"))}</td>',
            f"<td>{_e(row.get('status'))}</td>",
        ]
        if priced:
            cells.append(f'<td class="n">{money(row.get("cost"), info.currency)}</td>')
        cells.append(f'<td class="f">{_e(row.get("flags"))}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    energy = sum(float(r["energy_kwh"]) for r in sessions if r.get("energy_kwh") is not None)
    foot = [f'<td colspan="3">Total: {len(sessions)} sessions</td>', f'<td class="n">{kwh(energy)}</td>']
    foot.append('<td colspan="3"></td>')
    if priced:
        total = sum((Decimal(str(r["cost"])) for r in sessions if r.get("cost") is not None), Decimal("0.00"))
        foot.append(f'<td class="n">{money(total, info.currency)}</td>')
    foot.append("<td></td>")
    out += ["</tbody><tfoot><tr>", *foot, "</tr></tfoot></table>"]
    if not sessions:
        out.append('<p class="note">No session started in this period.</p>')
    return out


def _flags(info: ReportInfo) -> list[str]:
    out = ["<h2>Flags</h2>"]
    lines = info.flag_lines()
    if not lines:
        return [*out, "<p>No row carries a flag: every figure was read, none was guessed.</p>"]
    out.append("<dl>")
    out += [f"<dt><b>{_e(flag)}</b></dt><dd>{_e(text)}</dd>" for flag, text in lines]
    out.append("</dl>")
    out.append('<p class="note">A row with a flag may lack energy or cost; a total marked * leaves those out.</p>')
    return out
