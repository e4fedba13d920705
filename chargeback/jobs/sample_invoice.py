"""A synthetic Azure Cost Management cost export (FOCUS) for a published statement: the demo's invoice.

The columns are the ones Microsoft documents for its "FocusCost 1.0" dataset ("FOCUS cost and usage
details file schema", Cost Management dataset schema; the same list in the FinOps toolkit's FOCUS
metadata): the FOCUS 1.0 columns, then Microsoft's ``x_`` extensions. Rows hold what such exports
carry for Azure OpenAI: ``ServiceName`` "Azure OpenAI", ``x_SkuMeterCategory`` "Foundry Models",
``x_SkuMeterSubcategory`` "Azure OpenAI", meter names with Azure's abbreviations
(``gpt-4o-mini-Inp-glbl``), ``PricingUnit`` "1M Tokens" with ``PricingQuantity`` in blocks of 1M
tokens. Written as gzipped CSV split in parts, the way a partitioned export lands in storage.

``sample_invoice`` bills the statement's own usage at Azure's list price, with two gaps that a
reconciliation must find to the cent: calls that bypassed APIM (extra tokens of one deployment
type, billed but never seen by the gateway), any mid-month price cut that exists only in our rate
card (Azure bills the month at one list price, the highest our statement used for the meter), and
usage our rate card left unpriced, which Azure bills anyway (at a made-up price, ``UNPRICED_AT``).
"""

from __future__ import annotations

import csv
import gzip
import io
import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

MILLION = Decimal(1_000_000)
# What the synthetic invoice bills for usage our rate card leaves unpriced (Azure bills it anyway):
# made up for the demo, at gpt-4.1's Global list price per 1M tokens.
UNPRICED_AT: Mapping[str, Decimal] = {
    "input": Decimal("2.00"),
    "cached-input": Decimal("0.50"),
    "output": Decimal("8.00"),
}
DIRECTIONS = {"input": "Inp", "cached-input": "cchd Inp", "output": "Outp"}
# The audio, image and per-unit meters, billed as the statement priced them (no gap planted).
OTHER_DIRECTIONS = {
    "audio-input": "aud Inp",
    "cached-audio-input": "aud cchd Inp",
    "audio-output": "aud Outp",
    "image-input": "img Inp",
    "cached-image-input": "img cchd Inp",
    "image-output": "img Outp",
    "images": "Images",
    "audio-seconds": "Hours",
    "characters": "Characters",
}
SCOPES = {
    "global": "glbl",
    "datazone": "DZ",
    "regional": "rgnl",
    "global-batch": "Batch glbl",
    "datazone-batch": "Batch DZ",
    "priority": "pp glbl",
}

FOCUS_COST_1_0 = (
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingAccountType",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "CommitmentDiscountCategory",
    "CommitmentDiscountId",
    "CommitmentDiscountName",
    "CommitmentDiscountStatus",
    "CommitmentDiscountType",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ContractedCost",
    "ContractedUnitPrice",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "ListUnitPrice",
    "PricingCategory",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "ResourceType",
    "ServiceCategory",
    "ServiceName",
    "SkuId",
    "SkuPriceId",
    "SubAccountId",
    "SubAccountName",
    "SubAccountType",
    "Tags",
    "x_AccountId",
    "x_AccountName",
    "x_AccountOwnerId",
    "x_BilledCostInUsd",
    "x_BilledUnitPrice",
    "x_BillingAccountId",
    "x_BillingAccountName",
    "x_BillingExchangeRate",
    "x_BillingExchangeRateDate",
    "x_BillingProfileId",
    "x_BillingProfileName",
    "x_ContractedCostInUsd",
    "x_CostAllocationRuleName",
    "x_CostCenter",
    "x_CustomerId",
    "x_CustomerName",
    "x_EffectiveCostInUsd",
    "x_EffectiveUnitPrice",
    "x_InvoiceId",
    "x_InvoiceIssuerId",
    "x_InvoiceSectionId",
    "x_InvoiceSectionName",
    "x_ListCostInUsd",
    "x_PartnerCreditApplied",
    "x_PartnerCreditRate",
    "x_PricingBlockSize",
    "x_PricingCurrency",
    "x_PricingSubcategory",
    "x_PricingUnitDescription",
    "x_PublisherCategory",
    "x_PublisherId",
    "x_ResellerId",
    "x_ResellerName",
    "x_ResourceGroupName",
    "x_ResourceType",
    "x_ServicePeriodEnd",
    "x_ServicePeriodStart",
    "x_SkuDescription",
    "x_SkuDetails",
    "x_SkuIsCreditEligible",
    "x_SkuMeterCategory",
    "x_SkuMeterId",
    "x_SkuMeterName",
    "x_SkuMeterSubcategory",
    "x_SkuOfferId",
    "x_SkuOrderId",
    "x_SkuOrderName",
    "x_SkuPartNumber",
    "x_SkuRegion",
    "x_SkuServiceFamily",
    "x_SkuTerm",
    "x_SkuTier",
)

SUBSCRIPTION = "/subscriptions/00000000-0000-0000-0000-00000000a0a1"
ACCOUNT = f"{SUBSCRIPTION}/resourceGroups/rg-ai/providers/Microsoft.CognitiveServices/accounts/aoai-shared"


def cost_row(
    month: str,
    meter_name: str,
    *,
    quantity: Decimal,
    unit_price: Decimal,
    billed: Decimal | None = None,
    unit: str = "1M Tokens",
    block: str = "1000000",
    resource: str = ACCOUNT,
    service: str = "Azure OpenAI",
    meter_category: str = "Foundry Models",
    meter_subcategory: str = "Azure OpenAI",
    day: str = "01",
) -> dict[str, str]:
    """One daily cost row of an Azure OpenAI meter, every documented column present (most blank)."""
    year, number = (int(part) for part in month.split("-"))
    following = f"{year + number // 12}-{number % 12 + 1:02d}"
    list_cost = quantity * unit_price
    billed_cost = list_cost if billed is None else billed
    row = dict.fromkeys(FOCUS_COST_1_0, "")
    row.update(
        {
            "BilledCost": f"{billed_cost:f}",
            "BillingAccountId": "/providers/Microsoft.Billing/billingAccounts/1234567",
            "BillingAccountName": "Contoso",
            "BillingAccountType": "Billing Profile",
            "BillingCurrency": "USD",
            "BillingPeriodStart": f"{month}-01T00:00:00Z",
            "BillingPeriodEnd": f"{following}-01T00:00:00Z",
            "ChargeCategory": "Usage",
            "ChargeDescription": meter_name,
            "ChargeFrequency": "Usage-Based",
            "ChargePeriodStart": f"{month}-{day}T00:00:00Z",
            "ChargePeriodEnd": f"{month}-{day}T23:59:59Z",
            "ConsumedQuantity": f"{quantity:f}",
            "ConsumedUnit": unit,
            "ContractedCost": f"{list_cost:f}",
            "ContractedUnitPrice": f"{unit_price:f}",
            "EffectiveCost": f"{billed_cost:f}",
            "InvoiceIssuerName": "Microsoft",
            "ListCost": f"{list_cost:f}",
            "ListUnitPrice": f"{unit_price:f}",
            "PricingCategory": "Standard",
            "PricingQuantity": f"{quantity:f}",
            "PricingUnit": unit,
            "ProviderName": "Microsoft",
            "PublisherName": "Microsoft",
            "RegionId": "swedencentral",
            "RegionName": "Sweden Central",
            "ResourceId": resource,
            "ResourceName": resource.rsplit("/", 1)[-1],
            "ResourceType": "Azure AI services",
            "ServiceCategory": "AI and Machine Learning",
            "ServiceName": service,
            "SkuId": "DZH318Z0BQ4H",
            "SubAccountId": SUBSCRIPTION,
            "SubAccountName": "ai-platform-prod",
            "SubAccountType": "Subscription",
            "Tags": "{}",
            "x_BilledCostInUsd": f"{billed_cost:f}",
            "x_BilledUnitPrice": f"{unit_price:f}",
            "x_PricingBlockSize": block,
            "x_PricingCurrency": "USD",
            "x_PricingUnitDescription": unit,
            "x_ResourceGroupName": "rg-ai",
            "x_ResourceType": "microsoft.cognitiveservices/accounts",
            "x_SkuDescription": f"{meter_subcategory} {meter_name}",
            "x_SkuMeterCategory": meter_category,
            "x_SkuMeterId": str(uuid.uuid5(uuid.NAMESPACE_URL, meter_name)),
            "x_SkuMeterName": meter_name,
            "x_SkuMeterSubcategory": meter_subcategory,
            "x_SkuRegion": "Sweden Central",
            "x_SkuServiceFamily": "AI + Machine Learning",
        }
    )
    return row


def meter_name(model: str, deployment_type: str, meter: str) -> str:
    """Azure's way of naming a token meter: ``gpt-4o-mini-Inp-glbl``, ``gpt-4o-cchd Inp-DZ``."""
    scope = SCOPES.get(deployment_type, deployment_type)
    if model.startswith("text-embedding"):
        return f"{model}-{scope}"  # embeddings meters name no direction
    return f"{model}-{DIRECTIONS.get(meter) or OTHER_DIRECTIONS.get(meter, meter)}-{scope}"


@dataclass(frozen=True, slots=True)
class SampleInvoice:
    """The export's rows and the gaps planted in them."""

    rows: list[dict[str, str]]
    bypass_tokens: int
    bypass_cost: Decimal
    price_gap: Decimal
    unpriced_cost: Decimal


def sample_invoice(
    focus_csv: bytes,
    month: str,
    *,
    bypass_model: str = "gpt-4o",
    bypass_type: str = "global",
    bypass_share: Decimal = Decimal("0.04"),
    unpriced_at: Mapping[str, Decimal] = UNPRICED_AT,
) -> SampleInvoice:
    """Bill a statement's usage as Azure would, plus ``bypass_share`` more tokens that skipped APIM.

    Usage our rate card left unpriced is billed at ``unpriced_at`` (meter → price per 1M), as Azure
    bills it whatever our rate card says.
    """
    priced: dict[tuple[str, str, str], dict[Decimal, int]] = defaultdict(lambda: defaultdict(int))
    unpriced: dict[tuple[str, str, str], int] = defaultdict(int)
    others: list[dict[str, str]] = []
    for row in csv.DictReader(io.StringIO(focus_csv.decode("utf-8"))):
        if row.get("x_Meter") in OTHER_DIRECTIONS and row.get("ListUnitPrice"):
            others.append(row)
        if row.get("x_Meter") not in DIRECTIONS:
            continue
        key = (row["x_Model"], row["x_DeploymentType"], row["x_Meter"])
        if row.get("ListUnitPrice"):
            priced[key][Decimal(row["ListUnitPrice"])] += int(row["x_Tokens"])
        elif row["x_Meter"] in unpriced_at:
            unpriced[key] += int(row["x_Tokens"])
    rows: list[dict[str, str]] = []
    bypass_tokens, bypass_cost, price_gap, unpriced_cost = 0, Decimal(0), Decimal(0), Decimal(0)
    for day, key in enumerate(sorted(set(priced) | set(unpriced))):
        model, kind, meter = key
        prices = priced.get(key, {})
        list_price = max(prices) if prices else unpriced_at[meter]
        used = sum(prices.values()) + unpriced.get(key, 0)
        price_gap += sum(
            ((list_price - price) * count / MILLION for price, count in prices.items()), Decimal(0)
        )
        unpriced_cost += list_price * unpriced.get(key, 0) / MILLION
        if (model, kind) == (bypass_model, bypass_type):
            extra = int((Decimal(used) * bypass_share).to_integral_value())
            used += extra
            bypass_tokens += extra
            bypass_cost += extra * list_price / MILLION
        rows.append(
            cost_row(
                month,
                meter_name(model, kind, meter),
                quantity=used / MILLION,
                unit_price=list_price,
                day=f"{day % 28 + 1:02d}",
            )
        )
    for day, row in enumerate(others):
        unit = row["PricingUnit"]
        rows.append(
            cost_row(
                month,
                meter_name(row["x_Model"], row["x_DeploymentType"], row["x_Meter"]),
                quantity=Decimal(row["PricingQuantity"]),
                unit_price=Decimal(row["ListUnitPrice"]),
                unit=unit,
                block="1000000" if unit.startswith("1M") else "3600" if unit == "Hours" else "1",
                day=f"{day % 28 + 1:02d}",
            )
        )
    return SampleInvoice(rows, bypass_tokens, bypass_cost, price_gap, unpriced_cost)


def write_export(folder: Path, rows: Sequence[Mapping[str, str]], parts: int = 2) -> list[Path]:
    """The rows as a partitioned, gzipped CSV export (``part_0_0001.csv.gz``, ...), UTF-8 with BOM."""
    folder.mkdir(parents=True, exist_ok=True)
    size = max(1, -(-len(rows) // parts))
    written = []
    for number in range(parts):
        chunk = rows[number * size : (number + 1) * size]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(FOCUS_COST_1_0), lineterminator="\r\n")
        writer.writeheader()
        writer.writerows(chunk)
        path = folder / f"part_{number}_0001.csv.gz"
        path.write_bytes(gzip.compress(buffer.getvalue().encode("utf-8-sig"), mtime=0))
        written.append(path)
    return written
