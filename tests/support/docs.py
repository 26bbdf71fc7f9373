"""The project's documentation read the way the code host shows it: the Markdown files, their headings as anchors,
and their relative links."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[2]
HEADING_RE = re.compile(r"(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) and ![alt](target), the target up to a space (a title may follow) or the closing parenthesis
LINK_RE = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HTML_ANCHOR_RE = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")


def pages() -> list[Path]:
    """The documentation a user reads: README.md (the front page) and the reference pages in docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def documentation() -> str:
    """Every page of the documentation as one text: where a test looks for what the docs promise or show."""
    return "\n".join(page.read_text(encoding="utf-8") for page in pages())


def _heading_at(lines: list[str], title: str) -> tuple[int, int] | None:
    """(line index, level) of the heading ``title`` (any level) outside code blocks."""
    fence = False
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("```", "~~~")):
            fence = not fence
            continue
        match = HEADING_RE.match(line)
        if match and not fence and match.group(2) == title:
            return i, len(match.group(1))
    return None


def doc_section(title: str) -> str:
    """The section headed ``title`` (a page's title or any heading) of whichever page has it: the text after the
    heading up to the next heading of the same or a higher level."""
    for page in pages():
        lines = page.read_text(encoding="utf-8").splitlines()
        found = _heading_at(lines, title)
        if found is None:
            continue
        start, level = found
        end, fence = len(lines), False
        for j in range(start + 1, len(lines)):
            if lines[j].lstrip().startswith(("```", "~~~")):
                fence = not fence
            elif not fence and (m := HEADING_RE.match(lines[j])) and len(m.group(1)) <= level:
                end = j
                break
        return "\n".join(lines[start + 1 : end]) + "\n"
    raise AssertionError(f"no page of the documentation has a section {title!r}")


def page_with(title: str) -> Path:
    """The page that has the heading ``title``."""
    for page in pages():
        if _heading_at(page.read_text(encoding="utf-8").splitlines(), title) is not None:
            return page
    raise AssertionError(f"no page of the documentation has a section {title!r}")


def markdown_files() -> list[Path]:
    """README.md and every page of docs/ (the reference), tests/README.md too."""
    return [ROOT / "README.md", ROOT / "tests" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def github_anchor(heading: str, seen: dict[str, int]) -> str:
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to '-', -N for repeats."""
    text = re.sub(r"`|\*\*", "", heading.strip()).lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its text
    slug = "".join(ch for ch in text if ch in "-_ " or unicodedata.category(ch)[0] in "LN").replace(" ", "-")
    count = seen.get(slug, 0)
    seen[slug] = count + 1
    return slug if count == 0 else f"{slug}-{count}"


def prose_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks."""
    fence = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.lstrip()
        if stripped.startswith(("```", "~~~")):
            marker = stripped[:3]
            fence = None if fence == marker else (fence or marker)
            continue
        if fence is None:
            yield number, line


def headings(path: Path) -> list[tuple[int, str]]:
    """(level, text) of every heading."""
    found = []
    for _, line in prose_lines(path):
        match = HEADING_RE.match(line)
        if match:
            found.append((len(match.group(1)), match.group(2)))
    return found


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    names = {github_anchor(text, seen) for _, text in headings(path)}
    names |= {m.group(1) for _, line in prose_lines(path) for m in HTML_ANCHOR_RE.finditer(line)}
    return names


@dataclass(frozen=True)
class Link:
    source: Path
    line: int
    target: str

    def __str__(self) -> str:
        where = self.source.relative_to(ROOT) if self.source.is_relative_to(ROOT) else self.source.name
        return f"{where}:{self.line}: {self.target}"


def links(path: Path) -> list[Link]:
    """Every link of the page outside code blocks and inline code."""
    found = []
    for number, line in prose_lines(path):
        prose = re.sub(r"`[^`]*`", "", line)
        found += [Link(path, number, m.group(1)) for m in LINK_RE.finditer(prose)]
    return found


def section(path: Path, title: str) -> str:
    """The text of the section headed ``title`` (any level), up to the next heading of the same or a higher level."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        match = HEADING_RE.match(line)
        if match and match.group(2) == title:
            level = len(match.group(1))
            end = next(
                (
                    j
                    for j in range(i + 1, len(lines))
                    if (m := HEADING_RE.match(lines[j])) and len(m.group(1)) <= level
                ),
                len(lines),
            )
            return "\n".join(lines[i:end])
    raise AssertionError(f"{path.relative_to(ROOT)} has no section {title!r}")


def broken_links(pages: list[Path], root: Path = ROOT) -> list[str]:
    """Every relative link of ``pages`` to a file that does not exist (or lies outside ``root``) or to an anchor its
    page does not have."""
    broken = []
    for page in pages:
        for link in links(page):
            target = link.target
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path_part, _, fragment = target.partition("#")
            file = page if not path_part else (page.parent / unquote(path_part)).resolve()
            if not file.exists():
                broken.append(f"{link} (no such file)")
            elif not file.is_relative_to(root):
                broken.append(f"{link} (outside the repository)")
            elif fragment and (file.suffix != ".md" or fragment not in anchors(file)):
                broken.append(f"{link} (no heading with anchor #{fragment})")
    return broken
