"""Text people open: formulas neutralised in CSV cells, controls and markup inert on terminals and chats."""

from __future__ import annotations

import pytest

from chargeback.core.textsafe import chat_text, csv_cell, printable


@pytest.mark.parametrize(
    "value",
    ["=1+1", "+1+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", "\uff1dcmd", '=HYPERLINK("http://x","y")', "-"],
)
def test_text_a_spreadsheet_would_evaluate_gets_a_leading_quote(value: str):
    """OWASP CSV injection: a cell starting with = + - @ tab or CR (or full-width forms) is quoted."""
    assert csv_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["Team A", "a=b", "", "-0.25", "+3", "-1e-06", "12.50", 5, -5, 1.5, None])
def test_plain_text_and_numbers_pass_unchanged(value: object):
    """Only text cells that start like a formula change; numbers (also signed, as text) stay numbers."""
    assert csv_cell(value) == value


def test_printable_makes_controls_bidi_and_surrogates_visible():
    """ESC, newline, NUL, a bidi override and a lone surrogate become escapes; the rest stays."""
    assert printable("a\x1b[2Jb\nc\x00\u202ed\ud800é") == "a\\x1b[2Jb\\x0ac\\x00\\u202ed\\ud800é"


def test_chat_text_cannot_mention_link_break_lines_or_run_long():
    """No <!channel>, no Markdown link, no fake line, and never longer than the limit."""
    text = chat_text("<!channel> [click](http://evil)\nFAKE: budget ok *", limit=500)
    assert "<" not in text
    assert ">" not in text
    assert "\n" not in text
    assert "&lt;!channel&gt;" in text.replace("\\!", "!")
    assert "\\[click\\]\\(" in text
    long = chat_text("&" * 1000, limit=100)
    assert len(long) <= 100
    assert long.endswith("\u2026")
    assert not long[:-1].endswith(("&", "&a", "&am", "&amp"))
