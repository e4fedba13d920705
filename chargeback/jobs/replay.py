"""Replay dead-letters: back through the pipeline, or re-sent to Event Hub, each at most once.

    dead-letter store ─► pending records (unique ids, not in the replay ledger, chosen reasons)
        ├── --to pipeline: ingest_batch(configured writer, same dead-letter store)
        │       written / duplicate ─────────────► ledger: replayed
        │       failed with a new reason ────────► new record (pending) + ledger: old id replayed
        │       failed with the same reason ─────► unchanged, still pending (not written twice)
        └── --to eventhub: EventHubProducerClient, partition key = the event's subscriptionId
                sent ───────────────────────────► ledger: replayed

The ledger (``replayed/<digest>.txt`` in the folder or container, kept by the dead-letter store
itself: ``LocalDeadLetterStore`` or ``BlobDeadLetterStore``) is written after each batch, so
a second replay skips what the first did, and an interrupted replay redoes at most one batch. A
redone batch is safe to the charge: the DuckDB store refuses a second row per RequestId, and Log
Analytics queries dedupe on RequestId.

By default only reasons a replay can cure are replayed (``sink-unavailable``, ``write-failed``,
``internal-error``, ``config-invalid``); contract rejections (``invalid-json`` ...) fail the same
way again unless the pipeline changed, so they are replayed only when asked for by ``--reason``.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from chargeback.core.pipeline import ROW_SOURCE, Message, Source
from chargeback.core.pricing import Pricer
from chargeback.edges.sinks import DeadLetter, DeadLetterStore, UsageWriter
from chargeback.errors import ConfigError, Reason
from chargeback.jobs.ingest import IngestSummary, ingest_batch

if TYPE_CHECKING:
    from azure.eventhub import EventHubProducerClient

log = logging.getLogger("chargeback.jobs.replay")

REPLAYABLE_REASONS = frozenset(
    {Reason.SINK_UNAVAILABLE, Reason.WRITE_FAILED, Reason.INTERNAL_ERROR, Reason.CONFIG_INVALID}
)
DEFAULT_BATCH = 5000


class ReplaySource(Protocol):
    """A dead-letter store that can list its records and remember which were replayed."""

    def put(self, records: Sequence[DeadLetter]) -> None: ...

    def records(self) -> Iterator[DeadLetter]: ...

    def replayed_ids(self) -> set[str]: ...

    def mark_replayed(self, ids: Collection[str]) -> None: ...


@dataclass(slots=True)
class ReplayReport:
    """What a replay did. ``pending == replayed + still_failing`` (dry runs replay nothing)."""

    target: str
    dry_run: bool = False
    records_seen: int = 0
    already_replayed: int = 0
    other_reasons: int = 0
    rows_left: int = 0  # priced rows an Event Hub replay leaves for a pipeline replay
    pending: int = 0
    replayed: int = 0
    still_failing: int = 0
    pending_reasons: Counter[str] = field(default_factory=Counter)
    new_reasons: Counter[str] = field(default_factory=Counter)
    ingest: IngestSummary = field(default_factory=IngestSummary)


def parse_reasons(values: Iterable[str] | None) -> frozenset[Reason] | None:
    """``--reason`` values as Reasons; None (all) for ``all``; the replayable set when none given."""
    chosen = list(values or [])
    if not chosen:
        return REPLAYABLE_REASONS
    if "all" in chosen:
        return None
    try:
        return frozenset(Reason(value) for value in chosen)
    except ValueError as exc:
        known = ", ".join(reason.value for reason in Reason)
        raise ConfigError(f"unknown reason ({exc}); known: {known}, or all") from None


def pending_records(
    source: ReplaySource, reasons: frozenset[Reason] | None, report: ReplayReport
) -> list[DeadLetter]:
    """Records to replay: one per id, not yet replayed, with a chosen reason; counts in ``report``."""
    done = source.replayed_ids()
    seen: set[str] = set()
    chosen: list[DeadLetter] = []
    for record in source.records():
        report.records_seen += 1
        if record.id in seen:
            continue
        seen.add(record.id)
        if record.id in done:
            report.already_replayed += 1
        elif reasons is not None and record.reason not in reasons:
            report.other_reasons += 1
        else:
            chosen.append(record)
            report.pending_reasons[record.reason.value] += 1
    report.pending = len(chosen)
    return chosen


def _batches(records: Sequence[DeadLetter], size: int) -> Iterator[Sequence[DeadLetter]]:
    for start in range(0, len(records), size):
        yield records[start : start + size]


def replay_message(record: DeadLetter) -> Message:
    """The dead-lettered body as a pipeline message, its source marked as a replay (of a row or event)."""
    original = record.message.source
    return Message(
        record.message.body,
        Source(
            kind=ROW_SOURCE if record.kind == "row" else "replay",
            name=original.name or original.kind,
            position=original.position,
            enqueued_time=original.enqueued_time,
        ),
    )


class _Recorder:
    """Passes records to the store, except those already in it (same id): remembers all of them."""

    def __init__(self, inner: DeadLetterStore, known: set[str]) -> None:
        self.inner, self.known = inner, known
        self.by_body: dict[bytes, DeadLetter] = {}
        self.by_request: dict[str, DeadLetter] = {}  # rows: an event that failed after pricing

    def put(self, records: Sequence[DeadLetter]) -> None:
        fresh = [record for record in records if record.id not in self.known]
        if fresh:
            self.inner.put(fresh)
        for record in records:
            self.by_body[record.message.body] = record
            if record.kind == "row" and record.request_id:
                self.by_request[record.request_id] = record

    def again(self, record: DeadLetter) -> DeadLetter | None:
        """The record this replay dead-lettered for ``record``, if any (its priced row, after pricing)."""
        found = self.by_body.get(record.message.body)
        if found is None and record.kind == "event":
            found = self.by_request.get(record.request_id or _request_id(record.message.body))
        return found


def _request_id(body: bytes) -> str:
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    value = event.get("requestId") if isinstance(event, dict) else None
    return value if isinstance(value, str) else ""


def replay_to_pipeline(
    source: ReplaySource,
    *,
    pricer: Pricer,
    writer: UsageWriter,
    reasons: frozenset[Reason] | None = REPLAYABLE_REASONS,
    dry_run: bool = False,
    batch_size: int = DEFAULT_BATCH,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> ReplayReport:
    """Send pending dead-letters through ``ingest_batch``; failures go back to ``source``.

    Raises SinkError (from ingest_batch) when the dead-letter store itself cannot take a record:
    nothing of that batch is marked, so running the replay again is the retry.
    """
    report = ReplayReport(target="pipeline", dry_run=dry_run)
    records = pending_records(source, reasons, report)
    if dry_run:
        return report
    for batch in _batches(records, batch_size):
        recorder = _Recorder(source, {record.id for record in batch})
        summary = ingest_batch(
            [replay_message(record) for record in batch],
            pricer=pricer,
            writer=writer,
            deadletter=recorder,
            clock=clock,
        )
        report.ingest.add(summary)
        done: set[str] = set()
        failing = 0
        for record in batch:
            again = recorder.again(record)
            if again is None:
                report.replayed += 1
                done.add(record.id)
            else:
                failing += 1
                report.still_failing += 1
                report.new_reasons[again.reason.value] += 1
                if again.id != record.id:  # superseded by a new record with the new reason
                    done.add(record.id)
        source.mark_replayed(done)
        log.info(
            "replay: batch of %d: %d charged or already charged, %d still failing",
            len(batch),
            len(batch) - failing,
            failing,
        )
    return report


# ----------------------------------------------------------------------------------------------
# Event Hub


def partition_key_for(body: bytes) -> str | None:
    """The event's subscriptionId (what APIM partitions by), or None when the body has none."""
    try:
        event = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if isinstance(event, dict):
        value = event.get("subscriptionId")
        if isinstance(value, str) and value:
            return value
    return None


def event_hub_groups(records: Iterable[DeadLetter]) -> dict[str | None, list[DeadLetter]]:
    """Records grouped by partition key, in order (None: let Event Hubs pick a partition)."""
    groups: dict[str | None, list[DeadLetter]] = {}
    for record in records:
        groups.setdefault(partition_key_for(record.message.body), []).append(record)
    return groups


def replay_to_event_hub(
    source: ReplaySource,
    producer: EventHubProducerClient,
    *,
    reasons: frozenset[Reason] | None = REPLAYABLE_REASONS,
    dry_run: bool = False,
) -> ReplayReport:
    """Re-send pending dead-letters to Event Hub (the Function processes them again).

    Each sent batch is marked replayed; a record too large for one event, or a batch the service
    refuses, stays pending and is counted in ``still_failing``.
    """
    from azure.eventhub import EventData
    from azure.eventhub.exceptions import EventHubError

    report = ReplayReport(target="eventhub", dry_run=dry_run)
    # A priced row is not an event: it replays through the pipeline's writer (--to pipeline) only.
    records = [record for record in pending_records(source, reasons, report) if record.kind != "row"]
    report.rows_left = report.pending - len(records)
    report.pending = len(records)
    if dry_run:
        return report

    def send(batch: Any, members: list[DeadLetter]) -> None:
        if not members:
            return
        try:
            producer.send_batch(batch)
        except EventHubError as exc:
            log.warning("replay: Event Hub refused %d events: %s", len(members), type(exc).__name__)
            report.still_failing += len(members)
            report.new_reasons[Reason.SINK_UNAVAILABLE.value] += len(members)
            return
        source.mark_replayed({record.id for record in members})
        report.replayed += len(members)

    for key, group in event_hub_groups(records).items():
        batch, members = producer.create_batch(partition_key=key), []
        for record in group:
            event = EventData(record.message.body)
            try:
                batch.add(event)
                members.append(record)
                continue
            except ValueError:
                send(batch, members)
                batch, members = producer.create_batch(partition_key=key), []
            try:
                batch.add(event)
                members.append(record)
            except ValueError:
                report.still_failing += 1
                report.new_reasons[Reason.BODY_TOO_LARGE.value] += 1
        send(batch, members)
    return report
