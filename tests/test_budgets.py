"""Budgets, the run-rate forecast and alerts that fire once (locally and through Log Analytics)."""

from __future__ import annotations

import functools
import json
import tempfile
import threading
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from chargeback.core.pricing import DeploymentMap
from chargeback.core.schema import ALERTS_TABLE
from chargeback.core.textsafe import chat_text
from chargeback.edges.alertsinks import StoreAlertSink, WriterAlertSink
from chargeback.edges.kqlrun import LocalKqlRunner
from chargeback.edges.webhook import post_webhook
from chargeback.errors import ConfigError
from chargeback.jobs.alerts import raise_alerts
from chargeback.jobs.budgets import (
    check_budgets,
    forecast_month_end,
    load_budgets,
    parse_budgets,
)
from chargeback.settings import default_config_path

START, END = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)


def check(store: Any, as_of: datetime) -> Any:
    """A budget check of October 2026 on the seeded store."""
    return check_budgets(
        LocalKqlRunner(store.connection),
        load_budgets(store.config["budgets"]),
        DeploymentMap.load(store.config["deployments"]).ptu_deployments(),
        "2026-10",
        as_of,
    )


def alert_ids(store: Any) -> list[str]:
    """AlertIds in the store's alerts table."""
    return [
        r[0]
        for r in store.connection.execute(f'SELECT "AlertId" FROM "{ALERTS_TABLE}" ORDER BY 1').fetchall()
    ]


def test_forecast_is_the_straight_line_run_rate() -> None:
    """10 spent after 10 of 31 days forecasts 31; after the month the forecast is the spend."""
    assert forecast_month_end(Decimal(10), START, END, datetime(2026, 10, 11, tzinfo=UTC)) == Decimal(31)
    assert forecast_month_end(Decimal("7.5"), START, END, datetime(2026, 10, 16, 12, tzinfo=UTC)) == Decimal(
        15
    )
    assert forecast_month_end(Decimal(10), START, END, datetime(2026, 12, 5, tzinfo=UTC)) == Decimal(10)
    assert forecast_month_end(Decimal(10), START, END, START) == Decimal(0)


def test_budgets_file_parses_with_default_thresholds(october_store: Any) -> None:
    """A blank thresholds cell means 50, 80 and 100 %."""
    budgets = load_budgets(october_store.config["budgets"])
    assert budgets["team-a"].thresholds == (Decimal(50), Decimal(80), Decimal(100))
    assert budgets["team-c"].thresholds == (Decimal(50), Decimal(100))


def test_a_bad_budgets_file_lists_every_error() -> None:
    """Negative budgets and bad thresholds are configuration errors, each with its line."""
    text = (
        "subscription_id,cost_center,owner,monthly_budget,currency,thresholds\na,c,o,-1,USD,\nb,c,o,5,USD,x\n"
    )
    with pytest.raises(ConfigError, match=r"line 2.*\n.*line 3"):
        parse_budgets(text)


def test_shipped_budgets_cover_the_demo_subscriptions() -> None:
    """The example budgets.csv lists exactly the demo's teams."""
    from chargeback.demo import TEAMS

    assert set(load_budgets(default_config_path("budgets.csv"))) == {team.subscription_id for team in TEAMS}


def test_each_threshold_fires_once(october_store: Any) -> None:
    """Checking the month twice raises every alert the first time and nothing the second."""
    runner, sink = LocalKqlRunner(october_store.connection), StoreAlertSink(october_store)
    first = raise_alerts(check(october_store, END), runner, sink, now=END)
    ids = [row["AlertId"] for row in first]
    assert "2026-10/team-a/actual/50" in ids
    assert "2026-10/team-a/actual/100" in ids
    assert "2026-10/team-a/unpriced/0" in ids
    assert not any("team-b/actual" in i for i in ids)
    assert raise_alerts(check(october_store, END), runner, sink, now=END) == []
    assert alert_ids(october_store) == sorted(ids)


def test_forecast_alert_fires_before_the_actual_breach(october_store: Any) -> None:
    """Mid-month, a subscription on course to exceed its budget gets forecast alerts, not actual ones."""
    early = check(october_store, datetime(2026, 10, 9, tzinfo=UTC))
    team_a = next(s for s in early.spends if s.subscription_id == "team-a")
    kinds = {(c.kind, c.threshold) for c in early.candidates if c.spend is team_a}
    for kind, threshold in kinds:
        limit = team_a.budget.monthly_budget * threshold / 100
        assert (team_a.spend >= limit) == (kind == "actual")
        assert kind != "forecast" or team_a.forecast >= limit
    assert team_a.forecast == forecast_month_end(team_a.spend, START, END, datetime(2026, 10, 9, tzinfo=UTC))


def test_no_forecast_alert_in_the_first_days(october_store: Any) -> None:
    """A run rate from the first hours of the month raises no forecast alert."""
    assert not [
        c for c in check(october_store, datetime(2026, 10, 2, tzinfo=UTC)).candidates if c.kind == "forecast"
    ]


def test_ptu_accrues_into_month_to_date_spend(october_store: Any) -> None:
    """At month end the subscriptions' PTU shares add up to the deployment's monthly cost."""
    result = check(october_store, END)
    assert sum(s.ptu_spend for s in result.spends) == Decimal("300.00")


def test_alerts_fire_once_through_log_analytics(october_store: Any, log_analytics: Any) -> None:
    """In Azure (no primary key) the alerts already in the table are read by KQL and not sent again."""
    from azure.monitor.query import LogsQueryClient

    from chargeback.edges.azure_clients import LocalStandInCredential
    from chargeback.edges.kqlrun import LogAnalyticsKqlRunner
    from tests.conftest import la_writer

    runner = LogAnalyticsKqlRunner(
        LogsQueryClient(LocalStandInCredential(), endpoint=log_analytics.endpoint), "ws", enforce_https=False
    )
    sink = WriterAlertSink(la_writer(log_analytics, "Custom-AOAIChargebackAlerts_CL"))
    first = raise_alerts(check(october_store, END), runner, sink, now=END)
    again = raise_alerts(check(october_store, END), runner, sink, now=END)
    assert first
    assert again == []
    stored = log_analytics.sql(f'SELECT count(*), count(DISTINCT "AlertId") FROM "{ALERTS_TABLE}"')
    assert stored == [(len(first), len(first))]


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []  # noqa: RUF012  # collected by the test

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append({"type": self.headers["Content-Type"], "json": json.loads(body)})
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_webhook_gets_one_text_message_per_check(october_store: Any) -> None:
    """New alerts are POSTed as {"text": ...} (Slack and Teams shape) to a real local HTTP server."""
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received.clear()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        runner, sink = LocalKqlRunner(october_store.connection), StoreAlertSink(october_store)
        notify = functools.partial(post_webhook, url)
        raised = raise_alerts(check(october_store, END), runner, sink, now=END, notify=notify)
        raise_alerts(check(october_store, END), runner, sink, now=END, notify=notify)
        assert not post_webhook("http://127.0.0.1:9/closed", raised, timeout=1)
    finally:
        server.shutdown()
        server.server_close()
    assert len(_Hook.received) == 1
    message = _Hook.received[0]
    assert message["type"].startswith("application/json")
    assert set(message["json"]) == {"text"}
    assert all(chat_text(row["Message"]) in message["json"]["text"] for row in raised)


def test_a_subscription_billed_mostly_on_estimates_raises_an_estimated_alert(pricer) -> None:
    """Cut bodies charged their upper bound: a subscription with >= 10 % of its spend estimated is flagged."""
    from chargeback.core.pipeline import Message, Source
    from chargeback.edges.deadletter import LocalDeadLetterStore
    from chargeback.edges.store import DuckDBStore
    from chargeback.jobs.ingest import ingest_batch
    from tests.conftest import make_event, to_body

    cut = json.dumps({"messages": [{"role": "user", "content": "word " * 60_000}]})[:190_000]
    events = [make_event(subscriptionId="team-x", usage=None, truncated=True, requestBody=cut)]
    events += [make_event(subscriptionId="team-x") for _ in range(3)]
    events += [make_event(subscriptionId="team-y") for _ in range(3)]
    with DuckDBStore() as store, tempfile.TemporaryDirectory() as folder:
        ingest_batch(
            [Message(to_body(e), Source("file")) for e in events],
            pricer=pricer,
            writer=store,
            deadletter=LocalDeadLetterStore(folder),
        )
        result = check_budgets(LocalKqlRunner(store.connection), {}, [], "2026-10", END)
    estimated = [c for c in result.candidates if c.kind == "estimated"]
    assert [c.spend.subscription_id for c in estimated] == ["team-x"]
    assert estimated[0].alert_id == "2026-10/team-x/estimated/10"
    assert "estimated counts" in estimated[0].message
