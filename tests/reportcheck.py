"""Read a rendered report back: its checked numbers (``data-check`` cells) and any external reference."""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from decimal import Decimal
from html.parser import HTMLParser

# A namespace name is an identifier, never fetched; anything else with a scheme would be a request.
NAMESPACES = ("http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink")
_URL = re.compile(r"""(?:https?|wss?|ftp)://[^\s"'<>)]+|//[a-z0-9.-]+\.[a-z]{2,}/""", re.IGNORECASE)


class Checks(HTMLParser):
    """Collects ``data-check`` cells (key → text), tags that could fetch, and the CSP meta."""

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.fetching: list[str] = []
        self.csp = ""
        self._open: list[tuple[str, list[str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Note data-check cells, CSP and tags that fetch (script, link, img, iframe, object ...)."""
        attributes = dict(attrs)
        if tag in ("script", "link", "img", "iframe", "object", "embed", "video", "audio", "source", "base"):
            self.fetching.append(tag)
        if tag == "meta" and (attributes.get("http-equiv") or "").lower() == "content-security-policy":
            self.csp = attributes.get("content") or ""
        for name in ("src", "href", "xlink:href", "srcset", "poster", "action"):
            value = attributes.get(name)
            if value and not value.startswith(("#", "data:")):
                self.fetching.append(f"{tag} {name}={value}")
        key = attributes.get("data-check")
        if key:
            self._open.append((key, []))
        elif self._open:
            self._open.append(("", []))

    def handle_endtag(self, tag: str) -> None:
        """Close a data-check cell."""
        if self._open:
            key, parts = self._open.pop()
            if key:
                self.values[key] = "".join(parts).strip()
            elif self._open:
                self._open[-1][1].extend(parts)

    def handle_data(self, data: str) -> None:
        """Text inside an open data-check cell."""
        if self._open:
            self._open[-1][1].append(data)


def parse(html: str) -> Checks:
    """The report's checked values and fetch attempts."""
    checks = Checks()
    checks.feed(html)
    return checks


def external_urls(text: str) -> list[str]:
    """Every URL in the text that is not an XML namespace name."""
    return [url for url in _URL.findall(text) if not url.startswith(NAMESPACES)]


def number(text: str) -> Decimal:
    """A displayed number ("1,234.56 USD", "12.5 %") as a Decimal."""
    match = re.search(r"-?[\d,]+(?:\.\d+)?", text)
    assert match, f"no number in {text!r}"
    return Decimal(match[0].replace(",", ""))


def expected_values(summary_csv: bytes, focus_csv: bytes) -> dict[str, Decimal]:
    """What every data-check cell must show, computed straight from the statement CSVs."""
    summary = list(csv.DictReader(io.StringIO(summary_csv.decode("utf-8"))))
    focus = list(csv.DictReader(io.StringIO(focus_csv.decode("utf-8"))))
    expected: dict[str, Decimal] = {}
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for row in summary:
        for column in ("Requests", "TotalCost", "AllocatedCost", "ChargedCost", "Budget", "BudgetUsedPct"):
            if row[column]:
                expected[f"summary|{row['SubscriptionId']}|{column}"] = Decimal(row[column])
                if column in ("Requests", "TotalCost", "AllocatedCost", "ChargedCost"):
                    totals[f"total|{column}|{row['Currency']}"] += Decimal(row[column])
        expected[f"summary|{row['SubscriptionId']}|UnpricedRequests"] = Decimal(row["UnpricedRequests"])
        totals["total|UnpricedRequests|all"] += Decimal(row["UnpricedRequests"])
        totals[f"costcenter|{row['CostCenter'] or '(none)'}|ChargedCost"] += Decimal(row["ChargedCost"])
    for row in focus:
        totals[f"model|{row['x_Model']}|BilledCost"] += Decimal(row["BilledCost"])
        totals[f"type|{row['x_DeploymentType']}|BilledCost"] += Decimal(row["BilledCost"])
        if row["x_Tokens"]:
            totals[f"model|{row['x_Model']}|Tokens"] += Decimal(row["x_Tokens"])
    expected.update(totals)
    return {key: value.quantize(Decimal("0.01")) for key, value in expected.items()}
