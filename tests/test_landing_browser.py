"""The status page at ``/`` as a person sees it: opened in headless Chromium at 1280 px and at 390 px (a phone).

Six simulated chargers in demo mode, one of them failing on one endpoint only (Partial) and one on all four
(Down). What the page says is read from the rendered text (``innerText``, what is on the screen, not the HTML);
how it is laid out is measured in the page by a small script of this test: a same-origin page holds the status
page in a full-window iframe, and once it has loaded, writes into its own DOM (which ``--dump-dom`` prints) the
rendered text of each table row, how many line boxes each charger name, label (``site=depot-north``), status word
and timestamp occupies (more than one: it was broken across lines), and whether the page is wider than the window.

``UPDATE_SCREENSHOT=1`` also writes docs/landing-page.png, the README's picture of the page.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from exporter.scrape.results import ENDPOINTS
from exporter.serve.app import create_app
from tests.support.browser import open_page
from tests.support.fleet import ClientFactory, MakeFleet
from tests.support.samples import scrape

pytestmark = pytest.mark.e2e

DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "landing-page.png"
LABELS = {
    "garage": {"site": "home"},
    "carport": {"site": "home", "row": "carport-east"},
    "visitor-bay": {"site": "depot-north", "row": "visitors-A-12"},
    "bay-0003": {"site": "depot-north"},
    "bay-0004": {"site": "depot-south"},
    "bay-0005": {"site": "depot-south", "row": "fleet-vans-B"},
}
TIMESTAMP = r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:Z| UTC)"

# Runs in the outer page once the iframe has loaded. A run of text broken across lines has client rects on more
# than one line: their distinct tops are counted. Timestamps are found by pattern, the rest by their exact text.
MEASURE = """
const frame = document.getElementById('page');
function measure() {
  const doc = frame.contentDocument, win = frame.contentWindow;
  const words = JSON.parse(document.getElementById('words').textContent);
  const stamp = new RegExp(document.getElementById('stamp').textContent, 'g');
  const lines = [];
  const walker = doc.createTreeWalker(doc.body, NodeFilter.SHOW_TEXT);
  function count(node, start, text) {
    const range = doc.createRange();
    range.setStart(node, start);
    range.setEnd(node, start + text.length);
    const tops = new Set();
    for (const r of range.getClientRects()) if (r.width > 0) tops.add(Math.round(r.top));
    lines.push([text, tops.size]);
  }
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const text = node.nodeValue;
    for (const word of words) {
      for (let i = text.indexOf(word); i >= 0; i = text.indexOf(word, i + 1)) {
        const before = i === 0 ? ' ' : text[i - 1], after = text[i + word.length] || ' ';
        if (/[\\s,(]/.test(before) && /[\\s,)]/.test(after)) count(node, i, word);
      }
    }
    for (const m of text.matchAll(stamp)) count(node, m.index, m[0]);
  }
  const result = {
    text: doc.body.innerText,
    rows: Array.from(doc.querySelectorAll('tr')).map(tr => tr.innerText),
    lines: lines,
    page_width: doc.documentElement.scrollWidth,
    window_width: win.innerWidth,
  };
  const out = document.createElement('pre');
  out.id = 'result';
  out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
}
frame.addEventListener('load', measure);
"""


def measuring_page(words: list[str]) -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'><style>body{margin:0}"
        "iframe{border:0;width:100vw;height:100vh;display:block}</style></head><body>"
        f"<script type='application/json' id='words'>{json.dumps(words)}</script>"
        f"<script type='text/plain' id='stamp'>{TIMESTAMP}</script>"
        f"<iframe id='page' src='/'></iframe><script>{MEASURE}</script></body></html>"
    )


def row_of(rows: list[str], name: str) -> str:
    matching = [row for row in rows if re.match(rf"{re.escape(name)}\s", row)]
    assert len(matching) == 1, (name, rows)
    return matching[0]


async def view(url: str, width: int) -> dict[str, Any]:
    flags = ("--run-all-compositor-stages-before-draw", "--virtual-time-budget=5000", "--dump-dom")
    dom = await open_page(url, width, *flags)
    found = re.search(r"<pre id=\"result\">(.*?)</pre>", dom, re.S)
    assert found, dom[-2000:]
    result: dict[str, Any] = json.loads(html.unescape(found.group(1)))
    return result


@pytest.mark.parametrize("width", [1280, 390])
async def test_the_status_page_in_a_browser(
    width: int, make_fleet: MakeFleet, aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    fleet = await make_fleet(6)
    fleet.set_fault("carport", "http_500", ("limits",))
    fleet.set_fault("visitor-bay", "http_503", ENDPOINTS)
    config = fleet.config({name: {**labels, "simulated": "true"} for name, labels in LABELS.items()})
    app = create_app(config)
    words = [*LABELS, *(f"{k}={v}" for labels in LABELS.values() for k, v in labels.items()), "simulated=true"]
    words += ["Up", "Partial", "Down"]

    async def measure(_: web.Request) -> web.Response:
        return web.Response(text=measuring_page(words), content_type="text/html")

    app.router.add_get("/-/test-measure", measure)  # the same origin as /, so that its script can look inside
    client = await aiohttp_client(app)
    await scrape(client)
    seen = await view(str(client.make_url("/-/test-measure")), width)

    # What it says.
    text = seen["text"]
    assert "6 chargers: 4 up, 1 partial, 1 down" in text
    assert "Demo mode: the chargers on this page are simulated" in text
    assert re.search(r"Rendered \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)
    rows = seen["rows"]
    assert re.search(r"\sPartial\s", row_of(rows, "carport"))
    assert "limits: http_status: HTTP 500" in row_of(rows, "carport")
    down = row_of(rows, "visitor-bay")
    assert re.search(r"\sDown\s", down)
    assert [endpoint for endpoint in ENDPOINTS if f"{endpoint}: http_status: HTTP 503" in down] == list(ENDPOINTS)
    for name in ("garage", "bay-0003", "bay-0004", "bay-0005"):
        assert re.search(r"\sUp\s", row_of(rows, name))
    assert fleet.base_url not in text

    # How it is laid out: nothing broken across lines, and the page no wider than the window (the table scrolls
    # inside its own box instead).
    lines: list[tuple[str, int]] = [(text, n) for text, n in seen["lines"]]
    assert {text for text, _ in lines} >= set(words), "missing from the page"
    assert [(text, n) for text, n in lines if n != 1] == [], f"broken across lines at {width} px"
    stamps = [text for text, _ in lines if re.fullmatch(TIMESTAMP, text)]
    assert len(stamps) >= 7, lines  # rendered at, and each charger's last poll
    assert seen["page_width"] <= seen["window_width"], f"the page is wider than the window at {width} px"

    shot = tmp_path / "page.png"
    await open_page(str(client.make_url("/")), width, f"--screenshot={shot}", height=700 if width > 400 else 1100)
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    if width == 1280 and os.environ.get("UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(shot, DOCS_SCREENSHOT)
