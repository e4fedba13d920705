"""The statement job: publish a new version only when the data changed; the due month waits for grace."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from chargeback.core.pricing import DeploymentMap
from chargeback.edges.exportstore import FolderExportStore
from chargeback.edges.kqlrun import LocalKqlRunner
from chargeback.jobs.budgets import load_budgets
from chargeback.jobs.exports import close_due_month, due_month, publish
from chargeback.jobs.rollup import largest_remainder, run_rollup
from chargeback.jobs.statement import build_statement
from tests import monthdata
from tests.test_statement import rows, statement


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
    changes = manifest["changes"]
    v1_manifest = json.loads((tmp_path / "exports" / "chargeback-2026-10.manifest.json").read_text())
    assert changes["rows"]["focus.csv"] == {
        "from": v1_manifest["files"]["focus.csv"]["rows"],
        "to": manifest["files"]["focus.csv"]["rows"],
    }
    billed = changes["totals"]["USD"]["focusBilledCost"]
    assert billed["from"] == v1_manifest["totals"]["USD"]["focusBilledCost"]
    assert billed["to"] == manifest["totals"]["USD"]["focusBilledCost"]
    assert Decimal(billed["delta"]) == Decimal(billed["to"]) - Decimal(billed["from"]) > 0
    assert set(changes["totals"]["USD"]) == {"focusBilledCost", "summaryChargedCost"}
    assert changes["rateCardVersions"] == {
        "from": v1_manifest["rateCardVersions"],
        "to": manifest["rateCardVersions"],
    }


def test_summary_focus_and_manifest_totals_agree_to_the_cent_with_an_idle_ptu(
    october_store: Any, tmp_path: Path
) -> None:
    """With an idle PTU deployment: its cost is a summary line of its own, the summary lines sum to the
    FOCUS total rounded to the cent, and the manifest records both totals, equal."""
    rollup = run_rollup(LocalKqlRunner(october_store.connection), "2026-10")
    ptu = DeploymentMap.load(october_store.config["deployments"]).ptu_deployments()
    idle = dataclasses.replace(ptu[0], deployment="ptu-idle", ptu_monthly_cost=Decimal("1234.56"))
    result = build_statement(rollup, load_budgets(october_store.config["budgets"]), [*ptu, idle])
    focus, summary = rows(result.focus), rows(result.summary)
    focus_total = sum((Decimal(r["BilledCost"]) for r in focus), Decimal(0))
    charged = sum((Decimal(r["ChargedCost"]) for r in summary), Decimal(0))
    assert charged == focus_total.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert sum(Decimal(r["TotalCost"]) + Decimal(r["AllocatedCost"]) for r in summary) == charged
    unallocated = [r for r in summary if r["SubscriptionId"] == "(unallocated)"]
    assert [(r["ChargedCost"], r["AllocatedCost"]) for r in unallocated] == [("1234.56", "1234.56")]
    assert "ptu-idle" in unallocated[0]["SubscriptionName"]
    totals = result.totals["USD"]
    assert totals["summaryChargedCost"] == totals["focusBilledCostRounded"] == f"{charged:f}"
    assert totals["focusBilledCost"] == f"{focus_total.quantize(Decimal('0.000001')):f}"
    assert totals["summaryUnallocatedCost"] == "1234.56"
    store = FolderExportStore(tmp_path / "exports")
    publish(store, result, now=datetime(2026, 11, 3, tzinfo=UTC))
    manifest = json.loads((tmp_path / "exports" / "chargeback-2026-10.manifest.json").read_text())
    assert manifest["totals"]["USD"] == totals


def test_per_team_cents_are_split_by_largest_remainder() -> None:
    """Lines rounded one by one would sum to 0.02 here; largest remainder makes them sum to the 0.03 total."""
    weights = {"a": Decimal("0.014"), "b": Decimal("0.014"), "c": Decimal("0.004")}
    total = sum(weights.values(), Decimal(0)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    assert sum(w.quantize(Decimal("0.01")) for w in weights.values()) == Decimal("0.02")
    split = largest_remainder(total, weights)
    assert sum(split.values()) == total == Decimal("0.03")
    assert split == {"a": Decimal("0.01"), "b": Decimal("0.01"), "c": Decimal("0.01")}


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

    assert close(datetime(2026, 11, 2, tzinfo=UTC)) is None  # October in its grace; September has no usage
    assert not (tmp_path / "exports").exists()
    published = close(datetime(2026, 11, 3, 2, 30, tzinfo=UTC))
    assert (published.month, published.version, published.created) == ("2026-10", 1, True)
    manifest = json.loads((tmp_path / "exports" / "chargeback-2026-10.manifest.json").read_text())
    assert manifest["generatedAt"] == "2026-11-03T02:30:00Z"
    assert close(datetime(2026, 11, 4, tzinfo=UTC)) is None


def test_a_reader_never_supersedes_a_published_statement(october_store: Any, tmp_path: Path) -> None:
    """publish(new_version=False), as report and reconcile call it, refuses a differing statement."""
    import pytest

    from chargeback.errors import StatementError

    store = FolderExportStore(tmp_path / "exports")
    publish(store, statement(october_store), now=datetime(2026, 11, 3, tzinfo=UTC))
    same = publish(store, statement(october_store), new_version=False)
    assert (same.version, same.created) == (1, False)
    late = monthdata.month_events(datetime(2026, 10, 30, tzinfo=UTC), count=3, prefix="late")
    monthdata.ingest(october_store, october_store.config, late, tmp_path / "dl")
    with pytest.raises(StatementError, match="chargeback rollup --month 2026-10"):
        publish(store, statement(october_store), new_version=False)
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == [
        "chargeback-2026-10.focus.csv",
        "chargeback-2026-10.manifest.json",
        "chargeback-2026-10.summary.csv",
    ]
