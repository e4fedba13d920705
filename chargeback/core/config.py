"""The configuration CSVs' one set of rules: rate card, deployments map and budgets read alike.

Every config file is UTF-8 (a BOM is dropped), one record per line; blank lines and ``#`` lines are
comments (a leading ``# version: <name>`` names the file's version). The first record is the
header: every required column, no unknown, blank or repeated one. Each later record has as many
fields as the header; values are stripped. Numbers are finite, non-negative decimals; currencies
three-letter ISO 4217 codes. A file is checked whole: ``ConfigErrors`` collects every faulty line
and raises one ``ConfigError`` listing them (the first 20), so an operator fixes a file in one go.

The schemas are their owners': ``core.pricing`` (rate card, deployments map) and
``jobs.budgets`` (budgets) build their rows from ``config_records``/``read_table`` and these checks.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path

from chargeback.errors import ConfigError

MAX_REPORTED_ERRORS = 20
_VERSION_COMMENT = re.compile(r"#\s*version\s*:\s*(\S.*?)\s*$", re.IGNORECASE)
_CURRENCY = re.compile(r"[A-Z]{3}")


class ConfigErrors:
    """Collects every problem of a file so that one ConfigError lists them all, with line numbers."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.messages: list[str] = []

    def add(self, line: int, message: str) -> None:
        """Note a problem on a line (1-based)."""
        self.messages.append(f"line {line}: {message}")

    def raise_if_any(self) -> None:
        """Raise one ConfigError naming the file and its faulty lines, if there are any."""
        if not self.messages:
            return
        shown = self.messages[:MAX_REPORTED_ERRORS]
        more = len(self.messages) - len(shown)
        tail = f"\n  ... and {more} more" if more else ""
        raise ConfigError(f"{self.source}: {len(self.messages)} error(s)\n  " + "\n  ".join(shown) + tail)


def read_config_bytes(path: Path | str, what: str) -> bytes:
    """A config file's bytes; an unreadable file is a ConfigError naming it."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None


def decode_config(data: bytes, source: str) -> str:
    """UTF-8 text without a BOM; anything else is a ConfigError."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 ({exc.reason} at byte {exc.start})") from None


def config_records(text: str) -> Iterator[tuple[int, list[str]]]:
    """Non-blank, non-comment CSV records with their 1-based line numbers (one record per line)."""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        yield number, [cell.strip() for cell in next(csv.reader([line]))]


def declared_version(text: str) -> str:
    """The ``# version: <name>`` comment before the first record, or ""."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        match = _VERSION_COMMENT.match(stripped)
        if match:
            return match[1]
    return ""


def check_header(
    line: int, header: list[str], required: Sequence[str], optional: Sequence[str], errors: ConfigErrors
) -> bool:
    """True when the header has every required column, no unknown, blank or repeated one."""
    ok = True
    for position, name in enumerate(header, start=1):
        if not name:
            errors.add(line, f"column {position} of the header is blank")
            ok = False
        elif name not in required and name not in optional:
            errors.add(line, f"unknown column {name!r}; expected {', '.join(required)}")
            ok = False
    for name, count in Counter(header).items():
        if name and count > 1:
            errors.add(line, f"column {name!r} appears {count} times")
            ok = False
    missing = [name for name in required if name not in header]
    if missing:
        errors.add(line, f"missing column(s) {', '.join(missing)}")
        ok = False
    return ok


def read_table(
    text: str, required: Sequence[str], optional: Sequence[str], errors: ConfigErrors
) -> Iterator[tuple[int, dict[str, str]]]:
    """The records after a valid header as ``{column: value}``; a record of the wrong width is noted.

    Yields nothing for an empty file (the caller decides whether that is valid) or a bad header.
    """
    rows = config_records(text)
    first = next(rows, None)
    if first is None:
        return
    header_line, header = first
    if not check_header(header_line, header, required, optional, errors):
        return
    for line, cells in rows:
        if len(cells) != len(header):
            errors.add(line, f"{len(cells)} fields; the header has {len(header)}")
            continue
        yield line, dict(zip(header, cells, strict=True))


def parse_decimal(raw: str, column: str, line: int, errors: ConfigErrors) -> Decimal | None:
    """A finite, non-negative decimal, or None (noted)."""
    try:
        value = Decimal(raw)
    except InvalidOperation:
        errors.add(line, f"{column} {raw!r} is not a decimal number")
        return None
    if not value.is_finite():
        errors.add(line, f"{column} {raw!r} is not a finite number")
        return None
    if value < 0:
        errors.add(line, f"{column} {raw} is negative")
        return None
    return value


def parse_currency(raw: str, line: int, errors: ConfigErrors, *, default: str | None = None) -> str | None:
    """A three-letter ISO 4217 code (upper-cased), ``default`` when blank and given, or None (noted)."""
    if not raw and default is not None:
        return default
    value = raw.upper()
    if _CURRENCY.fullmatch(value):
        return value
    errors.add(line, f"currency {raw!r} is not a three-letter ISO 4217 code")
    return None
