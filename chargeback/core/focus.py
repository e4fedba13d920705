"""FOCUS 1.2 value formats, in one place: units, regions, tags, SKU price details, invoice and issuer.

Every FOCUS row the statement writes (token meters, per-unit meters, PTU allocations) takes its
formatted values from here, so a new meter follows the same rules as the old ones:

- ``focus_unit``: a rate card unit (``1M tokens``, ``1K tokens``, ``1 image``, ``1 second``,
  ``1 hour``, ``1M characters``) as a FOCUS UnitFormat value (``1000000 Tokens``, ``1000 Tokens``,
  ``Images``, ``Seconds``, ``Hours``, ``1000000 Characters``). The number is the pricing block: a
  ``1000000 Tokens`` row has PricingQuantity = tokens / 1,000,000 and ListUnitPrice per 1M tokens.
- ``region_id`` / ``region_name``: Azure's region id is the display name in lower case without
  spaces (``Sweden Central`` → ``swedencentral``); an event that already carries the id keeps it.
- ``tags_column``: the request's ``x-chargeback-*`` tags as FOCUS ``Tags`` (KeyValueFormat: a JSON
  object, keys sorted). They are the only user-defined tag scheme, so keys carry no prefix.
- ``sku_price_details``: KeyValueFormat JSON with provider-defined ``x_`` keys only.

Issuer and provider (so a FinOps tool does not count the cost twice): the Azure Cost Management
export already carries the Azure OpenAI cost with ``InvoiceIssuerName = ProviderName = Microsoft``.
Our statement re-allocates that same cost to teams, so its rows are issued by the internal shared
service (``ISSUER``), not by Microsoft, and only ``PublisherName`` is Microsoft (who produces the
models). Loaded beside the Azure export, filter on ``InvoiceIssuerName`` (or ``ProviderName``):
``Microsoft`` is what Azure billed the company; ``ISSUER`` is who used it. Never sum across both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal

ISSUER = "Azure OpenAI shared service (internal chargeback)"

# What our data supports, as FOCUS 1.2 applicability criteria (focus-validator
# ``--applicability-criteria``), each with the reason. Criteria not listed are not supported:
# availability zones, capacity reservations, commitment discounts (PTU is a provisioned resource whose
# cost we allocate, not a discount), several sub account or billing account types, negotiated
# prices (list = contracted = billed), resource types, different pricing and billing currencies,
# virtual currencies.
APPLICABILITY_CRITERIA = {
    "ACCOUNT_NAMING_SUPPORTED": "BillingAccountName names the shared service",
    "MULTIPLE_PRICING_CATEGORIES_SUPPORTED": "Standard (per token) and Committed (PTU) rows",
    "PUBLIC_PRICE_LIST_SUPPORTED": "the rate card is the price list; SkuPriceId looks a price up in it",
    "USAGE_MEASUREMENT_SUPPORTED": "ConsumedQuantity: tokens (weighted tokens for PTU shares)",
    "UNIT_PRICING_SUPPORTED": "ListUnitPrice per 1M tokens, per PTU month",
    "SUB_ACCOUNT_SUPPORTED": "SubAccountId: the APIM subscription",
    "BILLING_BASED_ON_PROVISIONED_RESOURCES_SUPPORTED": "PTU deployments: ResourceId on their rows",
    "REGION_SUPPORTED": "RegionId/RegionName from the call's region",
    "TAGGING_SUPPORTED": "Tags: the call's x-chargeback-* tags",
}
PUBLISHER = "Microsoft"

# Rate card unit words (singular or plural, any case) → FOCUS unit names.
_UNIT_NAMES = {
    "token": "Tokens",
    "tokens": "Tokens",
    "image": "Images",
    "images": "Images",
    "character": "Characters",
    "characters": "Characters",
    "chars": "Characters",
    "second": "Seconds",
    "seconds": "Seconds",
    "hour": "Hours",
    "hours": "Hours",
    "minute": "Minutes",
    "minutes": "Minutes",
    "request": "Requests",
    "requests": "Requests",
    "month": "Months",
    "months": "Months",
}
_MULTIPLIERS = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}
_RATE_UNIT = re.compile(r"\s*(?:(\d+(?:\.\d+)?)\s*([kKmMbB]?)\s+)?([A-Za-z]+)\s*")

# The validator's UnitFormat patterns (focus-validator 2.2, FOCUS 1.2 appendix "Unit Format"),
# the subset we can produce: "<units>", "<quantity> <units>".
_FOCUS_UNIT = re.compile(r"(?:[0-9]+ )?[A-Za-z][A-Za-z0-9]*(?:\s+[A-Za-z][A-Za-z0-9]*)*")


def focus_unit(unit: str) -> str:
    """A rate card unit as a FOCUS UnitFormat value: ``1M tokens`` → ``1000000 Tokens``.

    A block of one (``1 image``, ``1 second``) is the bare plural unit (``Images``, ``Seconds``).
    Raises ValueError for a unit it cannot read, so a new meter cannot publish an invalid unit.
    """
    match = _RATE_UNIT.fullmatch(unit)
    if match is None or match[3].lower() not in _UNIT_NAMES:
        raise ValueError(f"unit {unit!r} has no FOCUS unit (expected e.g. '1M tokens', '1 image')")
    number = Decimal(match[1] or "1") * _MULTIPLIERS[(match[2] or "").lower()]
    if number != number.to_integral_value() or number <= 0:
        raise ValueError(f"unit {unit!r}: the block size must be a whole number")
    name = _UNIT_NAMES[match[3].lower()]
    return name if number == 1 else f"{int(number)} {name}"


def unit_block(unit: str) -> int:
    """How many units one PricingQuantity stands for: ``1000000 Tokens`` → 1000000, ``Images`` → 1."""
    head = focus_unit(unit).split(" ", 1)
    return int(head[0]) if len(head) == 2 else 1


def is_focus_unit(value: str) -> bool:
    """True when ``value`` follows the FOCUS UnitFormat shapes this exporter writes."""
    return bool(_FOCUS_UNIT.fullmatch(value))


def region_id(region: str) -> str:
    """Azure's region id: ``Sweden Central`` → ``swedencentral`` (blank stays blank)."""
    return "".join(region.split()).lower()


def region_name(region: str) -> str:
    """The region's display name as the event carried it (blank when there is no region)."""
    return " ".join(region.split())


def tags_column(tags: str | Mapping[str, str] | None) -> str:
    """FOCUS ``Tags``: a JSON object with sorted keys, or empty (null) when the call had no tags.

    ``tags`` is the stored ``Tags`` text (JSON) or a mapping. Text that is not a JSON object is
    kept under ``x_UnparsedTags`` rather than dropped.
    """
    if tags is None or tags == "":
        return ""
    if isinstance(tags, str):
        try:
            parsed = json.loads(tags)
        except ValueError:
            parsed = {"x_UnparsedTags": tags}
        if not isinstance(parsed, dict):
            parsed = {"x_UnparsedTags": tags}
        tags = {
            str(key): value if isinstance(value, str) else json.dumps(value) for key, value in parsed.items()
        }
    if not tags:
        return ""
    return json.dumps(dict(sorted(tags.items())), ensure_ascii=False, separators=(",", ":"))


def sku_price_details(**properties: str) -> str:
    """FOCUS ``SkuPriceDetails``: provider-defined properties (keys get the ``x_`` prefix), JSON."""
    details = {f"x_{key}": value for key, value in sorted(properties.items()) if value}
    return json.dumps(details, ensure_ascii=False, separators=(",", ":")) if details else ""


def invoice_id(month: str) -> str:
    """The statement's InvoiceId: one internal invoice per month (a new version corrects it)."""
    return f"AOAI-CHARGEBACK-{month}"
