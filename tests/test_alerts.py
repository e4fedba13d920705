"""The budget-check job: which months a daily check covers, and new alerts announced once."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chargeback.core.pricing import DeploymentMap
from chargeback.edges.alertsinks import StoreAlertSink
from chargeback.edges.kqlrun import LocalKqlRunner
from chargeback.jobs.alerts import budget_check_months, run_budget_check
from chargeback.jobs.budgets import load_budgets

END = datetime(2026, 11, 1, tzinfo=UTC)


def test_last_month_is_checked_until_its_grace_period_and_a_day_are_over():
    """Early in a month the previous one is still checked (late events); after grace + 1 day it is not."""
    assert budget_check_months(datetime(2026, 11, 2, 6, tzinfo=UTC), 48) == ["2026-10", "2026-11"]
    assert budget_check_months(datetime(2026, 11, 3, 23, tzinfo=UTC), 48) == ["2026-10", "2026-11"]
    assert budget_check_months(datetime(2026, 11, 4, tzinfo=UTC), 48) == ["2026-11"]
    assert budget_check_months(datetime(2026, 11, 1, 12, tzinfo=UTC), 0) == ["2026-10", "2026-11"]
    assert budget_check_months(datetime(2026, 11, 20, tzinfo=UTC), 48) == ["2026-11"]


def test_the_job_announces_new_alerts_once_through_the_notifier(october_store: Any):
    """run_budget_check writes new alerts, calls notify with them once, and stays quiet on a rerun."""
    announced: list[list[str]] = []

    def notify(rows: Any) -> None:
        announced.append([row["AlertId"] for row in rows])

    def run() -> list[dict[str, Any]]:
        return run_budget_check(
            LocalKqlRunner(october_store.connection),
            StoreAlertSink(october_store),
            "2026-10",
            END,
            budgets=load_budgets(october_store.config["budgets"]),
            ptu_deployments=DeploymentMap.load(october_store.config["deployments"]).ptu_deployments(),
            notify=notify,
        )[1]

    raised = run()
    assert raised
    assert announced == [[row["AlertId"] for row in raised]]
    assert run() == []
    assert len(announced) == 1


def test_every_budget_is_recorded_once_quietly_and_again_when_it_changes(october_store: Any):
    """Each budget checked becomes one quiet "budget" row (none announced); a changed budget a new one."""
    from dataclasses import replace
    from decimal import Decimal

    from chargeback.core.schema import ALERTS_TABLE
    from chargeback.jobs.budgets import parse_budgets

    announced: list[str] = []
    budgets = load_budgets(october_store.config["budgets"])
    budgets.update(
        parse_budgets("subscription_id,cost_center,owner,monthly_budget,currency\nidle,CC-IDLE,o,5,USD\n")
    )

    def run(current: Any) -> None:
        run_budget_check(
            LocalKqlRunner(october_store.connection),
            StoreAlertSink(october_store),
            "2026-10",
            END,
            budgets=current,
            ptu_deployments=DeploymentMap.load(october_store.config["deployments"]).ptu_deployments(),
            notify=lambda rows: announced.extend(row["AlertKind"] for row in rows),
        )

    def budget_rows() -> list[tuple[str, str, float]]:
        rows: list[tuple[str, str, float]] = october_store.connection.execute(
            f'SELECT "SubscriptionId", "CostCenter", "Budget" FROM "{ALERTS_TABLE}" '
            "WHERE \"AlertKind\" = 'budget' ORDER BY 1, 3"
        ).fetchall()
        return rows

    run(budgets)
    first = budget_rows()
    assert sorted({row[0] for row in first}) == sorted(budgets)
    assert ("idle", "CC-IDLE", 5.0) in first
    assert "budget" not in announced
    run(budgets)
    assert budget_rows() == first
    budgets["idle"] = replace(budgets["idle"], monthly_budget=Decimal(7))
    run(budgets)
    assert [row for row in budget_rows() if row[0] == "idle"] == [
        ("idle", "CC-IDLE", 5.0),
        ("idle", "CC-IDLE", 7.0),
    ]
