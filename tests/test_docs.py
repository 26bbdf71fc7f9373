"""The documentation holds together: every relative link and #anchor in README.md and docs/ leads somewhere (as the
code host renders headings into anchors), and the alerts' runbook links point at a runbook that exists."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.support.docs import ROOT, anchors, broken_links, github_anchor, links, markdown_files


def test_every_relative_link_and_anchor_leads_somewhere() -> None:
    assert broken_links(markdown_files()) == []


def test_the_anchor_rules_are_the_code_hosts() -> None:
    seen: dict[str, int] = {}
    assert github_anchor("Scaling to thousands of chargers", seen) == "scaling-to-thousands-of-chargers"
    assert github_anchor("`pulsatrix_up` & friends (v2)", seen) == "pulsatrix_up--friends-v2"
    assert github_anchor("Scaling to thousands of chargers", seen) == "scaling-to-thousands-of-chargers-1"
    assert github_anchor("See [the docs](docs/x.md) now", seen) == "see-the-docs-now"


def test_a_broken_link_or_anchor_is_found(tmp_path: Path) -> None:
    """The checker itself, on pages of its own: a missing file and a missing anchor are found, a link in inline
    code or a code block is not a link."""
    (tmp_path / "README.md").write_text("# Read me\n", encoding="utf-8")
    (tmp_path / "docs").mkdir()
    page = tmp_path / "docs" / "probe.md"
    page.write_text(
        "# Top\n\n[ok](#top) [gone](missing.md) [bad](../README.md#nowhere) `[code](#ignored)`\n\n"
        "```\n[block](#ignored)\n```\n",
        encoding="utf-8",
    )
    assert [(link.target, link.line) for link in links(page)] == [
        ("#top", 3),
        ("missing.md", 3),
        ("../README.md#nowhere", 3),
    ]
    assert broken_links([page], root=tmp_path) == [
        "probe.md:3: missing.md (no such file)",
        "probe.md:3: ../README.md#nowhere (no heading with anchor #nowhere)",
    ]


def test_every_runbook_url_points_at_a_runbook_heading() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    urls = {
        rule["annotations"]["runbook_url"]
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    assert urls
    missing = []
    for url in sorted(urls):
        path_part, _, fragment = url.partition("#")
        file = ROOT / path_part
        if not file.exists() or fragment not in anchors(file):
            missing.append(url)
    assert missing == []
