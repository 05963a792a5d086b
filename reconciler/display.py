"""Text from a repository or a cluster, made safe to print as one line of a report.

File names, YAML keys and values come from commits whose authors are not trusted (``capstan
plan`` runs on pull requests). A newline in a file name would start a line of its own in
``capstan validate``'s ``file:line:col: message`` output — a forged error or a forged "valid" —
or a paragraph of its own in a pull-request comment; an escape sequence would drive the
reader's terminal. The CLI's reports (``reconciler.cli``, ``reconciler.plan.render``) pass such
text through ``one_line`` before printing. Standard library only.
"""

from __future__ import annotations

__all__ = ["one_line"]

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def one_line(text: str) -> str:
    """``text`` with every character that is not printable (newlines, tabs, escape sequences,
    other control and format characters, line separators, bidi overrides) written as a
    Python-style escape (``\\n``, ``\\x1b``, ``\\u202e``): what is printed stays one line and
    shows what is there."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    named = _NAMED.get(ch)
    if named is not None:
        return named
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
