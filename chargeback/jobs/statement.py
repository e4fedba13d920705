"""Rendering a month's statement: the FOCUS 1.2 CSV, the finance summary CSV and their manifest.

Pure: the same rollup, budgets and PTU deployments give the same bytes (sorted rows, fixed decimals,
no timestamps inside the CSVs), which is what lets ``jobs.exports`` publish a new version only when
the data changed. File names: ``chargeback-2026-10.focus.csv`` (version 1),
``chargeback-2026-10.v2.focus.csv`` (version 2), and the same for ``summary.csv`` and ``manifest.json``.

FOCUS (FinOps Open Cost and Usage Specification) 1.2: every Mandatory column (BilledCost,
BillingAccountId, BillingAccountName, BillingCurrency, BillingPeriodEnd, BillingPeriodStart,
ChargeCategory, ChargeClass, ChargeDescription, ChargePeriodEnd, ChargePeriodStart, ContractedCost,
EffectiveCost, InvoiceIssuerName, ListCost, PricingQuantity, PricingUnit, ProviderName,
PublisherName, ServiceCategory, ServiceName), the conditional ones that apply, then ``x_`` columns.
Usage rows, one per meter (DESIGN's meter names; ``x_Meter``), unit price, region and tag set. Units
follow the FOCUS unit format (``chargeback.core.focus.focus_unit``): token meters have PricingUnit
``1000000 Tokens`` and PricingQuantity = tokens / 1M; ``images`` ``Images`` (one each);
``audio-seconds`` ``Hours`` (seconds / 3600); ``characters`` ``1000000 Characters``. ListUnitPrice =
the rate card price per that unit, and BilledCost = EffectiveCost = ListCost = ContractedCost =
PricingQuantity x ListUnitPrice (exact; printed with 6 decimals, quantities with 12). PTU allocation
rows: PricingUnit ``Months``, ListUnitPrice = the deployment's monthly cost, PricingQuantity =
allocated / monthly cost, ResourceId = the deployment.

Unpriced usage (a model or meter without a rate card price) is still a Usage row, as FOCUS requires
a unit price and a SKU price id on every Usage row: it is charged 0 at ListUnitPrice 0 under its own
SkuPriceId (``.../unpriced``), and says so in ``x_PricingStatus``, ``SkuPriceDetails`` and the
ChargeDescription; once a price exists, the re-run publishes a new version with the real cost.
Region and Tags come from the calls (``RegionId``/``RegionName``, FOCUS ``Tags`` JSON). Issuer and
provider: see ``chargeback.core.focus``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from chargeback.core.focus import (
    ISSUER,
    PUBLISHER,
    focus_unit,
    invoice_id,
    region_id,
    region_name,
    sku_price_details,
)
from chargeback.core.pricing import Deployment
from chargeback.core.textsafe import csv_cell
from chargeback.edges.kqlrun import load_query
from chargeback.errors import StatementError
from chargeback.jobs.budgets import Budget
from chargeback.jobs.rollup import (
    CENT,
    DEFAULT_OUTPUT_WEIGHT,
    MeterCharge,
    PtuAllocation,
    Rollup,
    allocate_ptu,
    largest_remainder,
    meter_charges,
    ptu_weighted_tokens,
    rollup_ptu_lines,
    subscription_totals,
)

log = logging.getLogger("chargeback.jobs.statement")

FOCUS_VERSION = "1.2"
BILLING_ACCOUNT_ID = "aoai-shared-service"
BILLING_ACCOUNT_NAME = "Azure OpenAI shared service (APIM chargeback)"
SERVICE_NAME = "Azure OpenAI"
SERVICE_CATEGORY = "AI and Machine Learning"
SERVICE_SUBCATEGORY = "Generative AI"
TOKEN_UNIT = focus_unit("1M tokens")
PTU_UNIT = focus_unit("1 month")
METER_NAMES = {
    "input": "Input Tokens",
    "cached-input": "Cached Input Tokens",
    "output": "Output Tokens",
    "audio-input": "Audio Input Tokens",
    "cached-audio-input": "Cached Audio Input Tokens",
    "audio-output": "Audio Output Tokens",
    "image-input": "Image Input Tokens",
    "cached-image-input": "Cached Image Input Tokens",
    "image-output": "Image Output Tokens",
    "images": "Images",
    "audio-seconds": "Audio Seconds",
    "characters": "Characters",
}
# Per meter: (PricingUnit, ConsumedUnit, what one price covers in words), in FOCUS unit format
# from the rate card's own units (chargeback.core.focus.focus_unit): a new meter adds a line here.
METER_UNITS: dict[str, tuple[str, str, str]] = {
    **dict.fromkeys(list(METER_NAMES)[:9], (TOKEN_UNIT, focus_unit("tokens"), "per 1M tokens")),
    "images": (focus_unit("1 image"), focus_unit("images"), "per image"),
    "audio-seconds": (focus_unit("1 hour"), focus_unit("seconds"), "per hour of audio"),
    "characters": (focus_unit("1M characters"), focus_unit("characters"), "per 1M characters"),
}
USAGE_SOURCES = ("reported", "stream-usage", "recounted", "estimated")

FOCUS_MANDATORY = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
)
FOCUS_OPTIONAL = (
    "BillingAccountType",
    "ChargeFrequency",
    "CommitmentDiscountStatus",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedUnitPrice",
    "InvoiceId",
    "ListUnitPrice",
    "PricingCategory",
    "PricingCurrency",
    "PricingCurrencyContractedUnitPrice",
    "PricingCurrencyEffectiveCost",
    "PricingCurrencyListUnitPrice",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceSubcategory",
    "SkuId",
    "SkuMeter",
    "SkuPriceDetails",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
)
FOCUS_EXTENSIONS = (
    "x_Model",
    "x_DeploymentType",
    "x_Meter",
    "x_PricingStatus",
    "x_Requests",
    "x_Tokens",
    "x_CostCenter",
    "x_Owner",
    "x_RequestsReported",
    "x_RequestsStreamUsage",
    "x_RequestsRecounted",
    "x_RequestsEstimated",
    "x_PtuDeployment",
    "x_AllocationWeightedTokens",
    "x_AllocationTotalWeightedTokens",
)
FOCUS_COLUMNS = FOCUS_MANDATORY + FOCUS_OPTIONAL + FOCUS_EXTENSIONS

SUMMARY_COLUMNS = (
    "SubscriptionId",
    "SubscriptionName",
    "CostCenter",
    "Owner",
    "Requests",
    "PromptTokens",
    "CachedTokens",
    "CompletionTokens",
    "ReasoningTokens",
    "TotalCost",
    "AllocatedCost",
    "Currency",
    "Budget",
    "BudgetUsedPct",
    "ChargedCost",
    "UnpricedRequests",
    "CacheHitRequests",
    "NotBillableRequests",
    "PtuRequests",
)

KINDS = ("focus.csv", "summary.csv")
UNALLOCATED = "(unallocated)"
MANIFEST = "manifest.json"
_Q6 = Decimal("0.000001")
_Q12 = Decimal("0.000000000001")


def _fixed(value: Decimal | None, places: Decimal) -> str:
    """Fixed decimals (never exponent notation); None is an empty cell."""
    if value is None:
        return ""
    return f"{value.quantize(places):f}"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _price_text(price: Decimal | None) -> str:
    return f"{price.normalize():f}" if price is not None else ""


@dataclass(frozen=True, slots=True)
class Statement:
    """A month's two CSVs, rendered, with what the manifest says about them."""

    month: str
    focus: bytes
    summary: bytes
    focus_rows: int
    summary_rows: int
    totals: dict[str, dict[str, str]]
    rate_card_versions: tuple[str, ...]
    source_query: str


def _focus_common(
    cost: str, price: str, currency: str, budget: Budget | None, *, period: tuple[str, str], month: str
) -> dict[str, str]:
    """The columns every FOCUS row shares; the four cost columns are one amount (list = billed).

    Prices and costs are in one currency (pricing currency = billing currency), so the
    PricingCurrency* columns repeat them.
    """
    return {
        "BilledCost": cost,
        "ContractedCost": cost,
        "EffectiveCost": cost,
        "ListCost": cost,
        "PricingCurrencyEffectiveCost": cost,
        "ContractedUnitPrice": price,
        "ListUnitPrice": price,
        "PricingCurrencyContractedUnitPrice": price,
        "PricingCurrencyListUnitPrice": price,
        "InvoiceId": invoice_id(month),
        # No commitment discounts: present and null, so FOCUS rules conditioned on it can be evaluated.
        "CommitmentDiscountStatus": "",
        "BillingAccountId": BILLING_ACCOUNT_ID,
        "BillingAccountName": BILLING_ACCOUNT_NAME,
        "BillingAccountType": "Internal chargeback",
        "BillingCurrency": currency,
        "PricingCurrency": currency,
        "BillingPeriodEnd": period[1],
        "BillingPeriodStart": period[0],
        "ChargePeriodEnd": period[1],
        "ChargePeriodStart": period[0],
        "ChargeCategory": "Usage",
        "ChargeClass": "",
        "InvoiceIssuerName": ISSUER,
        "ProviderName": ISSUER,
        "PublisherName": PUBLISHER,
        "ServiceCategory": SERVICE_CATEGORY,
        "ServiceName": SERVICE_NAME,
        "ServiceSubcategory": SERVICE_SUBCATEGORY,
        "x_CostCenter": budget.cost_center if budget else "",
        "x_Owner": budget.owner if budget else "",
    }


def _usage_row(
    rollup: Rollup, charge: MeterCharge, budget: Budget | None, period: tuple[str, str]
) -> dict[str, str]:
    priced = charge.unit_price is not None
    cost = _fixed(charge.cost, _Q6)
    price = _fixed(charge.unit_price if priced else Decimal(0), _Q6)
    meter = METER_NAMES[charge.meter]
    pricing_unit, consumed_unit, per = METER_UNITS[charge.meter]
    if priced:
        description = (
            f"{charge.model} {charge.deployment_type} {meter.lower()} at "
            f"{_price_text(charge.unit_price)} {charge.currency} {per}"
        )
    else:
        description = (
            f"{charge.model} {charge.deployment_type} {meter.lower()}: no price in the rate card (unpriced)"
        )
    sku = f"{charge.model}/{charge.deployment_type}"
    price_id = f"{sku}/{charge.meter}/{_price_text(charge.unit_price) if priced else 'unpriced'}"
    return {
        **_focus_common(cost, price, charge.currency, budget, period=period, month=rollup.month),
        "ChargeDescription": description,
        "PricingQuantity": _fixed(charge.quantity, _Q12),
        "PricingUnit": pricing_unit,
        "ChargeFrequency": "Usage-Based",
        "ConsumedQuantity": _fixed(Decimal(charge.tokens), _Q6),
        "ConsumedUnit": consumed_unit,
        "PricingCategory": "Standard",
        "RegionId": region_id(charge.region),
        "RegionName": region_name(charge.region),
        "ResourceId": "",
        "ResourceName": "",
        "ResourceType": "",
        "SkuId": sku,
        "SkuMeter": meter,
        "SkuPriceId": price_id,
        "SkuPriceDetails": sku_price_details(
            Model=charge.model,
            DeploymentType=charge.deployment_type,
            Meter=charge.meter,
            PricingStatus=charge.pricing_status,
        ),
        "Tags": charge.tags,
        "SubAccountId": charge.subscription_id,
        "SubAccountName": charge.subscription_name,
        "SubAccountType": "APIM Subscription",
        "x_Model": charge.model,
        "x_DeploymentType": charge.deployment_type,
        "x_Meter": charge.meter,
        "x_PricingStatus": charge.pricing_status,
        "x_Requests": str(charge.requests),
        "x_Tokens": str(charge.tokens) if consumed_unit == "Tokens" else "",
        "x_RequestsReported": str(charge.usage_sources.get("reported", 0)),
        "x_RequestsStreamUsage": str(charge.usage_sources.get("stream-usage", 0)),
        "x_RequestsRecounted": str(charge.usage_sources.get("recounted", 0)),
        "x_RequestsEstimated": str(charge.usage_sources.get("estimated", 0)),
        "x_PtuDeployment": "",
        "x_AllocationWeightedTokens": "",
        "x_AllocationTotalWeightedTokens": "",
    }


def _allocation_row(
    allocation: PtuAllocation,
    names: Mapping[str, str],
    budget: Budget | None,
    period: tuple[str, str],
    month: str,
) -> dict[str, str]:
    deployment = allocation.deployment
    monthly = deployment.ptu_monthly_cost or Decimal(0)
    quantity = allocation.amount / monthly if monthly else Decimal(0)
    cost = _fixed(allocation.amount, _Q6)
    who = (
        "unallocated: no calls this month" if allocation.unallocated else "allocated by weighted token share"
    )
    sku = f"{deployment.model}/ptu"
    return {
        **_focus_common(cost, _fixed(monthly, _Q6), deployment.currency, budget, period=period, month=month),
        "ChargeDescription": (
            f"Provisioned throughput {deployment.deployment} ({deployment.model}), "
            f"{_fixed(monthly, CENT)} {deployment.currency} per month, {who}"
        ),
        "PricingQuantity": _fixed(quantity, _Q12),
        "PricingUnit": PTU_UNIT,
        "ChargeFrequency": "Recurring",
        "ConsumedQuantity": _fixed(allocation.weighted_tokens, _Q6),
        "ConsumedUnit": "Weighted Tokens",
        "PricingCategory": "Committed",
        "RegionId": "",
        "RegionName": "",
        "ResourceId": deployment.deployment,
        "ResourceName": deployment.deployment,
        "ResourceType": "Provisioned Throughput Deployment",
        "SkuId": sku,
        "SkuMeter": "Provisioned Throughput",
        "SkuPriceId": f"{sku}/{deployment.deployment.lower()}/{_fixed(monthly, CENT)}",
        "SkuPriceDetails": sku_price_details(
            Model=deployment.model, DeploymentType="ptu", Deployment=deployment.deployment
        ),
        "Tags": "",
        "SubAccountId": allocation.subscription_id,
        "SubAccountName": names.get(allocation.subscription_id, ""),
        "SubAccountType": "APIM Subscription" if allocation.subscription_id else "",
        "x_Model": deployment.model,
        "x_DeploymentType": "ptu",
        "x_Meter": "ptu-allocation",
        "x_PricingStatus": "ptu",
        "x_Requests": "",
        "x_Tokens": "",
        "x_RequestsReported": "",
        "x_RequestsStreamUsage": "",
        "x_RequestsRecounted": "",
        "x_RequestsEstimated": "",
        "x_PtuDeployment": deployment.deployment,
        "x_AllocationWeightedTokens": _fixed(allocation.weighted_tokens, Decimal(1)),
        "x_AllocationTotalWeightedTokens": _fixed(allocation.total_weighted_tokens, Decimal(1)),
    }


def _csv(columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        # OWASP CSV injection: a cell a spreadsheet would evaluate (=, +, -, @, ...) gets a quote.
        writer.writerow([csv_cell(row[column]) for column in columns])
    return buffer.getvalue().encode("utf-8")


def build_statement(
    rollup: Rollup,
    budgets: Mapping[str, Budget],
    ptu_deployments: Sequence[Deployment],
    *,
    output_weight: Decimal = DEFAULT_OUTPUT_WEIGHT,
) -> Statement:
    """Render the month's FOCUS and summary CSVs from the rollup (pure: same input, same bytes)."""
    period = (_iso(rollup.start), _iso(rollup.end))
    charges = meter_charges(rollup)
    totals = subscription_totals(rollup, charges)
    names = {sub: entry.subscription_name for (sub, _), entry in totals.items()}
    allocations = allocate_ptu(ptu_deployments, ptu_weighted_tokens(rollup_ptu_lines(rollup), output_weight))

    focus_rows: list[tuple[tuple[Any, ...], dict[str, str]]] = []
    for charge in charges:
        key = (charge.subscription_id, 0, charge.sort_key())
        focus_rows.append((key, _usage_row(rollup, charge, budgets.get(charge.subscription_id), period)))
    allocated: dict[tuple[str, str], Decimal] = {}
    for allocation in allocations:
        key = (allocation.subscription_id or "\uffff", 1, (allocation.deployment.deployment.lower(),))
        focus_rows.append(
            (
                key,
                _allocation_row(
                    allocation, names, budgets.get(allocation.subscription_id), period, rollup.month
                ),
            )
        )
        if not allocation.unallocated:
            slot = (allocation.subscription_id, allocation.deployment.currency)
            allocated[slot] = allocated.get(slot, Decimal(0)) + allocation.amount
    focus_rows.sort(key=lambda item: item[0])

    # One truth, to the cent: the summary is a regrouping of the FOCUS rows as printed. Per
    # currency, the per-token cost of all subscriptions is the FOCUS total rounded once, split
    # between subscriptions by largest remainder; PTU shares are whole cents already (allocate_ptu),
    # and an idle deployment's cost is a summary line of its own. So the summary's ChargedCost
    # lines add up to exactly the FOCUS BilledCost total rounded to the cent.
    token_billed: dict[str, dict[str, Decimal]] = {}
    unallocated: dict[str, tuple[Decimal, list[str]]] = {}
    for _, row in focus_rows:
        if row["x_Meter"] == "ptu-allocation":
            if not row["SubAccountId"]:
                amount, idle = unallocated.get(row["BillingCurrency"], (Decimal(0), []))
                unallocated[row["BillingCurrency"]] = (
                    amount + Decimal(row["BilledCost"]),
                    [*idle, row["ResourceId"]],
                )
            continue
        per_sub = token_billed.setdefault(row["BillingCurrency"], {})
        per_sub[row["SubAccountId"]] = per_sub.get(row["SubAccountId"], Decimal(0)) + Decimal(
            row["BilledCost"]
        )
    token_cents: dict[tuple[str, str], Decimal] = {}
    for currency, per_sub in token_billed.items():
        rounded = sum(per_sub.values(), Decimal(0)).quantize(CENT, rounding=ROUND_HALF_UP)
        for sub, amount in largest_remainder(rounded, per_sub).items():
            token_cents[(sub, currency)] = amount

    summary_keys = set(totals) | set(allocated)
    summary_keys |= {
        (sub, budget.currency)
        for sub, budget in budgets.items()
        if not any(k[0] == sub for k in summary_keys)
    }
    summary_rows = []
    grand: dict[str, dict[str, Decimal]] = {}
    for sub, currency in sorted(summary_keys):
        entry = totals.get((sub, currency))
        budget = budgets.get(sub)
        budget = budget if budget is not None and budget.currency == currency else None
        token_cost = token_cents.get((sub, currency), Decimal(0)).quantize(CENT)
        share = allocated.get((sub, currency), Decimal(0)).quantize(CENT)
        charged = token_cost + share
        statuses = entry.statuses if entry else {}
        summary_rows.append(
            {
                "SubscriptionId": sub,
                "SubscriptionName": (entry.subscription_name if entry else "")
                or (budget.subscription_name if budget else ""),
                "CostCenter": budget.cost_center if budget else "",
                "Owner": budget.owner if budget else "",
                "Requests": str(entry.requests if entry else 0),
                "PromptTokens": str(entry.prompt_tokens if entry else 0),
                "CachedTokens": str(entry.cached_tokens if entry else 0),
                "CompletionTokens": str(entry.completion_tokens if entry else 0),
                "ReasoningTokens": str(entry.reasoning_tokens if entry else 0),
                "TotalCost": _fixed(token_cost, CENT),
                "AllocatedCost": _fixed(share, CENT),
                "Currency": currency,
                "Budget": _fixed(budget.monthly_budget, CENT) if budget else "",
                "BudgetUsedPct": _fixed(charged * 100 / budget.monthly_budget, CENT) if budget else "",
                "ChargedCost": _fixed(charged, CENT),
                "UnpricedRequests": str(statuses.get("unpriced", 0)),
                "CacheHitRequests": str(statuses.get("cache-hit", 0)),
                "NotBillableRequests": str(statuses.get("not-billable", 0)),
                "PtuRequests": str(statuses.get("ptu", 0)),
            }
        )
    for currency, (amount, idle) in sorted(unallocated.items()):
        summary_rows.append(
            {
                **dict.fromkeys(SUMMARY_COLUMNS, ""),
                "SubscriptionId": UNALLOCATED,
                "SubscriptionName": f"Unallocated PTU (no calls this month): {', '.join(sorted(idle))}",
                **dict.fromkeys(
                    ("Requests", "PromptTokens", "CachedTokens", "CompletionTokens", "ReasoningTokens"), "0"
                ),
                **dict.fromkeys(
                    ("UnpricedRequests", "CacheHitRequests", "NotBillableRequests", "PtuRequests"), "0"
                ),
                "TotalCost": _fixed(Decimal(0), CENT),
                "AllocatedCost": _fixed(amount, CENT),
                "ChargedCost": _fixed(amount, CENT),
                "Currency": currency,
            }
        )
    for row in summary_rows:
        money = grand.setdefault(
            row["Currency"],
            {
                "TotalCost": Decimal(0),
                "AllocatedCost": Decimal(0),
                "ChargedCost": Decimal(0),
                "Unallocated": Decimal(0),
            },
        )
        for column in ("TotalCost", "AllocatedCost", "ChargedCost"):
            money[column] += Decimal(row[column])
        if row["SubscriptionId"] == UNALLOCATED:
            money["Unallocated"] += Decimal(row["ChargedCost"])
    billed: dict[str, Decimal] = {}
    for _, row in focus_rows:
        billed[row["BillingCurrency"]] = billed.get(row["BillingCurrency"], Decimal(0)) + Decimal(
            row["BilledCost"]
        )
    summary_totals: dict[str, dict[str, str]] = {}
    for currency in sorted(set(billed) | set(grand)):
        focus_total = billed.get(currency, Decimal(0))
        money = grand.get(currency, {})
        charged = money.get("ChargedCost", Decimal(0))
        rounded = focus_total.quantize(CENT, rounding=ROUND_HALF_UP)
        if charged != rounded:  # a statement that does not reconcile is never published
            raise StatementError(
                f"{rollup.month} {currency}: summary ChargedCost {charged} != FOCUS BilledCost {focus_total} "
                f"rounded ({rounded})"
            )
        summary_totals[currency] = {
            "focusBilledCost": _fixed(focus_total, _Q6),
            "focusBilledCostRounded": _fixed(rounded, CENT),
            "summaryTotalCost": _fixed(money.get("TotalCost", Decimal(0)), CENT),
            "summaryAllocatedCost": _fixed(money.get("AllocatedCost", Decimal(0)), CENT),
            "summaryUnallocatedCost": _fixed(money.get("Unallocated", Decimal(0)), CENT),
            "summaryChargedCost": _fixed(charged, CENT),
            "agree": "yes",
        }
    return Statement(
        month=rollup.month,
        focus=_csv(FOCUS_COLUMNS, [row for _, row in focus_rows]),
        summary=_csv(SUMMARY_COLUMNS, summary_rows),
        focus_rows=len(focus_rows),
        summary_rows=len(summary_rows),
        totals=summary_totals,
        rate_card_versions=rollup.rate_card_versions,
        source_query=rollup.query,
    )


def changes(previous: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """What a new version changes against the one it supersedes: rows, totals, rate card versions.

    Totals are per currency, ``{"from", "to", "delta"}`` of the FOCUS BilledCost and of the
    summary's ChargedCost; rows per file ``{"from", "to"}``; rate cards ``{"from", "to"}`` (lists).
    """
    before_files = previous.get("files", {})
    rows = {
        kind: {"from": before_files.get(kind, {}).get("rows"), "to": entry["rows"]}
        for kind, entry in current["files"].items()
    }
    totals: dict[str, dict[str, dict[str, str | None]]] = {}
    before_totals = previous.get("totals", {})
    for currency in sorted(set(before_totals) | set(current["totals"])):
        for field in ("focusBilledCost", "summaryChargedCost"):
            old = before_totals.get(currency, {}).get(field)
            new = current["totals"].get(currency, {}).get(field)
            delta = Decimal(new or 0) - Decimal(old or 0)
            totals.setdefault(currency, {})[field] = {"from": old, "to": new, "delta": f"{delta:f}"}
    return {
        "supersedes": current.get("supersedes"),
        "rows": rows,
        "totals": totals,
        "rateCardVersions": {
            "from": previous.get("rateCardVersions", []),
            "to": current.get("rateCardVersions", []),
        },
    }


def file_name(month: str, version: int, kind: str) -> str:
    """``chargeback-2026-10.focus.csv`` for version 1, ``chargeback-2026-10.v2.focus.csv`` after."""
    middle = "" if version == 1 else f".v{version}"
    return f"chargeback-{month}{middle}.{kind}"


def sha256_hex(data: bytes) -> str:
    """The hex SHA-256 of some bytes (the manifest's file and query digests)."""
    return hashlib.sha256(data).hexdigest()


def payloads(statement: Statement) -> dict[str, bytes]:
    """The statement's files by kind (``focus.csv``, ``summary.csv``), in manifest order."""
    return {"focus.csv": statement.focus, "summary.csv": statement.summary}


def render_manifest(
    statement: Statement,
    version: int,
    supersedes: int,
    generated_at: datetime,
    previous: Mapping[str, Any] | None = None,
) -> bytes:
    """The manifest of one published version: what each file holds (rows, bytes, SHA-256), the
    totals of each file (equal to the cent), where the numbers came from (query and its digest, rate
    card versions) and, for a new version, what changed against ``previous`` (the manifest it
    supersedes); written last by ``publish``."""
    month = statement.month
    rows = {"focus.csv": statement.focus_rows, "summary.csv": statement.summary_rows}
    manifest = {
        "month": month,
        "version": version,
        "supersedes": file_name(month, supersedes, MANIFEST) if supersedes else None,
        "generatedAt": _iso(generated_at),
        "focusVersion": FOCUS_VERSION,
        "sourceQuery": f"chargeback/kql/{statement.source_query}.kql",
        "sourceQuerySha256": sha256_hex(load_query(statement.source_query).encode("utf-8")),
        "rateCardVersions": list(statement.rate_card_versions),
        "files": {
            kind: {
                "name": file_name(month, version, kind),
                "rows": rows[kind],
                "bytes": len(data),
                "sha256": sha256_hex(data),
            }
            for kind, data in payloads(statement).items()
        },
        "totals": statement.totals,
    }
    if previous is not None:
        manifest["changes"] = changes(previous, manifest)
    return (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode("utf-8")
