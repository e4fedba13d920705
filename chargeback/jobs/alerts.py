"""The budget-check job: alerts written once to ``AOAIChargebackAlerts_CL``, then announced.

An alert's ``AlertId`` (``YYYY-MM/subscription/kind/threshold``) makes it fire once:

- locally the alerts table's primary key is AlertId, so ``DuckDBStore.insert`` skips a second one
  (even when two checks race);
- in Azure, Log Analytics has no key, so ``alerts_raised.kql`` lists the month's AlertIds first and
  only new ones are sent through the Logs Ingestion writer on the alerts stream.

The same ``alerts_raised.kql`` check runs locally too, so both paths are exercised by the tests.

Beside the alerts, each check records the budgets it checked as ``AlertKind`` ``budget`` rows (one
per subscription, month and budget content: ``YYYY-MM/subscription/budget/<digest>``), written
through the same sink and never announced, so that the workbook's budget burn knows every budget,
also one that no alert has fired for yet (``kql/workbook/budget_burn.kql``).

When the Function refuses its configuration (the shipped example files in Azure, see
``wiring.resolve_config``), ``raise_config_alert`` writes one ``config-refused`` alert a day
(``YYYY-MM-DD/config/config-refused``) through the same sink and notifier, not one per batch.

The job is handed its edges: the KQL runner, the alert sink (``edges.alertsinks``), the budgets, the
clock (``now``) and ``notify``, called once with the alerts a check raised (``wiring`` passes the
ALERT_WEBHOOK_URL poster of ``edges.webhook`` when one is set).
"""

from __future__ import annotations

import hashlib
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


BUDGET_KIND = "budget"


def budget_record_id(month: str, budget: Budget) -> str:
    """``YYYY-MM/subscription/budget/<digest>``: a changed budget, cost center or owner is a new row."""
    content = "\x1f".join(
        (
            budget.subscription_name,
            budget.cost_center,
            budget.owner,
            str(budget.monthly_budget),
            budget.currency,
        )
    )
    digest = hashlib.sha256(content.encode("utf-8")).hexdigest()[:16]
    return f"{month}/{budget.subscription_id}/{BUDGET_KIND}/{digest}"


def budget_rows(check: BudgetCheck, budgets: Mapping[str, Budget], now: datetime) -> list[Row]:
    """One ``budget`` row per budget the check compared (the spend and forecast it saw then)."""
    seen = {spend.subscription_id: spend for spend in check.spends if spend.budget is not None}
    rows: list[Row] = []
    for subscription_id in sorted(budgets):
        budget = budgets[subscription_id]
        spend = seen.get(subscription_id)
        rows.append(
            {
                "TimeGenerated": now.astimezone(UTC),
                "AlertId": budget_record_id(check.month, budget),
                "Month": check.month,
                "SubscriptionId": subscription_id,
                "SubscriptionName": budget.subscription_name or (spend.subscription_name if spend else ""),
                "CostCenter": budget.cost_center,
                "Owner": budget.owner,
                "AlertKind": BUDGET_KIND,
                "ThresholdPct": Decimal(0),
                "Budget": budget.monthly_budget,
                "Spend": spend.spend if spend else None,
                "Forecast": spend.forecast if spend else None,
                "Currency": budget.currency,
                "Message": f"budget of {subscription_id} in {check.month}: "
                f"{budget.monthly_budget.normalize():f} {budget.currency}, "
                f"cost center {budget.cost_center}, owner {budget.owner}",
            }
        )
    return rows


def record_budgets(
    check: BudgetCheck, budgets: Mapping[str, Budget], runner: KqlRunner, sink: AlertSink, *, now: datetime
) -> list[Row]:
    """Write the ``budget`` rows not yet in the alerts table (quietly); returns the rows written now."""
    rows = budget_rows(check, budgets, now)
    if not rows:
        return []
    known = already_raised(runner, check.month, now)
    new = [row for row in rows if row["AlertId"] not in known]
    if not new:
        return []
    written = sink.write_alerts(new)
    return [row for row in new if row["AlertId"] in written]


CONFIG_KIND = "config-refused"


def config_alert_id(now: datetime) -> str:
    """``YYYY-MM-DD/config/refused``: a refused configuration is announced once per day."""
    return f"{now.astimezone(UTC):%Y-%m-%d}/config/{CONFIG_KIND}"


def raise_config_alert(
    detail: str,
    runner: KqlRunner,
    sink: AlertSink,
    *,
    now: datetime,
    notify: Notify | None = None,
) -> bool:
    """The Function refused its configuration: one ``config-refused`` alert a day, announced once.

    Returns True once the day's alert is recorded (now or by an earlier batch), False when the sink
    did not take it (the next refused batch tries again).
    """
    alert = config_alert_id(now)
    month = month_of(now)
    if alert in already_raised(runner, month, now):
        return True
    row: Row = {
        "TimeGenerated": now.astimezone(UTC),
        "AlertId": alert,
        "Month": month,
        "SubscriptionId": "",
        "SubscriptionName": "",
        "CostCenter": "",
        "Owner": "",
        "AlertKind": CONFIG_KIND,
        "ThresholdPct": Decimal(0),
        "Budget": None,
        "Spend": None,
        "Forecast": None,
        "Currency": "",
        "Message": f"chargeback prices nothing: {detail}",
    }
    if alert not in sink.write_alerts([row]):
        return False
    log.error("config alert %s: %s", alert, row["Message"])
    if notify is not None:
        notify([row])
    return True


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
    record_budgets(check, budgets, runner, sink, now=now)
    return check, raised
