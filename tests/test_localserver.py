"""The local Log Analytics stand-in speaks the Logs Ingestion and query APIs to the real SDK clients."""

from __future__ import annotations

import gzip
import http.client
import io
import json
import time
from collections.abc import MutableMapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ServiceResponseError
from azure.monitor.ingestion import LogsIngestionClient
from azure.monitor.query import LogsQueryClient, LogsQueryResult, LogsQueryStatus

from chargeback.edges.azure_clients import LocalStandInCredential
from chargeback_dev.localserver import Fault, FaultPlan, LocalLogAnalytics, parse_timespan, stream_table

STREAM = "Custom-AOAIChargeback_CL"


def rows(n: int, start: int = 0, when: str = "2026-10-20T10:15:30.123Z") -> list[MutableMapping[str, Any]]:
    return [
        {
            "TimeGenerated": when,
            "RequestId": f"r{i}",
            "StatusCode": 200,
            "TotalCost": 0.5,
            "Tags": '{"p":"x"}',
        }
        for i in range(start, start + n)
    ]


def client(server: LocalLogAnalytics) -> LogsIngestionClient:
    return LogsIngestionClient(server.endpoint, LocalStandInCredential())


def post(
    server: LocalLogAnalytics, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    conn.request("POST", path, body=body, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()) | {"_body": data}


INGEST_PATH = f"/dataCollectionRules/dcr-1/streams/{STREAM}?api-version=2023-01-01"


def test_gzip_upload_through_the_sdk_appends_rows(log_analytics):
    """A pre-gzipped JSON array sent by LogsIngestionClient.upload lands as typed rows."""
    body = gzip.compress(json.dumps(rows(3)).encode())
    client(log_analytics).upload("dcr-1", STREAM, io.BytesIO(body), enforce_https=False)
    assert log_analytics.sql('SELECT count(*), sum("TotalCost") FROM "AOAIChargeback_CL"') == [(3, 1.5)]
    [(when, tags)] = log_analytics.sql('SELECT "TimeGenerated", "Tags" FROM "AOAIChargeback_CL" LIMIT 1')
    assert when == datetime(2026, 10, 20, 10, 15, 30, 123000)
    assert json.loads(tags) == {"p": "x"}


def test_sdk_list_upload_is_accepted_too(log_analytics):
    """The SDK's own list upload (it gzips itself) works against the server."""
    client(log_analytics).upload("dcr-1", STREAM, rows(5), enforce_https=False)
    assert log_analytics.stats.rows_ingested == 5


def test_plain_json_body_is_accepted(log_analytics):
    """A JSON array without Content-Encoding is accepted with 204."""
    status, _ = post(log_analytics, INGEST_PATH, json.dumps(rows(2)).encode(), {"Authorization": "Bearer x"})
    assert status == 204
    assert log_analytics.stats.rows_ingested == 2


def test_appends_never_dedupe(log_analytics):
    """Like Log Analytics, the same rows sent twice are stored twice."""
    for _ in range(2):
        client(log_analytics).upload("dcr-1", STREAM, rows(4), enforce_https=False)
    assert log_analytics.sql('SELECT count(*), count(DISTINCT "RequestId") FROM "AOAIChargeback_CL"') == [
        (8, 4)
    ]


def test_a_bearer_token_is_required(log_analytics):
    """No Authorization header: 401, nothing written."""
    status, _ = post(log_analytics, INGEST_PATH, json.dumps(rows(1)).encode(), {})
    assert status == 401
    assert log_analytics.stats.rows_ingested == 0


def test_bodies_over_one_megabyte_are_refused_with_413(log_analytics):
    """A body over 1 MB (as sent) is refused with 413 and nothing is written."""
    big = json.dumps(rows(1)).encode() + b" " * 1_000_001
    status, _ = post(log_analytics, INGEST_PATH, big, {"Authorization": "Bearer x"})
    assert status == 413
    assert log_analytics.stats.rows_ingested == 0


def test_wrong_api_version_bad_json_and_unknown_stream_are_refused(log_analytics):
    """api-version must be 2023-01-01, the body a JSON array, the stream one of the tables."""
    auth = {"Authorization": "Bearer x"}
    wrong_version = INGEST_PATH.replace("2023-01-01", "2021-01-01")
    assert post(log_analytics, wrong_version, b"[]", auth)[0] == 400
    assert post(log_analytics, INGEST_PATH, b'{"not": "an array"}', auth)[0] == 400
    unknown = INGEST_PATH.replace(STREAM, "Custom-Other_CL")
    assert post(log_analytics, unknown, b"[]", auth)[0] == 404


def test_alerts_stream_feeds_the_alerts_table(log_analytics):
    """Custom-AOAIChargebackAlerts_CL rows go to AOAIChargebackAlerts_CL."""
    assert stream_table("Custom-AOAIChargebackAlerts_CL") == "AOAIChargebackAlerts_CL"
    client(log_analytics).upload(
        "dcr-1", "Custom-AOAIChargebackAlerts_CL", [{"AlertId": "a1"}], enforce_https=False
    )
    assert log_analytics.sql('SELECT "AlertId" FROM "AOAIChargebackAlerts_CL"') == [("a1",)]


def test_query_api_answers_the_real_logs_query_client(log_analytics):
    """LogsQueryClient gets PrimaryResult with KQL column types and parsed datetimes."""
    client(log_analytics).upload("dcr-1", STREAM, rows(3), enforce_https=False)
    query = LogsQueryClient(LocalStandInCredential(), endpoint=log_analytics.endpoint)
    result = query.query_workspace(
        "ws",
        "AOAIChargeback_CL"
        " | summarize n = count(), cost = sum(TotalCost), latest = max(TimeGenerated) by StatusCode",
        timespan=None,
        enforce_https=False,
    )
    assert result.status == LogsQueryStatus.SUCCESS
    [table] = result.tables
    assert table.name == "PrimaryResult"
    assert table.columns == ["StatusCode", "n", "cost", "latest"]
    assert table.columns_types == ["int", "long", "real", "datetime"]
    [row] = table.rows
    assert row["n"] == 3
    assert row["cost"] == 1.5
    assert row["latest"] == datetime(2026, 10, 20, 10, 15, 30, 123000, tzinfo=UTC)


def test_query_timespan_filters_time_generated(log_analytics):
    """The timespan argument limits every table to TimeGenerated in [start, end)."""
    client(log_analytics).upload("dcr-1", STREAM, rows(2, when="2026-10-01T00:00:00Z"), enforce_https=False)
    client(log_analytics).upload(
        "dcr-1", STREAM, rows(3, 2, when="2026-11-05T00:00:00Z"), enforce_https=False
    )
    query = LogsQueryClient(LocalStandInCredential(), endpoint=log_analytics.endpoint)
    span = (datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC))
    result = query.query_workspace("ws", "AOAIChargeback_CL | count", timespan=span, enforce_https=False)
    assert isinstance(result, LogsQueryResult)
    assert [list(row) for row in result.tables[0].rows] == [[3]]


def test_bad_kql_is_an_http_error(log_analytics):
    """A KQL syntax error comes back as a 400 HttpResponseError with the parser's message."""
    query = LogsQueryClient(LocalStandInCredential(), endpoint=log_analytics.endpoint)
    with pytest.raises(HttpResponseError, match="BadArgumentError"):
        query.query_workspace("ws", "AOAIChargeback_CL | wherex", timespan=None, enforce_https=False)


def test_parse_timespan_reads_intervals_and_durations():
    """start/end, start/duration and a bare duration (ending now) are understood."""
    now = datetime(2026, 11, 2, 12, tzinfo=UTC)
    assert parse_timespan("2026-10-01T00:00:00Z/2026-11-01T00:00:00Z", now) == (
        datetime(2026, 10, 1),
        datetime(2026, 11, 1),
    )
    assert parse_timespan("2026-10-01T00:00:00Z/P1D", now) == (datetime(2026, 10, 1), datetime(2026, 10, 2))
    assert parse_timespan("PT3600.0S", now) == (datetime(2026, 11, 2, 11), datetime(2026, 11, 2, 12))
    assert parse_timespan(None, now) is None


def test_nth_request_fault_with_retry_after(log_analytics):
    """FaultPlan.by_request fails exactly the Nth ingestion request, with Retry-After on 429."""
    log_analytics.faults = FaultPlan(by_request={2: Fault.throttled(7)})
    auth = {"Authorization": "Bearer x"}
    assert post(log_analytics, INGEST_PATH, b"[]", auth)[0] == 204
    status, headers = post(log_analytics, INGEST_PATH, b"[]", auth)
    assert (status, headers["Retry-After"]) == (429, "7")
    assert post(log_analytics, INGEST_PATH, b"[]", auth)[0] == 204
    assert log_analytics.stats.faults == {"429": 1}


def test_dropped_connection_fault_reaches_the_sdk_as_no_answer(log_analytics):
    """A drop fault closes the connection: the SDK raises ServiceResponseError, nothing written."""
    log_analytics.faults = FaultPlan(by_request={1: Fault.drop()})
    with pytest.raises(ServiceResponseError):
        client(log_analytics).upload("dcr-1", STREAM, rows(1), enforce_https=False, retry_total=0)
    assert log_analytics.stats.rows_ingested == 0


def test_slow_fault_outlasts_the_client_timeout(log_analytics):
    """A slow fault answers after its delay, past a shorter client read timeout."""
    log_analytics.faults = FaultPlan(by_request={1: Fault.slow(1.5)})
    with pytest.raises(ServiceResponseError):  # the read timed out before the server answered
        client(log_analytics).upload(
            "dcr-1", STREAM, rows(1), enforce_https=False, retry_total=0, read_timeout=0.5
        )
    time.sleep(1.3)  # let the slow answer finish on the server
    assert log_analytics.stats.rows_ingested == 0


def test_random_faults_follow_the_rate_and_seed():
    """A seeded FaultPlan picks the same faults for the same request numbers."""
    kinds = (Fault.server_error(), Fault.unavailable())
    plan, replan = FaultPlan(rate=0.3, kinds=kinds, seed=5), FaultPlan(rate=0.3, kinds=kinds, seed=5)
    picks = [plan.pick(n) for n in range(1, 201)]
    again = [replan.pick(n) for n in range(1, 201)]
    assert picks == again
    assert 30 <= sum(p is not None for p in picks) <= 90


def test_old_time_generated_is_replaced_when_clamping(tmp_path):
    """With clamping on, TimeGenerated older than 2 days becomes the receive time, as in Azure."""
    with LocalLogAnalytics(tmp_path / "la.duckdb", clamp_old_time_generated=True) as server:
        recent = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        client(server).upload("dcr-1", STREAM, rows(1, when="2020-01-01T00:00:00Z"), enforce_https=False)
        client(server).upload("dcr-1", STREAM, rows(1, 1, when=recent), enforce_https=False)
        stamps = dict(server.sql('SELECT "RequestId", "TimeGenerated" FROM "AOAIChargeback_CL"'))
    assert stamps["r0"] > datetime(2026, 1, 1) - timedelta(days=3650)
    assert stamps["r0"] > datetime.now() - timedelta(days=2)
    assert abs(stamps["r1"] - datetime.fromisoformat(recent).replace(tzinfo=None)) < timedelta(seconds=1)
