"""Generate the Grafana dashboards in ``grafana/dashboards/`` from code.

    python -m grafana.build          # rewrite grafana/dashboards/*.json
    python -m grafana.build --check  # exit 1 if a committed file is out of date

One module per dashboard (:mod:`grafana.fleet`, :mod:`grafana.charger`), built from the panel library
:mod:`grafana.panels`, the selectors of :mod:`grafana.queries` and the vocabulary the alert rules share,
:mod:`grafana.vocabulary`. The JSON files are committed; ``tests/test_dashboards.py`` checks that they equal what
this generates. They use the classic dashboard JSON model (importable by hand and by file provisioning); every query
goes through the ``datasource`` template variable, so there is no ``__inputs``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from grafana.charger import charger
from grafana.fleet import fleet
from grafana.generated import write_or_check
from grafana.panels import Json

DASHBOARDS_DIR: Final = Path(__file__).resolve().parent / "dashboards"
DASHBOARDS: Final[dict[str, Callable[[], Json]]] = {"pulsatrix-fleet.json": fleet, "pulsatrix-charger.json": charger}


def render(dashboard: Json) -> str:
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def generate() -> dict[str, str]:
    """File name → JSON text of every dashboard."""
    return {name: render(build()) for name, build in DASHBOARDS.items()}


def main(argv: list[str] | None = None) -> int:
    files = lambda: {DASHBOARDS_DIR / name: text for name, text in generate().items()}  # noqa: E731
    return write_or_check(__doc__.splitlines()[0] if __doc__ else "", files, "grafana.build", argv)


if __name__ == "__main__":
    sys.exit(main())
