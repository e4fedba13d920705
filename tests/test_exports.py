"""FOCUS and finance summary exports: columns, invariants, determinism and versioning."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from chargeback.core.pricing import DeploymentMap
from chargeback.edges.kqlrun import LocalKqlRunner
from chargeback.jobs.budgets import load_budgets
from chargeback.jobs.exports import (
    FOCUS_MANDATORY,
    FolderExportStore,
    build_statement,
    due_month,
    publish,
)
from chargeback.jobs.rollup import run_rollup
from tests import monthdata

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


def test_rerun_with_unchanged_data_is_byte_identical(october_store: Any, tmp_path: Path) -> None:
    """Publishing the same month twice writes nothing new: version 1 stands, bytes unchanged."""
    store = FolderExportStore(tmp_path / "exports")
    first = publish(store, statement(october_store), now=datetime(2026, 11, 3, tzinfo=UTC))
    before = {p.name: p.read_bytes() for p in (tmp_path / "exports").iterdir()}
    second = publish(store, statement(october_store), now=datetime(2026, 11, 4, tzinfo=UTC))
    after = {p.name: p.read_bytes() for p in (tmp_path / "exports").iterdir()}
    assert (first.created, second.created, second.version) == (True, False, 1)
    assert before == after
    assert sorted(after) == [
        "chargeback-2026-10.focus.csv",
        "chargeback-2026-10.manifest.json",
        "chargeback-2026-10.summary.csv",
    ]


def test_changed_data_writes_a_new_version_beside_the_old(october_store: Any, tmp_path: Path) -> None:
    """A late event makes version 2 with its manifest; version 1's files are untouched."""
    store = FolderExportStore(tmp_path / "exports")
    publish(store, statement(october_store), now=datetime(2026, 11, 3, tzinfo=UTC))
    v1 = (tmp_path / "exports" / "chargeback-2026-10.summary.csv").read_bytes()
    late = monthdata.month_events(datetime(2026, 10, 30, tzinfo=UTC), count=3, prefix="late")
    monthdata.ingest(october_store, october_store.config, late, tmp_path / "dl")
    second = publish(store, statement(october_store), now=datetime(2026, 11, 5, tzinfo=UTC))
    assert (second.created, second.version) == (True, 2)
    assert (tmp_path / "exports" / "chargeback-2026-10.summary.csv").read_bytes() == v1
    manifest = json.loads((tmp_path / "exports" / "chargeback-2026-10.v2.manifest.json").read_text())
    assert manifest["supersedes"] == "chargeback-2026-10.manifest.json"
    assert manifest["generatedAt"] == "2026-11-05T00:00:00Z"
    assert manifest["rateCardVersions"]
    assert manifest["sourceQuery"] == "chargeback/kql/monthly_rollup.kql"
    v2 = (tmp_path / "exports" / "chargeback-2026-10.v2.focus.csv").read_bytes()
    import hashlib

    assert manifest["files"]["focus.csv"]["sha256"] == hashlib.sha256(v2).hexdigest()
    assert manifest["files"]["focus.csv"]["rows"] == len(rows(v2))


def test_due_month_waits_for_the_grace_period() -> None:
    """On the 1st the previous month is not due before ROLLUP_GRACE_HOURS have passed."""
    first = datetime(2026, 11, 1, 2, 30, tzinfo=UTC)
    assert due_month(first, 48) == "2026-09"
    assert due_month(first + timedelta(days=2), 48) == "2026-10"
    assert due_month(first, 0) == "2026-10"
