"""Text a charger chose (a reason phrase, bytes quoted in an HTTP parser's error, an exception's message) made
safe to show: in a log line, an error detail, the landing page.

A charger, or whatever answers at its address, decides these bytes. Unchecked, a reply with 128 kB of junk after
its body became a 128,000-character log line (and a 129 kB landing page), and an escape code in a reason phrase
(``\\x1b[2J``) cleared the terminal of the operator reading the log. :func:`device_text` is the one place that
cleans them, and every such text goes through it: cut to :data:`MAX_DEVICE_TEXT` characters (ending in "…" when
cut) with every character that is not printable (control characters, line breaks, other separators) written as
its Python escape, so that one reply is one line of plain text.
"""

from __future__ import annotations

from typing import Final

MAX_DEVICE_TEXT: Final = 200
ELLIPSIS: Final = "…"


def device_text(text: object, limit: int = MAX_DEVICE_TEXT) -> str:
    """``text`` (``str()`` of it) with non-printable characters escaped (``\\x1b``, ``\\n``, ``\\u2028``), at most
    ``limit`` characters long, ending in "…" when it was cut. Only as much of ``text`` is looked at as fits."""
    raw = text if isinstance(text, str) else str(text)
    if len(raw) <= limit and raw.isprintable():
        return raw
    out: list[str] = []
    size = 0
    for char in raw:
        piece = char if char.isprintable() else _escape(char)
        if size + len(piece) > limit - len(ELLIPSIS):
            break
        out.append(piece)
        size += len(piece)
    else:
        return "".join(out)
    return "".join(out) + ELLIPSIS


def _escape(char: str) -> str:
    code = ord(char)
    if char in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


__all__ = ["MAX_DEVICE_TEXT", "device_text"]
