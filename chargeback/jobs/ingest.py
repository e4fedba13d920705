"""Ingest a batch so that nothing is lost: every message ends in the usage table or the dead-letter.

    messages ─► pipeline.process_batch ─► charges ──► UsageWriter ──► written | duplicate
                                   │                       └── failed rows ──┐
                                   └─► rejections ───────────────────────────┴─► DeadLetterStore

If the dead-letter store itself refuses, ``ingest_batch`` raises ``SinkError`` after logging the
counts: the trigger's retry policy then holds the Event Hub checkpoint and the batch comes again.
A redelivered batch is safe: RequestId dedupes rows, and dead-letter records have stable ids.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from chargeback.core.pipeline import (
    ROW_SOURCE,
    Charge,
    Message,
    Rejection,
    Row,
    Source,
    collector_paused,
    conflict_detail,
    fault_detail,
    is_conflict,
    process_message,
    row_identity,
    row_to_json,
)
from chargeback.core.pricing import Pricer
from chargeback.core.schema import USAGE_TABLE, table_columns
from chargeback.edges.sinks import (
    ColumnWriter,
    DeadLetter,
    DeadLetterStore,
    FailedRow,
    UsageWriter,
    WriteResult,
)
from chargeback.errors import Reason, SinkError

if TYPE_CHECKING:
    from chargeback.core.columnar import Tallies

log = logging.getLogger("chargeback.jobs.ingest")

SubscriptionKey = tuple[str, str, str]  # (SubscriptionId, SubscriptionName, Currency)


@dataclass(slots=True)
class IngestSummary:
    """Counts of one or many batches. ``received == written + duplicates + dead_lettered``."""

    received: int = 0
    written: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    displaced: int = 0  # stored rows of earlier batches replaced by an earlier conflicting row
    reasons: Counter[str] = field(default_factory=Counter)
    usage_sources: Counter[str] = field(default_factory=Counter)
    pricing_statuses: Counter[str] = field(default_factory=Counter)
    cost_by_subscription: dict[SubscriptionKey, Decimal] = field(default_factory=dict)
    requests_by_subscription: Counter[SubscriptionKey] = field(default_factory=Counter)

    def add(self, other: IngestSummary) -> None:
        """Fold another summary into this one."""
        self.received += other.received
        self.written += other.written
        self.duplicates += other.duplicates
        self.dead_lettered += other.dead_lettered
        self.displaced += other.displaced
        self.reasons.update(other.reasons)
        self.usage_sources.update(other.usage_sources)
        self.pricing_statuses.update(other.pricing_statuses)
        self.requests_by_subscription.update(other.requests_by_subscription)
        for key, cost in other.cost_by_subscription.items():
            self.cost_by_subscription[key] = self.cost_by_subscription.get(key, Decimal(0)) + cost

    @property
    def accounted(self) -> bool:
        """True when every received message is in exactly one outcome."""
        return self.received == self.written + self.duplicates + self.dead_lettered


def _unique_by_request_id(charges: list[Charge]) -> tuple[list[Charge], int, list[tuple[Charge, str]]]:
    """One charge per RequestId; the others are redeliveries (counted) or conflicts (with a detail).

    Of conflicting rows the earliest TimeGenerated is kept (the rule of both stores and the queries),
    so a writer that cannot compare with what it holds (Log Analytics) gets the same row.
    """
    position: dict[str, int] = {}
    unique: list[Charge] = []
    duplicates = 0
    conflicts: list[tuple[Charge, str]] = []
    for charge in charges:
        request_id = charge.row["RequestId"]
        index = position.get(request_id)
        if index is None:
            position[request_id] = len(unique)
            unique.append(charge)
            continue
        held = unique[index]
        identity = row_identity(held.row)
        if not is_conflict(charge.row, identity):
            duplicates += 1
        elif charge.row["TimeGenerated"] < held.row["TimeGenerated"]:
            unique[index] = charge
            conflicts.append((held, conflict_detail(held.row, row_identity(charge.row))))
        else:
            conflicts.append((charge, conflict_detail(charge.row, identity)))
    return unique, duplicates, conflicts


def _row_letter(charge: Charge, reason: Reason, detail: str, stamp: datetime) -> DeadLetter:
    """A charge that failed after pricing, dead-lettered as its priced row: no bodies at rest."""
    message = Message(row_to_json(charge.row), charge.message.source)
    return DeadLetter(message, reason, detail, stamp, None, charge.row["RequestId"], kind="row")


def _all_failed(charges: list[Charge], reason: Reason, detail: str) -> WriteResult:
    return WriteResult(failed=[FailedRow(charge.row, reason, detail) for charge in charges])


def _write(writer: UsageWriter, charges: list[Charge]) -> WriteResult:
    """Write the rows; whatever goes wrong, every row comes back written, duplicate or failed.

    A writer that raises, returns something else than a WriteResult, miscounts, or reports a failed
    row that is not one of ours cannot say which rows it kept: every row is then treated as failed
    (dead-lettered). Some may also be in the table; replay and queries dedupe on RequestId, so
    this errs on the side of charging once later rather than never.
    """
    rows = [charge.row for charge in charges]
    if not rows:
        return WriteResult()
    try:
        outcome: object = writer.write(rows)
    except SinkError as exc:
        return _all_failed(charges, exc.reason, exc.detail)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # native code (a DuckDB or SDK panic) fails these rows, not the process
        return _all_failed(charges, Reason.INTERNAL_ERROR, f"writer raised {fault_detail(exc)}")
    if not isinstance(outcome, WriteResult):
        return _all_failed(charges, Reason.INTERNAL_ERROR, f"writer returned {type(outcome).__name__}")
    result = outcome
    accounted = result.written + result.duplicates + len(result.failed)
    ours = {row["RequestId"] for row in rows}
    failed_ids = [failure.row.get("RequestId") for failure in result.failed]
    if accounted != len(rows) or not set(failed_ids) <= ours or len(set(failed_ids)) != len(failed_ids):
        log.critical(
            "chargeback: writer accounted for %d of %d rows (%d failed); dead-lettering all of them",
            accounted,
            len(rows),
            len(failed_ids),
        )
        return _all_failed(
            charges, Reason.INTERNAL_ERROR, f"writer accounted for {accounted} of {len(rows)} rows"
        )
    return result


def ingest_batch(
    messages: Iterable[Message],
    *,
    pricer: Pricer,
    writer: UsageWriter,
    deadletter: DeadLetterStore,
    now: datetime | None = None,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> IngestSummary:
    """Process, write and dead-letter one batch; raise SinkError only if something would be lost."""
    with collector_paused():
        return _ingest_batch(
            list(messages), pricer=pricer, writer=writer, deadletter=deadletter, now=now, clock=clock
        )


def _columnar(
    batch: list[Message],
    pricer: Pricer,
    writer: ColumnWriter,
    now: datetime,
) -> tuple[Tallies | None, int, dict[int, Charge | Rejection], list[tuple[int, Row]]]:
    """Write the part of the batch the columnar path takes as columns; the rest's per-event outcomes.

    Returns what the written columns add to the summary (None when nothing went that way), how
    many rows were written, the outcome of every other message by its position in the batch, and
    the per-event rows written along with the columns (by position: ``_with_rest_rows``). A
    RequestId that a message of the rest also charges, or that two accepted messages share, goes
    the per-event way with its messages (its duplicates and conflicts are decided there, as
    always); so does everything when the writer refuses the columns (a key it holds, any fault).
    """
    import numpy as np  # with the columnar path only: Log Analytics' Function never needs it

    from chargeback.core.columnar import build_columns

    try:
        columns = build_columns(batch, pricer, now)
    except Exception:  # a fault here must cost speed, never an event: the per-event path takes all
        log.exception("chargeback: the columnar path failed; the batch goes the per-event way")
        outcomes = {index: process_message(message, pricer, now) for index, message in enumerate(batch)}
        return None, 0, outcomes, []
    outcomes = {index: process_message(batch[index], pricer, now) for index in columns.rest}
    taken = {outcome.row["RequestId"] for outcome in outcomes.values() if isinstance(outcome, Charge)}
    ids = columns.columns["RequestId"].tolist()
    repeated = Counter(ids) if len(set(ids)) != len(ids) else Counter()
    if taken or repeated:
        keep = np.fromiter(
            (request_id not in taken and repeated[request_id] <= 1 for request_id in ids), bool, len(ids)
        )
        if not keep.all():
            for index in columns.positions[~keep].tolist():
                outcomes[index] = process_message(batch[index], pricer, now)
            columns = columns.keep(keep)
    if not len(columns):
        return None, 0, outcomes, []
    arrays, merged = _with_rest_rows(columns.columns, batch, outcomes)
    try:
        tallies = columns.tallies()
        result: object = writer.write_columns(arrays)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        log.warning(
            "chargeback: the columns were not written (%s); the rows go one by one", fault_detail(exc)
        )
        result = None
    count = len(columns) + len(merged)
    if not (
        isinstance(result, WriteResult)
        and result.written == count
        and not result.failed
        and not result.duplicates
        and (result.written_keys is None or result.written_keys == set(arrays["RequestId"].tolist()))
    ):
        if result is not None:
            log.critical(
                "chargeback: the writer answered the columns with %r; the rows go one by one", result
            )
        for index in columns.positions.tolist():
            outcomes[index] = process_message(batch[index], pricer, now)
        return None, 0, outcomes, []
    for index in merged:
        del outcomes[index]
    return tallies, count, outcomes, [(index, charge.row) for index, charge in merged.items()]


def _with_rest_rows(
    columns: dict[str, Any], batch: list[Message], outcomes: dict[int, Charge | Rejection]
) -> tuple[dict[str, Any], dict[int, Charge]]:
    """The columns with the per-event path's rows of the rest appended, so one insert takes both.

    Only charges of events (not replayed rows) whose RequestId is once in the batch, and only when
    their arrays (``_column_arrays``, what ``write()`` inserts) have the columns' types; otherwise
    the columns alone, and those rows go through ``write()`` as before.
    """
    import numpy as np

    from chargeback.edges.store import _column_arrays

    charges = {
        index: outcome
        for index, outcome in outcomes.items()
        if isinstance(outcome, Charge) and batch[index].source.kind != ROW_SOURCE
    }
    counts = Counter(charge.row["RequestId"] for charge in charges.values())
    charges = {index: charge for index, charge in charges.items() if counts[charge.row["RequestId"]] == 1}
    if not charges:
        return columns, {}
    try:
        extra = _column_arrays(table_columns(USAGE_TABLE), [charge.row for charge in charges.values()])
    except Exception:  # the row path makes its own arrays and says what is wrong
        return columns, {}
    if list(extra) != list(columns) or any(extra[name].dtype != columns[name].dtype for name in columns):
        return columns, {}
    return {name: np.concatenate([columns[name], extra[name]]) for name in columns}, charges


def _tally_charged(
    summary: IngestSummary, charged: list[tuple[tuple[int, int], Row]], tallies: Tallies | None
) -> None:
    """The breakdowns of the written rows, each key first seen where the per-event path sees it."""
    sources: list[tuple[tuple[int, int], str, int]] = []
    statuses: list[tuple[tuple[int, int], str, int]] = []
    costs: list[tuple[tuple[int, int], SubscriptionKey, int, Decimal]] = []
    for order, row in charged:
        sources.append((order, row["UsageSource"], 1))
        statuses.append((order, row["PricingStatus"], 1))
        key = (row["SubscriptionId"], row["SubscriptionName"], row["Currency"])
        costs.append((order, key, 1, row["TotalCost"] or Decimal(0)))
    if tallies is not None:  # the columns' rows are all of the first round, at their positions
        sources += [((1, first), value, count) for first, value, count in tallies.sources]
        statuses += [((1, first), value, count) for first, value, count in tallies.statuses]
        costs += [((1, first), key, count, cost) for first, key, count, cost in tallies.subscriptions]
        sources.sort(key=_order)
        statuses.sort(key=_order)
        costs.sort(key=_order)
    for _, value, count in sources:
        summary.usage_sources[value] += count
    for _, value, count in statuses:
        summary.pricing_statuses[value] += count
    for _, key, count, cost in costs:
        summary.requests_by_subscription[key] += count
        summary.cost_by_subscription[key] = summary.cost_by_subscription.get(key, Decimal(0)) + cost


def _order(entry: tuple[Any, ...]) -> tuple[int, int]:
    order: tuple[int, int] = entry[0]
    return order


def _ingest_batch(
    batch: list[Message],
    *,
    pricer: Pricer,
    writer: UsageWriter,
    deadletter: DeadLetterStore,
    now: datetime | None,
    clock: Callable[[], datetime],
) -> IngestSummary:
    when = now or clock()
    tallies: Tallies | None = None
    written_rows: list[tuple[int, Row]] = []
    written_count = 0
    if isinstance(writer, ColumnWriter) and batch:
        tallies, written_count, outcomes, written_rows = _columnar(batch, pricer, writer, when)
    else:
        outcomes = {index: process_message(message, pricer, when) for index, message in enumerate(batch)}
    stamp = clock()
    records: list[DeadLetter] = []
    pending: list[tuple[int, Charge]] = []
    for index in sorted(outcomes):
        outcome = outcomes[index]
        if isinstance(outcome, Charge):
            pending.append((index, outcome))
        else:
            records.append(
                DeadLetter(
                    outcome.message, outcome.reason, outcome.detail, stamp, outcome.field, outcome.request_id
                )
            )
    duplicate_count = 0
    displaced: list[DeadLetter] = []  # rows of earlier batches, not of this one: counted apart
    # Rows known to be written, for the breakdowns, each with where it stands in the order the
    # per-event path has always charged them: (round, first position of its RequestId in round 1,
    # else its place in the round).
    charged: list[tuple[tuple[int, int], Row]] = [((1, index), row) for index, row in written_rows]
    rounds = 0
    # One RequestId per write. Another row of an id already in the batch goes in a later round, so
    # that the store compares it with the row it holds (the first written wins, whichever batch it
    # came in); a writer that cannot tell (Log Analytics) keeps the batch's first and the others
    # are conflicts here. Copies equal to the first are redeliveries (duplicates) at once.
    while pending:
        rounds += 1
        first_position: dict[str, int] = {}
        for index, charge in pending:
            first_position.setdefault(charge.row["RequestId"], index)
        unique, batch_duplicates, variants = _unique_by_request_id([charge for _, charge in pending])
        duplicate_count += batch_duplicates
        written = _write(writer, unique)
        written_count += written.written
        duplicate_count += written.duplicates
        # Failures are matched by RequestId (unique in ``unique``), not by object identity: a
        # writer may hand back a copy of the row it could not send.
        failed_ids = {failure.row["RequestId"]: failure for failure in written.failed}
        for place, charge in enumerate(unique):
            request_id = charge.row["RequestId"]
            failure = failed_ids.get(request_id)
            if failure is not None:
                records.append(_row_letter(charge, failure.reason, failure.detail, stamp))
            elif written.written_keys is None or request_id in written.written_keys:
                order = (rounds, first_position[request_id] if rounds == 1 else place)
                charged.append((order, charge.row))
        # Rows the store held that an earlier conflicting row of this batch replaced.
        displaced += [
            DeadLetter(
                Message(row_to_json(failure.row), Source("store", "displaced")),
                failure.reason,
                failure.detail,
                stamp,
                None,
                str(failure.row.get("RequestId") or ""),
                kind="row",
            )
            for failure in written.displaced
        ]
        if written.written_keys is None:
            records += [_row_letter(charge, Reason.CONFLICT, detail, stamp) for charge, detail in variants]
            break
        positions = {id(charge): index for index, charge in pending}
        pending = [(positions[id(charge)], charge) for charge, _ in variants]
    if records or displaced:
        try:
            deadletter.put(records + displaced)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            log.critical(
                "chargeback: %d of %d events could not be dead-lettered (%s); raising so it is retried",
                len(records),
                len(batch),
                exc,
            )
            if isinstance(exc, SinkError):
                raise
            raise SinkError(f"dead-letter store failed: {fault_detail(exc)}") from exc

    summary = IngestSummary(
        received=len(batch),
        written=written_count,
        duplicates=duplicate_count,
        dead_lettered=len(records),
        displaced=len(displaced),
    )
    summary.reasons.update(record.reason.value for record in records)
    _tally_charged(summary, charged, tallies)
    if records:
        log.warning(
            "chargeback: dead-lettered %d of %d events: %s", len(records), len(batch), dict(summary.reasons)
        )
    if not summary.accounted:  # cannot happen by construction; said loudly if it ever does
        log.critical(
            "chargeback: batch of %d not accounted: written=%d duplicates=%d dead_lettered=%d",
            summary.received,
            summary.written,
            summary.duplicates,
            summary.dead_lettered,
        )
    return summary
