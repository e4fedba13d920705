"""Text that people open: CSV cells a spreadsheet would evaluate, terminal lines, chat messages.

Names and tags come from callers (APIM subscription names are self-service), so whatever reaches a
reader's tool is made inert here first:

- ``csv_cell``: OWASP's CSV-injection rule. A text cell starting with ``=``, ``+``, ``-``, ``@``,
  tab or carriage return (or their full-width forms, which Excel also reads as formulas) is
  prefixed with a single quote, so a spreadsheet shows it as text instead of running it. The csv
  writer then quotes the cell as usual. A plain number (``-0.25``, ``+3``, ``1e-6``: a credit, a
  signed amount) is data, not a formula, and passes unchanged, as do non-text values.
- ``printable``: control characters, line separators, bidi controls and lone surrogates become
  visible escapes (``\\x1b``, ``\\u202e``), so a value cannot move the cursor, clear the screen,
  fake a line or reorder what follows it on a terminal.
- ``chat_text``: ``printable`` (so no newline can start a fake line) plus Slack's three entity
  escapes (``&``, ``<``, ``>``: no ``<!channel>``, ``<@user>`` mention or ``<url|label>`` link
  can be formed; Teams reads the same entities, and its ``<at>`` mentions need ``<`` too) and a
  backslash before Markdown's active characters (Teams renders Markdown: no ``[label](url)``
  link or emphasis), cut to a length without leaving half an escape at the end.
"""

from __future__ import annotations

import re
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
_UNPRINTABLE = re.compile(
    "[\\x00-\\x1f\\x7f-\\x9f\\u2028\\u2029\\u202a-\\u202e\\u2066-\\u2069\\ud800-\\udfff]"
)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_SLACK_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_MARKDOWN = re.compile(r"([\\`*_~\[\]()#|!])")
_ENTITY = re.compile(r"[&<>]")
_PARTIAL_ESCAPE = re.compile(r"(&[a-z]{0,3}|\\(x[0-9a-f]{0,1}|u[0-9a-f]{0,3})?)$")


def csv_cell(value: Any) -> Any:
    """A value safe in a CSV cell: text that a spreadsheet would evaluate gets a leading ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(value: Any) -> str:
    """``str(value)`` with every control, separator, bidi control and lone surrogate made visible."""
    return _UNPRINTABLE.sub(_escape, str(value))


def chat_text(value: Any, limit: int = 500) -> str:
    """One line for a Slack or Teams message: no markup, mention or line break, at most ``limit`` long."""
    text = _MARKDOWN.sub(r"\\\1", _ENTITY.sub(lambda m: _SLACK_ENTITIES[m.group()], str(value)))
    text = printable(text)  # after the Markdown escapes, so that its own backslashes stay single
    if len(text) > limit:
        text = _PARTIAL_ESCAPE.sub("", text[: max(0, limit - 1)]) + "\u2026"
    return text
