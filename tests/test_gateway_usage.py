"""Late usage of streams: estimates superseded by APIM's LLM log, end to end on both stores."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chargeback.core.late_usage import GatewayCounts, gateway_counts, gateway_revision
from chargeback.core.pipeline import Message, Source
from chargeback.core.schema import GATEWAY_LOG_TABLE, LLM_LOG_TABLE
from chargeback.edges.deadletter import LocalDeadLetterStore
from chargeback.edges.gatewaylog import append_rows, create_gateway_tables
from chargeback.edges.kqlrun import LocalKqlRunner
from chargeback.edges.store import DuckDBStore
from chargeback.errors import Reason, RejectedEvent
from chargeback.jobs.gateway_usage import run_gateway_usage
from chargeback.jobs.ingest import ingest_batch
from tests.conftest import la_writer, make_event, to_body

NOW = datetime(2026, 10, 20, 10, 30, tzinfo=UTC)
WAIT = timedelta(minutes=120)
OCTOBER = (datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
STREAM_ID = "5d0f0c1e-0000-4000-8000-000000000001"
PLAIN_ID = "5d0f0c1e-0000-4000-8000-000000000002"
MESSAGES = [{"role": "user", "content": "Summarise the Q3 report in three bullet points."}]


def stream_event(request_id: str = STREAM_ID, **overrides: Any) -> dict[str, Any]:
    """What the policy emits for a stream it let through unread: request body, responseCaptured false."""
    return make_event(
        requestId=request_id,
        stream=True,
        usage=...,
        model=...,
        responseCaptured=False,
        requestBody=json.dumps({"messages": MESSAGES, "stream": True}),
        **overrides,
    )


def llm_log(correlation_id: str, prompt: int, completion: int, *, rows: int = 2) -> list[dict[str, Any]]:
    """APIM's LLM log for one call: a message over 32 KB is split over rows that repeat the counts."""
    return [
        {
            "TimeGenerated": NOW - timedelta(minutes=15),
            "CorrelationId": correlation_id,
            "RequestId": f"chatcmpl-{correlation_id[-4:]}",
            "DeploymentName": "chat",
            "ModelName": "gpt-4o-2024-11-20",
            "IsStreamCompletion": True,
            "PromptTokens": prompt,
            "CompletionTokens": completion,
            "TotalTokens": prompt + completion,
            "SequenceNumber": sequence,
        }
        for sequence in range(rows)
    ]


def gateway_log(correlation_id: str, subscription: str = "team-a") -> list[dict[str, Any]]:
    """APIM's gateway log row for the call (the subscription the LLM log lacks)."""
    return [
        {
            "TimeGenerated": NOW - timedelta(minutes=15),
            "CorrelationId": correlation_id,
            "ApimSubscriptionId": subscription,
            "ResponseCode": 200,
            "IsRequestSuccess": True,
        }
    ]


def ingest(writer: Any, pricer: Any, tmp_path: Path, *events: dict[str, Any]) -> None:
    """Events through the same ingest step as the Function."""
    messages = [Message(to_body(event), Source("file", "test", str(i))) for i, event in enumerate(events)]
    summary = ingest_batch(
        messages, pricer=pricer, writer=writer, deadletter=LocalDeadLetterStore(tmp_path / "dl"), now=NOW
    )
    assert summary.dead_lettered == 0


def rows_of(store: DuckDBStore) -> dict[str, dict[str, Any]]:
    """The store's rows by RequestId."""
    cursor = store.connection.execute('SELECT * FROM "AOAIChargeback_CL"')
    names = [column[0] for column in cursor.description or ()]
    return {row[1]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


@pytest.fixture
def store(tmp_path: Path, pricer: Any) -> Any:
    """A local store holding one uncaptured stream and one ordinary call, and APIM's log tables."""
    with DuckDBStore(tmp_path / "store.duckdb") as store:
        ingest(store, pricer, tmp_path, stream_event(), make_event(requestId=PLAIN_ID))
        create_gateway_tables(store.connection)
        yield store


def test_an_uncaptured_stream_is_charged_for_its_prompt_and_flagged(store: DuckDBStore) -> None:
    """Before the log arrives: prompt priced, completion unknown, revision 0, estimated."""
    row = rows_of(store)[STREAM_ID]
    assert (row["UsageSource"], row["UsageRevision"], row["CompletionTokens"]) == ("estimated", 0, 0)
    assert row["UsageUnknown"] == "completion-tokens,cached-tokens,reasoning-tokens"
    assert row["PromptTokens"] > 0
    assert row["TotalCost"] == pytest.approx(row["PromptTokens"] * 2.50 / 1e6)
    assert rows_of(store)[PLAIN_ID]["UsageUnknown"] == ""


def test_the_gateway_log_supersedes_the_estimate_in_place(store: DuckDBStore, pricer: Any) -> None:
    """The LLM log's counts (split rows counted once) replace the row: gateway-log, revision 1, priced."""
    append_rows(store.connection, LLM_LOG_TABLE, llm_log(STREAM_ID, 1200, 350))
    append_rows(store.connection, GATEWAY_LOG_TABLE, gateway_log(STREAM_ID))
    runner = LocalKqlRunner(store.connection)
    result = run_gateway_usage(runner, store, pricer, now=NOW, wait=WAIT)
    assert (result.superseded, result.waiting, result.looked_up) == (1, 0, 1)
    rows = rows_of(store)
    assert len(rows) == 2
    row = rows[STREAM_ID]
    assert (row["UsageSource"], row["UsageRevision"]) == ("gateway-log", 1)
    assert (row["PromptTokens"], row["CompletionTokens"], row["TotalTokens"]) == (1200, 350, 1550)
    assert (row["CachedTokens"], row["ReasoningTokens"]) == (0, 0)
    assert row["UsageUnknown"] == "cached-tokens,reasoning-tokens"
    assert row["TotalCost"] == pytest.approx((1200 * 2.50 + 350 * 10.00) / 1e6)  # the 2026-10-15 price
    assert (row["SubscriptionId"], row["Deployment"], row["ModelVersion"]) == ("team-a", "chat", "2024-11-20")
    again = run_gateway_usage(runner, store, pricer, now=NOW, wait=WAIT)
    assert again.looked_up == 0, "a superseded row no longer waits"
    rollup = runner.run("monthly_rollup", {"MonthStart": OCTOBER[0], "MonthEnd": OCTOBER[1]})
    assert rollup.Requests.sum() == 2
    assert set(rollup.UsageSource) == {"gateway-log", "reported"}


def test_without_a_log_the_row_waits_then_keeps_its_estimate(store: DuckDBStore, pricer: Any) -> None:
    """No LLM log yet: waiting; after the wait it is not looked up and is reported as an estimate."""
    runner = LocalKqlRunner(store.connection)
    waiting = run_gateway_usage(runner, store, pricer, now=NOW, wait=WAIT)
    assert (waiting.waiting, waiting.superseded) == (1, 0)
    later = run_gateway_usage(runner, store, pricer, now=NOW + WAIT + timedelta(minutes=1), wait=WAIT)
    assert later.looked_up == 0
    estimates = runner.records("stream_estimates", {"MonthStart": OCTOBER[0], "MonthEnd": OCTOBER[1]})
    assert [(e["SubscriptionId"], e["Requests"]) for e in estimates] == [("team-a", 1)]
    assert estimates[0]["TotalCost"] == pytest.approx(rows_of(store)[STREAM_ID]["TotalCost"])


def test_a_log_naming_another_subscription_is_refused(store: DuckDBStore, pricer: Any) -> None:
    """A gateway log that puts the call on another subscription is refused; the estimate stays."""
    append_rows(store.connection, LLM_LOG_TABLE, llm_log(STREAM_ID, 1200, 350))
    append_rows(store.connection, GATEWAY_LOG_TABLE, gateway_log(STREAM_ID, subscription="team-z"))
    result = run_gateway_usage(LocalKqlRunner(store.connection), store, pricer, now=NOW, wait=WAIT)
    assert result.refused == {"gateway-log-mismatch": 1}
    assert rows_of(store)[STREAM_ID]["UsageRevision"] == 0


def test_counts_the_log_cannot_have_are_refused() -> None:
    """Negative or fractional gateway counts raise with a reason; absent ones mean 'not yet'."""
    assert gateway_counts({"GatewayPromptTokens": None, "GatewayCompletionTokens": float("nan")}) is None
    assert gateway_counts({"GatewayPromptTokens": 5.0, "GatewayCompletionTokens": 2}) == GatewayCounts(5, 2)
    with pytest.raises(RejectedEvent) as negative:
        gateway_counts({"GatewayPromptTokens": -1, "GatewayCompletionTokens": 2})
    assert negative.value.reason == Reason.INVALID_VALUE
    with pytest.raises(RejectedEvent) as fractional:
        gateway_counts({"GatewayPromptTokens": 1.5, "GatewayCompletionTokens": 2})
    assert fractional.value.reason == Reason.WRONG_TYPE


def test_the_revision_is_priced_like_an_ingested_event(pricer: Any) -> None:
    """gateway_revision prices the counts with the same Pricer and keeps the row's call fields."""
    record = {
        "RequestId": "r1",
        "TimeGenerated": datetime(2026, 10, 2, 9, 0),  # naive UTC, as DuckDB returns it
        "SubscriptionId": "team-b",
        "Deployment": "mini",
        "Model": "gpt-4o-mini",
        "StatusCode": 200,
        "Streamed": True,
        "Tags": '{"project": "apollo"}',
        "UsageRevision": 0,
    }
    row = gateway_revision(record, GatewayCounts(1_000_000, 1_000_000), pricer)
    assert row["TotalCost"] == Decimal("0.15") + Decimal("0.60")
    assert (row["UsageRevision"], row["Tags"], row["Streamed"]) == (1, '{"project": "apollo"}', True)
    assert row["TimeGenerated"] == datetime(2026, 10, 2, 9, 0, tzinfo=UTC)


def test_late_usage_end_to_end_through_the_local_log_analytics_server(
    log_analytics: Any, pricer: Any, tmp_path: Path
) -> None:
    """Logs Ingestion in, APIM's logs beside it, the real query client: one charge, the gateway's."""
    from azure.monitor.query import LogsQueryClient

    from chargeback.edges.azure_clients import LocalStandInCredential
    from chargeback.edges.kqlrun import LogAnalyticsKqlRunner

    writer = la_writer(log_analytics)
    ingest(writer, pricer, tmp_path, stream_event(), make_event(requestId=PLAIN_ID))
    log_analytics.append_gateway_log(LLM_LOG_TABLE, llm_log(STREAM_ID, 1200, 350, rows=3))
    log_analytics.append_gateway_log(GATEWAY_LOG_TABLE, gateway_log(STREAM_ID))
    client = LogsQueryClient(LocalStandInCredential(), endpoint=log_analytics.endpoint)
    runner = LogAnalyticsKqlRunner(client, "workspace-1", enforce_https=False)
    first = run_gateway_usage(runner, writer, pricer, now=NOW, wait=WAIT)
    second = run_gateway_usage(runner, writer, pricer, now=NOW, wait=WAIT)
    assert (first.superseded, second.looked_up) == (1, 0)
    stored = log_analytics.sql('SELECT count(*) FROM "AOAIChargeback_CL"')[0][0]
    assert stored == 3, "Log Analytics keeps both revisions; queries keep the latest"
    rollup = runner.run("monthly_rollup", {"MonthStart": OCTOBER[0], "MonthEnd": OCTOBER[1]}, window=OCTOBER)
    assert rollup.Requests.sum() == 2
    assert rollup.CompletionTokens.sum() == 350 + 200
    assert set(rollup.UsageSource) == {"gateway-log", "reported"}


def test_the_timer_skips_a_local_store_without_apim_logs(tmp_path: Path) -> None:
    """Locally, with no APIM log tables in the store, the step reads nothing and says so."""
    from chargeback.wiring import handle_gateway_usage

    env = {"CHARGEBACK_DUCKDB_PATH": str(tmp_path / "plain.duckdb")}
    assert handle_gateway_usage(NOW, env) is None
