"""Fault injection: real SDK clients against the local Log Analytics server and Azurite; nothing lost.

Every event of a batch must end in exactly one of {usage table, dead-letter}, or the batch raises
so that the trigger's retry policy delivers it again. Log Analytics does not dedupe, so "none
twice in the table" holds only for faults where the service did not accept the data; the one
fault where it did (an answer slower than the client's timeout) is shown separately, with the
RequestId dedupe that every query applies.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pytest
from azure.storage.blob import BlobServiceClient, LinearRetry

from chargeback.core.pipeline import Message, Row, Source
from chargeback.edges.blob import BlobDeadLetterStore
from chargeback.edges.sinks import FailedRow, WriteResult
from chargeback.edges.store import DuckDBStore
from chargeback.errors import Reason, SinkError
from chargeback.jobs.ingest import ingest_batch
from chargeback.jobs.replay import replay_to_pipeline
from chargeback_dev.localserver import Fault, FaultPlan
from tests.conftest import Azurite, la_writer, make_event, to_body


def container_store(azurite: Azurite, name: str | None = None) -> BlobDeadLetterStore:
    """A Blob dead-letter store on an Azurite, with fast, bounded retries."""
    service = BlobServiceClient.from_connection_string(
        azurite.connection_string,
        retry_policy=LinearRetry(backoff=0, random_jitter_range=0, retry_total=1),
        connection_timeout=2,
    )
    return BlobDeadLetterStore(service.get_container_client(name or f"dl-{uuid.uuid4().hex[:12]}"))


def messages(bodies: Sequence[bytes], name: str = "p0") -> list[Message]:
    return [Message(body, Source("eventhub", name, f"seq={i}")) for i, body in enumerate(bodies)]


def table_ids(server) -> list[str]:
    return [rid for (rid,) in server.sql('SELECT "RequestId" FROM "AOAIChargeback_CL"')]


def synthetic_bodies(n: int, seed: int, bad_share: float = 0.02) -> list[bytes]:
    """n unique Event Hub bodies, ``bad_share`` of them broken in assorted ways."""
    rng = random.Random(seed)
    bodies = []
    for i in range(n):
        roll = rng.random()
        if roll < bad_share / 2:
            bodies.append(b'{"schemaVersion": "1", "requestId": "x' + str(i).encode() + b'", ')
        elif roll < bad_share:
            bodies.append(to_body(make_event(schemaVersion="9", requestId=f"bad-{i}")))
        else:
            usage = {"prompt_tokens": rng.randint(1, 8000), "completion_tokens": rng.randint(0, 2000)}
            bodies.append(
                to_body(make_event(requestId=f"req-{i}", subscriptionId=f"team-{i % 13}", usage=usage))
            )
    return bodies


@pytest.mark.slow
@pytest.mark.azurite
def test_100k_events_at_a_10_percent_fault_rate_lose_nothing_and_charge_nothing_twice(
    pricer, azurite, log_analytics
):
    """100,000 events, 10 % of ingestion calls failing: each event in the table or dead-letter, once."""
    total, batch_size = 100_000, 10_000
    bodies = synthetic_bodies(total, seed=42)
    kinds = (
        Fault.throttled(0),
        Fault.server_error(),
        Fault.unavailable(),
        Fault.too_large(),
        Fault.drop(),
        Fault.slow(0.4),
    )
    log_analytics.faults = FaultPlan(rate=0.10, kinds=kinds, seed=7)
    writer = la_writer(log_analytics, max_body_bytes=15_000, max_attempts=2, timeout=0.3, give_up_after=50)
    dead = container_store(azurite)
    summaries = [
        ingest_batch(messages(bodies[i : i + batch_size]), pricer=pricer, writer=writer, deadletter=dead)
        for i in range(0, total, batch_size)
    ]
    time.sleep(0.5)  # let slow (uncommitted) requests finish on the server

    in_table = table_ids(log_analytics)
    records = list(dead.records())
    dead_bodies = Counter(record.message.body for record in records if record.kind == "event")
    # Events that failed after pricing (the outage) are kept as their priced rows: no bodies at rest.
    dead_rows = Counter(record.request_id for record in records if record.kind == "row")
    reasons = Counter(record.reason.value for record in records)
    written = sum(s.written for s in summaries)
    print(
        f"\n100k fault run: {total:,} events; table {len(in_table):,} rows; "
        f"dead-letter {len(records):,} ({dict(reasons)}; {sum(dead_rows.values()):,} as priced rows, "
        f"{sum(dead_bodies.values()):,} with bodies); ingestion calls "
        f"{log_analytics.stats.ingest_requests:,}, faults injected {dict(log_analytics.stats.faults)}"
    )
    assert all(s.accounted for s in summaries)
    # Every written event is in the table. A raw duplicate can only come from an answer slower than
    # the client's timeout under load (the service committed, the client retried: at-least-once);
    # the RequestId dedupe that every query applies leaves one row per call.
    assert len(set(in_table)) == written
    assert deduped_count(log_analytics) == written
    assert max(dead_bodies.values()) == 1  # none twice in the dead-letter
    assert max(dead_rows.values()) == 1
    assert all(b'"messages"' not in record.message.body for record in records if record.kind == "row")
    table_set = set(in_table)
    for body in bodies:
        event = json.loads(body) if body.endswith(b"}") else None
        request_id = event.get("requestId") if event is not None else None
        charged = request_id in table_set
        assert charged != (body in dead_bodies or request_id in dead_rows)  # exactly one of the two
    assert sum(log_analytics.stats.faults.values()) > 15
    assert reasons["sink-unavailable"] + reasons["write-failed"] > 0

    # The outage is over: replay charges every dead-lettered good event, once.
    log_analytics.faults = FaultPlan()
    report = replay_to_pipeline(dead, pricer=pricer, writer=la_writer(log_analytics))
    final = table_ids(log_analytics)
    good = sum(1 for b in bodies if b'"requestId": "req-' in b)
    print(f"after replay: {report.replayed:,} replayed, table {len(final):,} rows for {good:,} good events")
    assert len(set(final)) == deduped_count(log_analytics) == good
    assert replay_to_pipeline(dead, pricer=pricer, writer=la_writer(log_analytics)).pending == 0


def test_an_answer_after_the_timeout_can_double_a_row_and_the_requestid_dedupe_removes_it(
    pricer, log_analytics, tmp_path: Path
):
    """Service accepted, client timed out and retried: two raw rows, one after the KQL dedupe."""
    log_analytics.faults = FaultPlan(by_request={1: Fault.slow(0.6, commit=True)})
    writer = la_writer(log_analytics, timeout=0.2)
    bodies = [to_body(make_event()) for _ in range(5)]
    summary = ingest_batch(
        messages(bodies), pricer=pricer, writer=writer, deadletter=container_or_folder(tmp_path)
    )
    time.sleep(0.8)
    assert summary.written == 5
    assert len(table_ids(log_analytics)) == 10
    deduped = log_analytics.query(
        "AOAIChargeback_CL | summarize arg_max(TimeGenerated, *) by RequestId | count"
    )
    assert deduped == [(5,)]


def deduped_count(server) -> int:
    """Rows left after the RequestId dedupe that every KQL query applies."""
    rows = server.query("AOAIChargeback_CL | summarize arg_max(TimeGenerated, *) by RequestId | count")
    return int(rows[0][0])


def container_or_folder(tmp_path: Path):
    from chargeback.edges.deadletter import LocalDeadLetterStore

    return LocalDeadLetterStore(tmp_path / "dl")


@pytest.mark.azurite
def test_azurite_stopped_mid_run_makes_the_batch_raise_and_redelivery_loses_nothing(
    pricer, log_analytics, tmp_path: Path
):
    """Log Analytics down and the dead-letter account gone: raise; after recovery nothing is lost."""
    from tests.conftest import REPO, need_tool

    need_tool(REPO / "node_modules" / ".bin" / "azurite-blob", "Azurite")
    own = Azurite(tmp_path / "azurite")
    own.start()
    try:
        log_analytics.faults = FaultPlan(rate=1.0, kinds=(Fault.unavailable(),))
        writer = la_writer(log_analytics, max_attempts=1)
        dead = container_store(own, "deadletter")
        first = messages([to_body(make_event()) for _ in range(50)], "p0")
        second = messages([to_body(make_event()) for _ in range(50)], "p1")
        assert ingest_batch(first, pricer=pricer, writer=writer, deadletter=dead).dead_lettered == 50

        own.stop()
        with pytest.raises(SinkError):
            ingest_batch(second, pricer=pricer, writer=writer, deadletter=dead)

        own.start()  # same port, same data folder: the account is back
        again = ingest_batch(second, pricer=pricer, writer=writer, deadletter=dead)  # the retry policy
        assert again.dead_lettered == 50

        log_analytics.faults = FaultPlan()
        report = replay_to_pipeline(dead, pricer=pricer, writer=la_writer(log_analytics))
        assert report.replayed == 100
        expected = {json.loads(m.body)["requestId"] for m in first + second}
        assert sorted(table_ids(log_analytics)) == sorted(expected)
    finally:
        own.stop()


class CopyingWriter:
    """Returns failed rows as copies (a legitimate writer choice): a hole ingest used to have."""

    def write(self, rows: Sequence[Row]) -> WriteResult:
        return WriteResult(failed=[FailedRow(dict(row), Reason.SINK_UNAVAILABLE, "down") for row in rows])


def test_failed_rows_returned_as_copies_are_still_dead_lettered(pricer, tmp_path: Path):
    """Failures are matched by RequestId, so a writer returning row copies loses nothing."""
    dead = container_or_folder(tmp_path)
    summary = ingest_batch(
        messages([to_body(make_event()) for _ in range(3)]),
        pricer=pricer,
        writer=CopyingWriter(),
        deadletter=dead,
    )
    assert (summary.dead_lettered, summary.accounted) == (3, True)
    assert len(list(dead.records())) == 3


class MiscountingWriter:
    """Says it wrote more rows than it was given."""

    def write(self, rows: Sequence[Row]) -> WriteResult:
        return WriteResult(written=len(rows) + 1)


def test_a_miscounting_writer_gets_its_batch_dead_lettered_not_raised(pricer, tmp_path: Path):
    """A writer that cannot account for its rows: every row is dead-lettered (internal-error)."""
    dead = container_or_folder(tmp_path)
    summary = ingest_batch(
        messages([to_body(make_event()) for _ in range(4)]),
        pricer=pricer,
        writer=MiscountingWriter(),
        deadletter=dead,
    )
    assert (summary.written, summary.dead_lettered) == (0, 4)
    assert summary.reasons == {"internal-error": 4}


@pytest.mark.azurite
def test_the_trigger_writes_to_log_analytics_and_dead_letters_to_blob(
    azurite, log_analytics, config_files, monkeypatch
):
    """The Function with CHARGEBACK_SINK=loganalytics and DEADLETTER_CONTAINER: rows and dead-letters land."""
    import azure.functions as func

    import function_app
    from chargeback import wiring as runtime

    card, deployments = config_files
    container = f"dl-{uuid.uuid4().hex[:12]}"
    env = {
        "CHARGEBACK_SINK": "loganalytics",
        "LOGS_INGESTION_ENDPOINT": log_analytics.endpoint,
        "LOGS_DCR_IMMUTABLE_ID": "dcr-local",
        "STORAGE_CONNECTION_STRING": azurite.connection_string,
        "DEADLETTER_CONTAINER": container,
        "RATE_CARD_PATH": str(card),
        "DEPLOYMENTS_PATH": str(deployments),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    runtime.build_writer.cache_clear()
    runtime.build_deadletter.cache_clear()
    trigger = function_app.on_usage_events.build().get_user_function()
    events = [func.EventHubEvent(body=to_body(make_event())) for _ in range(3)] + [
        func.EventHubEvent(body=b"not json")
    ]
    trigger(events)
    assert len(table_ids(log_analytics)) == 3
    records = list(container_store(azurite, container).records())
    assert [r.reason for r in records] == [Reason.INVALID_JSON]
    runtime.build_writer.cache_clear()
    runtime.build_deadletter.cache_clear()


def test_duckdb_sink_refuses_a_redelivered_batch_after_a_partial_outage(pricer, tmp_path: Path):
    """DuckDB keyed on RequestId: a batch delivered again after a crash adds no row."""
    store, dead = DuckDBStore(), container_or_folder(tmp_path)
    batch = messages([to_body(make_event()) for _ in range(20)])
    ingest_batch(batch[:10], pricer=pricer, writer=store, deadletter=dead)
    again = ingest_batch(batch, pricer=pricer, writer=store, deadletter=dead)
    assert (again.written, again.duplicates, store.count()) == (10, 10, 20)
