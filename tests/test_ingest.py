"""ingest_batch: every message ends in the table or the dead-letter, exactly once, or the batch raises."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from chargeback.core.pipeline import Message, Row, Source, row_from_json, row_to_json
from chargeback.edges.deadletter import LocalDeadLetterStore
from chargeback.edges.sinks import DeadLetter, FailedRow, WriteResult
from chargeback.edges.store import DuckDBStore
from chargeback.errors import Reason, SinkError, SinkUnavailable
from chargeback.jobs.ingest import ingest_batch
from tests.conftest import make_event, to_body

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def messages(*bodies: bytes) -> list[Message]:
    return [Message(body, Source("file", "t.jsonl", str(i))) for i, body in enumerate(bodies, 1)]


def test_good_bad_and_duplicate_events_are_each_accounted_once(pricer, tmp_path: Path):
    """Written + duplicates + dead-lettered equals received; the store and folder agree."""
    good = make_event()
    store, dead = DuckDBStore(), LocalDeadLetterStore(tmp_path)
    batch = messages(to_body(good), to_body(good), b"{bad", to_body(make_event(schemaVersion="7")))
    summary = ingest_batch(batch, pricer=pricer, writer=store, deadletter=dead, now=NOW)
    assert (summary.received, summary.written, summary.duplicates, summary.dead_lettered) == (4, 1, 1, 2)
    assert summary.accounted
    assert summary.reasons == {"invalid-json": 1, "unknown-schema-version": 1}
    assert store.count() == 1
    assert len(list(dead.records())) == 2


def test_redelivered_batch_is_not_charged_twice(pricer, tmp_path: Path):
    """Replaying the same batch adds no rows and no cost: all duplicates."""
    store, dead = DuckDBStore(), LocalDeadLetterStore(tmp_path)
    batch = messages(*(to_body(make_event()) for _ in range(5)))
    first = ingest_batch(batch, pricer=pricer, writer=store, deadletter=dead, now=NOW)
    again = ingest_batch(batch, pricer=pricer, writer=store, deadletter=dead, now=NOW)
    assert (first.written, again.written, again.duplicates) == (5, 0, 5)
    assert again.cost_by_subscription == {}
    assert store.count() == 5


def test_summary_costs_only_rows_written_this_run(pricer, tmp_path: Path):
    """Cost per subscription sums the new rows' exact Decimal costs."""
    store, dead = DuckDBStore(), LocalDeadLetterStore(tmp_path)
    batch = messages(
        to_body(make_event()), to_body(make_event(subscriptionId="team-b", subscriptionName="B"))
    )
    summary = ingest_batch(batch, pricer=pricer, writer=store, deadletter=dead, now=NOW)
    per_request = Decimal(1000) * Decimal("2.50") / 10**6 + Decimal(200) * Decimal("10.00") / 10**6
    assert summary.cost_by_subscription == {
        ("team-a", "Team A", "USD"): per_request,
        ("team-b", "B", "USD"): per_request,
    }


class RefusingWriter:
    """A writer whose backend refuses some rows, as Log Analytics may for one chunk."""

    def __init__(self, refuse: set[str]) -> None:
        self.refuse: set[str] = refuse
        self.rows: list[Row] = []

    def write(self, rows: Sequence[Row]) -> WriteResult:
        result = WriteResult()
        for row in rows:
            if row["RequestId"] in self.refuse:
                result.failed.append(FailedRow(row, Reason.WRITE_FAILED, "HTTP 413"))
            else:
                self.rows.append(row)
                result.written += 1
        return result


def test_rows_the_writer_refuses_are_dead_lettered_as_their_priced_row(pricer, tmp_path: Path):
    """A row refused after pricing is dead-lettered as that row (no bodies), and replays as it was."""
    refused = make_event()
    writer, dead = RefusingWriter({refused["requestId"]}), LocalDeadLetterStore(tmp_path)
    summary = ingest_batch(
        messages(to_body(refused), to_body(make_event())),
        pricer=pricer,
        writer=writer,
        deadletter=dead,
        now=NOW,
    )
    assert (summary.written, summary.dead_lettered) == (1, 1)
    [record] = dead.records()
    assert record.reason == Reason.WRITE_FAILED
    assert record.request_id == refused["requestId"]
    assert record.kind == "row"
    row = row_from_json(record.message.body)
    assert (row["RequestId"], row["SubscriptionId"], row["PromptTokens"]) == (
        refused["requestId"],
        "team-a",
        1000,
    )
    assert isinstance(row["TotalCost"], Decimal)
    assert row_to_json(row) == record.message.body  # exact: costs as decimal strings
    assert b"messages" not in record.message.body


class DownWriter:
    def write(self, rows: Sequence[Row]) -> WriteResult:
        raise SinkUnavailable("ingestion endpoint unreachable")


def test_writer_outage_dead_letters_the_whole_batch(pricer, tmp_path: Path):
    """When the writer is down, every charge is dead-lettered with sink-unavailable for replay."""
    dead = LocalDeadLetterStore(tmp_path)
    summary = ingest_batch(
        messages(*(to_body(make_event()) for _ in range(3))),
        pricer=pricer,
        writer=DownWriter(),
        deadletter=dead,
        now=NOW,
    )
    assert (summary.written, summary.dead_lettered) == (0, 3)
    assert summary.reasons == {"sink-unavailable": 3}


class DownDeadLetter:
    def put(self, records: Sequence[DeadLetter]) -> None:
        raise SinkUnavailable("container unreachable")


def test_when_nothing_can_take_an_event_the_batch_raises(pricer):
    """Writer and dead-letter both down: raise SinkError so the retry policy holds the checkpoint."""
    with pytest.raises(SinkError):
        ingest_batch(
            messages(to_body(make_event()), b"bad"),
            pricer=pricer,
            writer=DownWriter(),
            deadletter=DownDeadLetter(),
            now=NOW,
        )


def test_a_healthy_batch_never_touches_the_dead_letter(pricer):
    """With nothing to dead-letter, a broken dead-letter store does not fail the batch."""
    summary = ingest_batch(
        messages(to_body(make_event())),
        pricer=pricer,
        writer=DuckDBStore(),
        deadletter=DownDeadLetter(),
        now=NOW,
    )
    assert summary.written == 1


@pytest.mark.parametrize("enabled", [True, False])
def test_the_garbage_collector_is_paused_per_batch_and_restored(pricer, tmp_path: Path, enabled: bool):
    """The collector is off while a batch runs and back as it was afterwards, also when it raises."""
    import gc

    seen: list[bool] = []

    class Writer:
        def write(self, rows: Sequence[Row]) -> WriteResult:
            seen.append(gc.isenabled())
            return WriteResult(written=len(rows))

    class Refusing:
        def put(self, records: Sequence[DeadLetter]) -> None:
            raise SinkUnavailable("down")

    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        dead = LocalDeadLetterStore(tmp_path)
        ingest_batch(
            messages(to_body(make_event())), pricer=pricer, writer=Writer(), deadletter=dead, now=NOW
        )
        assert seen == [False]
        assert gc.isenabled() is enabled
        with pytest.raises(SinkError):
            ingest_batch(messages(b"{bad"), pricer=pricer, writer=Writer(), deadletter=Refusing(), now=NOW)
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()
