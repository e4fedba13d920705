"""Azure Cost Management FOCUS cost exports for the reconciliation tests, in Microsoft's documented columns.

The columns are those of the "FocusCost 1.0" dataset as Microsoft documents it (learn.microsoft.com,
"FOCUS cost and usage details file schema", cost-management-billing/dataset-schema/
cost-usage-details-focus; the same list in the FinOps toolkit's FOCUS metadata): the FOCUS 1.0
columns, then Microsoft's ``x_`` extensions. Values follow what such exports hold for Azure OpenAI:
``ServiceName`` "Azure OpenAI"/"Foundry Models", ``x_SkuMeterCategory`` "Foundry Models",
``x_SkuMeterSubcategory`` "Azure OpenAI", meter names with Azure's abbreviations
(``gpt-4o-mini-0718-Inp-glbl``), ``PricingUnit`` "1M Tokens" with ``PricingQuantity`` in blocks of
1M tokens, or in tokens where an export says so.
"""

from __future__ import annotations

import csv
import gzip
import io
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path

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


def focus_row(
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


def write_csv(path: Path, rows: Sequence[Mapping[str, str]], *, compress: bool = False) -> Path:
    """An export file (``compress`` writes gzip, as Cost Management's compressed CSV option does)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(FOCUS_COST_1_0), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    data = buffer.getvalue().encode("utf-8-sig")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_parquet(path: Path, rows: Sequence[Mapping[str, str]]) -> Path:
    """The same rows as a Parquet export (money and quantities as decimals, like the real files)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    numeric = {
        "BilledCost",
        "ConsumedQuantity",
        "ContractedCost",
        "ContractedUnitPrice",
        "EffectiveCost",
        "ListCost",
        "ListUnitPrice",
        "PricingQuantity",
        "x_BilledCostInUsd",
        "x_BilledUnitPrice",
    }
    columns = {}
    for name in FOCUS_COST_1_0:
        values = [row.get(name, "") for row in rows]
        if name in numeric:
            columns[name] = pa.array([Decimal(v) if v else None for v in values], type=pa.decimal128(38, 18))
        else:
            columns[name] = pa.array([v or None for v in values], type=pa.string())
    pq.write_table(pa.table(columns), path)
    return path
