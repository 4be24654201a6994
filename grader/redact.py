"""Text a student's code controls, made safe to write: printable, truncated, redacted.

Exception messages, printed output and file names come from student code. Before any of
it reaches a file a person reads, undecodable bytes and control characters are made
visible, long text is cut, and every distinctive line of the hidden tests' source is
removed, so a submission that reads and prints the hidden tests still cannot carry them
into feedback.
"""
from __future__ import annotations

from typing import Iterable

REDACTED = "[hidden test source removed]"


_CONTROLS = {c: repr(chr(c))[1:-1] for c in (*range(32), *range(127, 160)) if chr(c) != "\t"}


def printable(text: str) -> str:
    """`text` with undecodable bytes (surrogate escapes), lone surrogates and control
    characters made visible. Never raises, whatever the string holds."""
    text = str(text)
    if text.isprintable():
        return text
    quick = text.translate(_CONTROLS)   # the usual case, line breaks say, without a loop
    if quick.replace("\t", " ").isprintable():
        return quick
    out = []
    for ch in text:
        if ch.isprintable() or ch == "\t":
            out.append(ch)
        elif "\udc80" <= ch <= "\udcff":  # a byte that was not UTF-8 (surrogateescape)
            out.append(f"\\x{ord(ch) - 0xdc00:02x}")
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def printable_block(text: str) -> str:
    """Like `printable`, but keeps newlines."""
    return "\n".join(printable(part) for part in str(text).split("\n"))


class Redactor:
    """Removes lines of the hidden tests' source from text a student's code controls."""

    def __init__(self, hidden_lines: Iterable[str]) -> None:
        self.lines = sorted(set(hidden_lines), key=len, reverse=True)

    def __call__(self, text: str, limit: int | None = None) -> str:
        text = printable_block(text)
        if limit is not None and len(text) > limit:
            text = text[:limit] + " [...]"
        for line in self.lines:
            if line in text:
                text = text.replace(line, REDACTED)
        return text
