"""The statement job: publish a new version only when the data changed; the due month waits for grace."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chargeback.core.pricing import DeploymentMap
from chargeback.edges.exportstore import FolderExportStore
from chargeback.edges.kqlrun import LocalKqlRunner
from chargeback.jobs.budgets import load_budgets
from chargeback.jobs.exports import close_due_month, due_month, publish
from chargeback.jobs.rollup import run_rollup
from chargeback.jobs.statement import build_statement
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


def test_close_due_month_publishes_once_then_does_nothing(october_store: Any, tmp_path: Path) -> None:
    """The monthly timer's job publishes the due month with its clock, then returns None while it stands."""
    store = FolderExportStore(tmp_path / "exports")

    def close(now: datetime) -> Any:
        return close_due_month(
            LocalKqlRunner(october_store.connection),
            store,
            now=now,
            grace_hours=48,
            budgets=load_budgets(october_store.config["budgets"]),
            ptu_deployments=DeploymentMap.load(october_store.config["deployments"]).ptu_deployments(),
        )

    assert close(datetime(2026, 11, 2, tzinfo=UTC)).month == "2026-09"  # October still in its grace
    published = close(datetime(2026, 11, 3, 2, 30, tzinfo=UTC))
    assert (published.month, published.version, published.created) == ("2026-10", 1, True)
    manifest = json.loads((tmp_path / "exports" / "chargeback-2026-10.manifest.json").read_text())
    assert manifest["generatedAt"] == "2026-11-03T02:30:00Z"
    assert close(datetime(2026, 11, 4, tzinfo=UTC)) is None
