"""The budget-check job: alerts written once to ``AOAIChargebackAlerts_CL``, then announced.

An alert's ``AlertId`` (``YYYY-MM/subscription/kind/threshold``) makes it fire once:

- locally the alerts table's primary key is AlertId, so ``DuckDBStore.insert`` skips a second one
  (even when two checks race);
- in Azure, Log Analytics has no key, so ``alerts_raised.kql`` lists the month's AlertIds first and
  only new ones are sent through the Logs Ingestion writer on the alerts stream.

The same ``alerts_raised.kql`` check runs locally too, so both paths are exercised by the tests.

The job is handed its edges: the KQL runner, the alert sink (``edges.alertsinks``), the budgets, the
clock (``now``) and ``notify``, called once with the alerts a check raised (``wiring`` passes the
ALERT_WEBHOOK_URL poster of ``edges.webhook`` when one is set).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from chargeback.core.pipeline import Row
from chargeback.core.pricing import Deployment
from chargeback.edges.kqlrun import KqlRunner
from chargeback.edges.sinks import AlertSink
from chargeback.jobs.budgets import AlertCandidate, Budget, BudgetCheck, check_budgets
from chargeback.jobs.rollup import DEFAULT_OUTPUT_WEIGHT, month_of, month_window, previous_month, to_text

log = logging.getLogger("chargeback.jobs.alerts")

RAISED_QUERY = "alerts_raised"
Notify = Callable[[Sequence[Row]], object]


def alert_row(candidate: AlertCandidate, now: datetime) -> Row:
    """The ``AOAIChargebackAlerts_CL`` row of an alert."""
    spend = candidate.spend
    budget = spend.budget
    return {
        "TimeGenerated": now.astimezone(UTC),
        "AlertId": candidate.alert_id,
        "Month": candidate.month,
        "SubscriptionId": spend.subscription_id,
        "SubscriptionName": spend.subscription_name,
        "CostCenter": budget.cost_center if budget else "",
        "Owner": budget.owner if budget else "",
        "AlertKind": candidate.kind,
        "ThresholdPct": candidate.threshold,
        "Budget": budget.monthly_budget if budget else None,
        "Spend": spend.spend,
        "Forecast": spend.forecast,
        "Currency": spend.currency,
        "Message": candidate.message,
    }


def already_raised(runner: KqlRunner, month: str, now: datetime) -> set[str]:
    """AlertIds already in the alerts table for the month (``alerts_raised.kql``)."""
    start, end = month_window(month)
    window = (start - timedelta(days=1), max(now.astimezone(UTC), end) + timedelta(days=1))
    frame = runner.run(RAISED_QUERY, {"AlertMonth": month}, window=window)
    return {to_text(value) for value in frame["AlertId"].tolist()}


def raise_alerts(
    check: BudgetCheck,
    runner: KqlRunner,
    sink: AlertSink,
    *,
    now: datetime,
    notify: Notify | None = None,
) -> list[Row]:
    """Write the check's new alerts and announce them through ``notify``; returns the rows raised now."""
    if not check.candidates:
        return []
    known = already_raised(runner, check.month, now)
    rows = [alert_row(candidate, now) for candidate in check.candidates if candidate.alert_id not in known]
    if not rows:
        return []
    written = sink.write_alerts(rows)
    raised = [row for row in rows if row["AlertId"] in written]
    for row in raised:
        log.warning("budget alert %s: %s", row["AlertId"], row["Message"])
    if notify is not None and raised:
        notify(raised)
    return raised


def budget_check_months(now: datetime, grace_hours: int) -> list[str]:
    """Months the daily check looks at: this month, and last month until its grace period ends."""
    months = [month_of(now)]
    last = previous_month(months[0])
    if now < month_window(last)[1] + timedelta(hours=grace_hours, days=1):
        months.insert(0, last)
    return months


def run_budget_check(
    runner: KqlRunner,
    sink: AlertSink,
    month: str,
    now: datetime,
    *,
    budgets: Mapping[str, Budget],
    ptu_deployments: Sequence[Deployment],
    output_weight: Decimal = DEFAULT_OUTPUT_WEIGHT,
    notify: Notify | None = None,
) -> tuple[BudgetCheck, list[Row]]:
    """Check a month's budgets as of ``now`` and raise the new alerts."""
    check = check_budgets(runner, budgets, ptu_deployments, month, now, output_weight=output_weight)
    raised = raise_alerts(check, runner, sink, now=now, notify=notify)
    return check, raised
