"""Budget alerts: written once to ``AOAIChargebackAlerts_CL`` and optionally posted to a webhook.

An alert's ``AlertId`` (``YYYY-MM/subscription/kind/threshold``) makes it fire once:

- locally the alerts table's primary key is AlertId, so ``DuckDBStore.insert`` skips a second one
  (even when two checks race);
- in Azure, Log Analytics has no key, so ``alerts_raised.kql`` lists the month's AlertIds first and
  only new ones are sent through the Logs Ingestion writer (``LogAnalyticsWriter.for_alerts``).

The same ``alerts_raised.kql`` check runs locally too, so both paths are exercised by the tests.

``ALERT_WEBHOOK_URL`` gets one POST per check that raised something: ``{"text": "..."}``, the shape
both Slack and Microsoft Teams incoming webhooks accept. A failed POST is logged, not retried: the
alert itself is already recorded in the table (and an Azure Monitor rule can alert on that table).
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from chargeback.core.pipeline import Row
from chargeback.core.pricing import Deployment
from chargeback.core.schema import ALERTS_TABLE
from chargeback.edges.kqlrun import KqlRunner
from chargeback.jobs.budgets import AlertCandidate, Budget, BudgetCheck, check_budgets
from chargeback.jobs.rollup import DEFAULT_OUTPUT_WEIGHT, month_of, month_window, previous_month, to_text

log = logging.getLogger("chargeback.jobs.alerts")

RAISED_QUERY = "alerts_raised"
WEBHOOK_TIMEOUT = 10.0


class AlertSink(Protocol):
    """Where alert rows go; returns the AlertIds it accepted."""

    def write_alerts(self, rows: Sequence[Row]) -> set[str]:
        """Write alert rows; return the AlertIds written."""
        ...


class StoreAlertSink:
    """The local DuckDB store's alerts table (primary key AlertId)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def write_alerts(self, rows: Sequence[Row]) -> set[str]:
        """Insert; rows whose AlertId exists already are skipped by the key."""
        result = self.store.insert(ALERTS_TABLE, rows)
        if result.failed:
            log.error("alerts table refused %d alert(s): %s", len(result.failed), result.failed[0].detail)
        return {str(key) for key in result.written_keys}


class WriterAlertSink:
    """A usage-writer-shaped sink (``LogAnalyticsWriter.for_alerts``) on the alerts stream."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def write_alerts(self, rows: Sequence[Row]) -> set[str]:
        """Upload; alerts in failed chunks are not counted as raised (the next check retries them)."""
        result = self.writer.write(rows)
        failed = {str(item.row.get("AlertId")) for item in result.failed}
        if failed:
            log.error(
                "could not write %d alert(s) to Log Analytics: %s", len(failed), result.failed[0].detail
            )
        return {str(row["AlertId"]) for row in rows} - failed


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
    now: datetime | None = None,
    webhook_url: str = "",
) -> list[Row]:
    """Write the check's new alerts and post them to the webhook; returns the rows raised now."""
    now = now or datetime.now(UTC)
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
    if webhook_url and raised:
        post_webhook(webhook_url, raised)
    return raised


def webhook_payload(rows: Sequence[Row]) -> dict[str, str]:
    """``{"text": ...}``: one line per alert, accepted by Slack and Teams incoming webhooks."""
    lines = [f"Azure OpenAI chargeback: {len(rows)} new alert(s)"]
    lines += [f"- [{row['AlertKind']}] {row['Message']}" for row in rows]
    return {"text": "\n".join(lines)}


def post_webhook(url: str, rows: Sequence[Row], timeout: float = WEBHOOK_TIMEOUT) -> bool:
    """POST the alerts as JSON; True on a 2xx answer, False (logged) otherwise."""
    body = json.dumps(webhook_payload(rows), ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
    )
    try:
        with urllib.request.urlopen(
            request, timeout=timeout
        ) as response:  # URL from settings (http(s) checked)
            status = int(response.status)
    except (urllib.error.URLError, OSError) as exc:
        log.error("alert webhook failed: %s", exc)
        return False
    if not 200 <= status < 300:
        log.error("alert webhook answered HTTP %s", status)
        return False
    return True


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
    webhook_url: str = "",
) -> tuple[BudgetCheck, list[Row]]:
    """Check a month's budgets as of ``now`` and raise the new alerts."""
    check = check_budgets(runner, budgets, ptu_deployments, month, now, output_weight=output_weight)
    raised = raise_alerts(check, runner, sink, now=now, webhook_url=webhook_url)
    return check, raised
