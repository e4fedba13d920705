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
