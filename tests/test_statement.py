"""Statement rendering: FOCUS 1.2 columns filled, costs exact, PTU allocated, summary totals right."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from typing import Any

from chargeback.core.pricing import DeploymentMap
from chargeback.edges.kqlrun import LocalKqlRunner
from chargeback.jobs.budgets import load_budgets
from chargeback.jobs.rollup import run_rollup
from chargeback.jobs.statement import FOCUS_MANDATORY, build_statement

SUMMARY_HEAD = (
    "SubscriptionId,SubscriptionName,CostCenter,Owner,Requests,PromptTokens,CachedTokens,CompletionTokens,"
    "ReasoningTokens,TotalCost,AllocatedCost,Currency,Budget,BudgetUsedPct"
)
NULLABLE = {"ChargeClass", "ChargeDescription", "BillingAccountName", "PricingQuantity", "PricingUnit"}


def statement(store: Any) -> Any:
    """The October statement of a store, with its budgets and PTU deployment."""
    rollup = run_rollup(LocalKqlRunner(store.connection), "2026-10")
    return build_statement(
        rollup,
        load_budgets(store.config["budgets"]),
        DeploymentMap.load(store.config["deployments"]).ptu_deployments(),
    )


def rows(data: bytes) -> list[dict[str, str]]:
    """CSV bytes as dictionaries."""
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def test_focus_has_every_mandatory_column_filled(october_store: Any) -> None:
    """All 21 FOCUS 1.2 mandatory columns are present, and the non-nullable ones are never empty."""
    focus = rows(statement(october_store).focus)
    assert focus
    assert set(FOCUS_MANDATORY) <= set(focus[0])
    for row in focus:
        for column in set(FOCUS_MANDATORY) - NULLABLE:
            assert row[column], column
        assert all(name in FOCUS_MANDATORY or not name[0].islower() or name.startswith("x_") for name in row)


def test_focus_costs_are_quantity_times_unit_price(october_store: Any) -> None:
    """Billed = effective = list = contracted cost = PricingQuantity x ListUnitPrice to 6 decimals."""
    for row in rows(statement(october_store).focus):
        costs = {row["BilledCost"], row["EffectiveCost"], row["ListCost"], row["ContractedCost"]}
        assert len(costs) == 1
        if row["ListUnitPrice"]:
            product = Decimal(row["PricingQuantity"]) * Decimal(row["ListUnitPrice"])
            assert product.quantize(Decimal("0.000001")) == Decimal(row["BilledCost"])
        else:
            assert row["x_PricingStatus"] == "unpriced"
            assert Decimal(row["BilledCost"]) == 0
        assert (row["ChargePeriodStart"], row["ChargePeriodEnd"]) == (
            "2026-10-01T00:00:00Z",
            "2026-11-01T00:00:00Z",
        )


def test_focus_usage_rows_are_one_per_subscription_model_type_meter_and_price(october_store: Any) -> None:
    """No two usage rows share subscription, model, deployment type, meter, status and price."""
    usage = [r for r in rows(statement(october_store).focus) if r["x_Meter"] != "ptu-allocation"]
    keys = [
        (
            r["SubAccountId"],
            r["x_Model"],
            r["x_DeploymentType"],
            r["x_Meter"],
            r["x_PricingStatus"],
            r["ListUnitPrice"],
        )
        for r in usage
    ]
    assert len(keys) == len(set(keys))
    assert {r["x_Meter"] for r in usage} == {"input", "cached-input", "output"}
    for row in usage:
        mix = sum(
            int(row[f"x_Requests{name}"]) for name in ("Reported", "StreamUsage", "Recounted", "Estimated")
        )
        assert mix == int(row["x_Requests"])


def test_ptu_allocation_is_in_both_csvs_and_sums_to_the_ptu_cost(october_store: Any) -> None:
    """FOCUS allocation rows and the summary's AllocatedCost both add up to the 300.00 PTU cost."""
    result = statement(october_store)
    allocation = [r for r in rows(result.focus) if r["x_Meter"] == "ptu-allocation"]
    assert sum(Decimal(r["BilledCost"]) for r in allocation) == Decimal("300")
    assert sum(Decimal(r["AllocatedCost"]) for r in rows(result.summary)) == Decimal("300")


def test_summary_columns_and_totals(october_store: Any) -> None:
    """The summary starts with the finance columns, and its costs match the FOCUS rows to the cent."""
    result = statement(october_store)
    assert result.summary.decode().startswith(SUMMARY_HEAD + ",")
    summary = {row["SubscriptionId"]: row for row in rows(result.summary)}
    assert set(summary) == {"team-a", "team-b", "team-c", "team-z"}
    focus = rows(result.focus)
    for sub, row in summary.items():
        billed = sum(Decimal(r["BilledCost"]) for r in focus if r["SubAccountId"] == sub)
        charged = Decimal(row["TotalCost"]) + Decimal(row["AllocatedCost"])
        assert abs(billed - charged) <= Decimal("0.01")
        if row["Budget"]:
            pct = (charged * 100 / Decimal(row["Budget"])).quantize(Decimal("0.01"))
            assert Decimal(row["BudgetUsedPct"]) == pct
    assert summary["team-z"]["Requests"] == "0"
