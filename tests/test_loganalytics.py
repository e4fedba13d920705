"""LogAnalyticsWriter: ≤ 1 MB gzip chunks, bounded retries, Retry-After, failed rows returned, never lost."""

from __future__ import annotations

import gzip
import json
import socket
import time
import zlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from chargeback.core.pipeline import process_batch
from chargeback.edges.loganalytics import LogAnalyticsWriter, gzip_chunks, retry_after_seconds
from chargeback.errors import Reason
from chargeback.settings import Settings
from chargeback_dev.localserver import Fault, FaultPlan
from tests.conftest import la_writer, make_event, to_body


def usage_rows(pricer, n: int) -> list[dict[str, Any]]:
    from chargeback.core.pipeline import Message, Source

    bodies = [
        to_body(
            make_event(
                subscriptionId=f"team-{i % 9}", usage={"prompt_tokens": 17 * i + 1, "completion_tokens": i}
            )
        )
        for i in range(n)
    ]
    result = process_batch([Message(b, Source("file")) for b in bodies], pricer)
    return [charge.row for charge in result.charges]


def table_ids(server) -> list[str]:
    return [rid for (rid,) in server.sql('SELECT "RequestId" FROM "AOAIChargeback_CL"')]


def test_gzip_chunks_stay_under_the_limit_and_keep_every_row_in_order():
    """Each chunk is a gzip JSON array ≤ limit; together they hold every row once, in order."""
    payloads = [json.dumps({"i": i, "pad": "x" * (i % 300)}).encode() for i in range(5000)]
    chunks, oversize = gzip_chunks(payloads, 20_000)
    assert not oversize
    assert all(len(chunk.body) <= 20_000 for chunk in chunks)
    assert min(len(chunk.body) for chunk in chunks[:-1]) > 18_000  # filled close to the limit
    decoded = [row["i"] for chunk in chunks for row in json.loads(gzip.decompress(chunk.body))]
    assert decoded == list(range(5000))
    assert [i for chunk in chunks for i in chunk.indexes] == list(range(5000))


def test_a_row_too_large_for_any_chunk_is_reported_not_sent():
    """A single row whose worst-case size exceeds the limit is returned as oversize."""
    chunks, oversize = gzip_chunks([b'{"a":1}', b'{"b":"' + b"y" * 5000 + b'"}', b'{"c":3}'], 1000)
    assert oversize == [1]
    assert [i for chunk in chunks for i in chunk.indexes] == [0, 2]


def test_ten_thousand_rows_take_at_most_four_calls(pricer, log_analytics):
    """Chunking by compressed size: 10,000 usage rows go in ≤ 4 calls, all ≤ 1 MB, all written."""
    rows = usage_rows(pricer, 10_000)
    writer = la_writer(log_analytics)
    result = writer.write(rows)
    assert (result.written, result.failed, result.written_keys) == (10_000, [], None)
    assert writer.calls <= 4
    assert max(log_analytics.stats.body_sizes) <= 1_000_000
    assert len(set(table_ids(log_analytics))) == 10_000


def test_rows_go_as_json_safe_values(pricer, log_analytics):
    """Datetimes go as ISO-8601 UTC and Decimal costs as numbers: the table gets typed values."""
    row = usage_rows(pricer, 1)[0]
    assert isinstance(row["TimeGenerated"], datetime)
    assert isinstance(row["TotalCost"], Decimal)
    la_writer(log_analytics).write([row])
    [(when, cost)] = log_analytics.sql('SELECT "TimeGenerated", "TotalCost" FROM "AOAIChargeback_CL"')
    assert when == row["TimeGenerated"].astimezone(UTC).replace(tzinfo=None)
    assert cost == float(row["TotalCost"])


def test_429_retry_after_is_honoured_then_the_chunk_lands(pricer, log_analytics):
    """On 429 the writer waits at least Retry-After, retries, and the rows are written once."""
    log_analytics.faults = FaultPlan(by_request={1: Fault.throttled(1)})
    waits: list[float] = []

    writer = la_writer(log_analytics, sleep=waits.append)  # the writer's sleep, injected: no real wait
    result = writer.write(usage_rows(pricer, 50))
    assert (result.written, result.failed) == (50, [])
    assert waits == [1.0]
    assert log_analytics.stats.statuses == {429: 1, 204: 1}


def test_retry_after_longer_than_allowed_gives_the_chunk_up(pricer, log_analytics):
    """A Retry-After beyond max_retry_after is not shortened: the rows fail as sink-unavailable."""
    log_analytics.faults = FaultPlan(by_request={1: Fault.throttled(120)})
    writer = la_writer(log_analytics, max_retry_after=5)
    result = writer.write(usage_rows(pricer, 5))
    assert result.written == 0
    assert {f.reason for f in result.failed} == {Reason.SINK_UNAVAILABLE}
    assert log_analytics.stats.ingest_requests == 1


def test_server_errors_are_retried_within_bounds(pricer, log_analytics):
    """500/503 are retried; past max_attempts the rows come back failed, sink-unavailable."""
    log_analytics.faults = FaultPlan(by_request={1: Fault.server_error(), 2: Fault.unavailable()})
    assert la_writer(log_analytics).write(usage_rows(pricer, 3)).written == 3
    log_analytics.faults = FaultPlan(by_request={n: Fault.unavailable() for n in range(1, 10)})
    result = la_writer(log_analytics, max_attempts=3).write(usage_rows(pricer, 3))
    assert [f.reason for f in result.failed] == [Reason.SINK_UNAVAILABLE] * 3
    assert "after 3 attempts" in result.failed[0].detail


def test_a_bad_request_is_bisected_not_retried(pricer, log_analytics):
    """400 is never resent as is: the chunk is halved down to single rows, each failing write-failed."""
    log_analytics.faults = FaultPlan(by_request={n: Fault.bad_request() for n in range(1, 20)})
    writer = la_writer(log_analytics)
    result = writer.write(usage_rows(pricer, 4))
    assert [f.reason for f in result.failed] == [Reason.WRITE_FAILED] * 4
    assert writer.calls == 7  # 4 rows, then 2 + 2, then 1 + 1 + 1 + 1


def test_a_row_the_stream_refuses_fails_alone_and_its_chunk_lands(pricer, log_analytics):
    """The service answers 400 to every call holding row 37 of 64: bisection isolates that row alone."""
    # Calls in bisection order: 1 = rows 0-63, 2 = 0-31, 3 = 32-63, 4 = 32-47, 5 = 32-39, 6 = 32-35,
    # 7 = 36-39, 8 = 36-37, 9 = 36, 10 = 37, 11 = 38-39, 12 = 40-47, 13 = 48-63.
    log_analytics.faults = FaultPlan(by_request={n: Fault.bad_request() for n in (1, 3, 4, 5, 7, 8, 10)})
    rows = usage_rows(pricer, 64)
    writer = la_writer(log_analytics)
    result = writer.write(rows)
    assert [(f.row["RequestId"], f.reason) for f in result.failed] == [
        (rows[37]["RequestId"], Reason.WRITE_FAILED)
    ]
    assert (result.written, writer.calls, log_analytics.stats.rows_ingested) == (63, 13, 63)


def test_bisection_stops_at_its_budget(pricer, log_analytics):
    """A stream that refuses every row (a DCR mismatch) costs at most bisect_budget extra calls."""
    log_analytics.faults = FaultPlan(by_request={n: Fault.bad_request() for n in range(1, 200)})
    writer = la_writer(log_analytics, bisect_budget=3)
    result = writer.write(usage_rows(pricer, 64))
    assert len(result.failed) == 64
    assert writer.calls == 1 + 2 * 3


def test_413_splits_the_chunk_and_both_halves_land(pricer, log_analytics):
    """On 413 the writer halves the chunk and sends each half: every row is written once."""
    log_analytics.faults = FaultPlan(by_request={1: Fault.too_large()})
    rows = usage_rows(pricer, 200)
    result = la_writer(log_analytics).write(rows)
    assert (result.written, result.failed) == (200, [])
    assert log_analytics.stats.ingest_requests == 3
    assert sorted(table_ids(log_analytics)) == sorted(r["RequestId"] for r in rows)


def test_a_row_refused_even_alone_is_write_failed(pricer, log_analytics):
    """When the service refuses every body as too large, rows end write-failed, none lost."""
    log_analytics.max_body_bytes = 10
    result = la_writer(log_analytics).write(usage_rows(pricer, 4))
    assert result.written == 0
    assert [f.reason for f in result.failed] == [Reason.WRITE_FAILED] * 4


def test_one_failing_chunk_in_the_middle_fails_only_its_rows(pricer, log_analytics):
    """Chunk 2 of many refused (403, not a row's fault): only its rows come back, the rest are written."""
    log_analytics.faults = FaultPlan(by_request={2: Fault("status", 403)})
    rows = usage_rows(pricer, 3000)
    writer = la_writer(log_analytics, max_body_bytes=40_000)
    result = writer.write(rows)
    assert writer.calls > 3
    failed = {f.row["RequestId"] for f in result.failed}
    assert 0 < len(failed) < 3000
    assert result.written + len(failed) == 3000
    assert set(table_ids(log_analytics)) == {r["RequestId"] for r in rows} - failed
    originals = {id(row) for row in rows}
    assert all(id(f.row) in originals for f in result.failed)  # the caller's own rows


def test_dropped_connections_and_slow_answers_are_retried(pricer, log_analytics):
    """A dropped connection and an answer past the timeout are retried; rows land once."""
    log_analytics.faults = FaultPlan(by_request={1: Fault.drop(), 2: Fault.slow(1.0)})
    result = la_writer(log_analytics, timeout=0.3).write(usage_rows(pricer, 10))
    assert (result.written, result.failed) == (10, [])
    time.sleep(0.8)  # let the slow (uncommitted) request finish on the server
    assert len(table_ids(log_analytics)) == 10


def test_an_unreachable_endpoint_fails_fast_as_unavailable(pricer):
    """Nothing listening: the first chunks exhaust their retries, the rest fail without trying."""
    from azure.monitor.ingestion import LogsIngestionClient

    from chargeback.edges.azure_clients import LocalStandInCredential

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = LogsIngestionClient(f"http://127.0.0.1:{port}", LocalStandInCredential())
    writer = LogAnalyticsWriter(
        client, "dcr", "Custom-AOAIChargeback_CL", backoff=0.01, max_body_bytes=20_000
    )
    rows = usage_rows(pricer, 2000)
    result = writer.write(rows)
    assert len(result.failed) == 2000
    assert {f.reason for f in result.failed} == {Reason.SINK_UNAVAILABLE}
    assert writer.calls == 2 * writer.max_attempts
    assert any("not sent" in f.detail for f in result.failed)


def test_the_write_budget_bounds_a_slow_service(pricer, log_analytics):
    """Past the deadline on the writer's clock, the remaining chunks fail as sink-unavailable unsent."""
    log_analytics.faults = FaultPlan(rate=1.0, kinds=(Fault.server_error(),))
    readings = iter(range(10_000))

    def clock() -> float:
        return float(next(readings))  # each reading of the injected clock is one second later

    writer = la_writer(
        log_analytics,
        deadline=4.0,
        max_attempts=2,
        give_up_after=100,
        max_body_bytes=5_000,
        clock=clock,
        sleep=lambda seconds: None,
    )
    rows = usage_rows(pricer, 500)
    result = writer.write(rows)
    assert len(result.failed) == 500
    assert {failed.reason for failed in result.failed} == {Reason.SINK_UNAVAILABLE}
    details = {failed.detail for failed in result.failed}
    # Readings 1-2: chunk 1 tried twice; 3-4: chunk 2 once, no time left to retry; 5+: never sent.
    assert details == {
        "HTTP 500 after 2 attempts",
        "HTTP 500; no time left to retry",
        "not sent: write budget 4s spent",
    }
    assert writer.calls == 3


def test_unserialisable_rows_fail_alone(pricer, log_analytics):
    """A row with a value JSON cannot carry is internal-error; the others are written."""
    rows = usage_rows(pricer, 3)
    rows[1] = {**rows[1], "Tags": {1, 2}}
    result = la_writer(log_analytics).write(rows)
    assert result.written == 2
    assert [(f.row is rows[1], f.reason) for f in result.failed] == [(True, Reason.INTERNAL_ERROR)]


def test_for_alerts_writes_the_alerts_stream(log_analytics):
    """The wiring's alerts writer targets LOGS_ALERTS_STREAM_NAME."""
    from chargeback.wiring import build_log_analytics_writer

    settings = Settings.from_env(
        {"LOGS_INGESTION_ENDPOINT": log_analytics.endpoint, "LOGS_DCR_IMMUTABLE_ID": "dcr-local"}
    )
    writer = build_log_analytics_writer(settings, settings.logs_alerts_stream_name)
    assert writer.stream_name == "Custom-AOAIChargebackAlerts_CL"
    assert writer.enforce_https is False
    result = writer.write([{"AlertId": "a-1", "TimeGenerated": datetime(2026, 11, 1, tzinfo=UTC)}])
    assert result.written == 1
    assert log_analytics.sql('SELECT "AlertId" FROM "AOAIChargebackAlerts_CL"') == [("a-1",)]


def test_runtime_builds_the_writer_for_the_loganalytics_sink(log_analytics):
    """CHARGEBACK_SINK=loganalytics gives a LogAnalyticsWriter on LOGS_STREAM_NAME."""
    from chargeback.wiring import build_writer

    settings = Settings.from_env(
        {
            "CHARGEBACK_SINK": "loganalytics",
            "LOGS_INGESTION_ENDPOINT": log_analytics.endpoint,
            "LOGS_DCR_IMMUTABLE_ID": "dcr-local",
        }
    )
    writer = build_writer(settings)
    assert isinstance(writer, LogAnalyticsWriter)
    assert writer.stream_name == "Custom-AOAIChargeback_CL"


def test_retry_after_header_forms():
    """Retry-After in seconds or as an HTTP date, and retry-after-ms, are all understood."""
    now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "1500"}) == 1.5
    assert retry_after_seconds({"Retry-After": "Sun, 01 Nov 2026 12:00:10 GMT"}, now) == 10.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_chunks_also_close_before_their_json_inflates_past_the_raw_limit():
    """Very compressible rows never make a body that decompresses past the service's inflated-size cap."""
    payloads = [b'{"a":"' + b"x" * 1000 + b'"}'] * 500
    chunks, oversize = gzip_chunks(payloads, raw_limit=100_000)
    assert not oversize
    assert [i for chunk in chunks for i in chunk.indexes] == list(range(500))
    for chunk in chunks:
        assert len(zlib.decompress(chunk.body, 31)) <= 100_000
    assert len(chunks) > 1
