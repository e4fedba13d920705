"""Alert sinks: an alert counts as raised only once the alerts table (or stream) recorded it."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from chargeback.core.schema import ALERTS_TABLE
from chargeback.edges.alertsinks import StoreAlertSink, WriterAlertSink
from chargeback.edges.store import DuckDBStore
from chargeback.errors import Reason
from tests.conftest import la_writer

NOW = datetime(2026, 10, 20, 6, tzinfo=UTC)


def alert(alert_id: str) -> dict[str, Any]:
    """An AOAIChargebackAlerts_CL row."""
    return {
        "TimeGenerated": NOW,
        "AlertId": alert_id,
        "Month": "2026-10",
        "SubscriptionId": "team-a",
        "SubscriptionName": "Team A",
        "CostCenter": "CC-1",
        "Owner": "a@example.com",
        "AlertKind": "actual",
        "ThresholdPct": Decimal(50),
        "Budget": Decimal(100),
        "Spend": Decimal(60),
        "Forecast": Decimal(90),
        "Currency": "USD",
        "Message": "Team A has spent 60.00 USD",
    }


def test_the_store_accepts_new_alert_ids_and_skips_known_ones():
    """A second write of the same AlertId is skipped by the key and not reported as written."""
    with DuckDBStore() as store:
        sink = StoreAlertSink(store)
        assert sink.write_alerts([alert("a/1"), alert("a/2")]) == {"a/1", "a/2"}
        assert sink.write_alerts([alert("a/2"), alert("a/3")]) == {"a/3"}
        assert store.count(ALERTS_TABLE) == 3


def test_a_refused_insert_accepts_nothing_instead_of_crashing():
    """Regression: DuckDB refusing the insert (no written keys) means no alert raised, no TypeError."""
    with DuckDBStore() as store:
        store.connection.execute(f'DROP TABLE "{ALERTS_TABLE}"')  # the database cannot take the rows
        result = store.insert(ALERTS_TABLE, [alert("a/1")])
        assert not result.written_keys  # nothing was written (an empty set, or None)
        assert [failed.reason for failed in result.failed] == [Reason.WRITE_FAILED]
        assert StoreAlertSink(store).write_alerts([alert("a/1")]) == set()


def test_log_analytics_alerts_in_a_failed_chunk_are_not_accepted(log_analytics):
    """Alerts the Logs Ingestion endpoint did not take are left for the next check to send again."""
    from chargeback_dev.localserver import Fault, FaultPlan

    sink = WriterAlertSink(la_writer(log_analytics, "Custom-AOAIChargebackAlerts_CL", max_attempts=1))
    log_analytics.faults = FaultPlan(by_request={1: Fault.server_error()})
    assert sink.write_alerts([alert("a/1")]) == set()
    log_analytics.faults = FaultPlan()
    assert sink.write_alerts([alert("a/1")]) == {"a/1"}
