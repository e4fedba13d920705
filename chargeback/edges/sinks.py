"""The edges' contracts: where usage rows and dead-letters go, whatever the backend.

A ``UsageWriter`` takes rows and says which it wrote, which it already had (duplicates) and which
it could not take (``failed``, with a reason); a ``ColumnWriter`` (the local store) also takes a
batch of whole columns when every key is new, all or nothing; a ``DeadLetterStore`` takes
dead-letter records or raises ``SinkError``; an ``AlertSink`` takes budget alert rows and says
which it recorded. ``chargeback.jobs.ingest`` combines the first two so that nothing is lost.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from chargeback.core.pipeline import Message, Row, Source
from chargeback.errors import Reason

if TYPE_CHECKING:
    import numpy as np

DEADLETTER_FORMAT = "aoai-chargeback-deadletter/1"


@dataclass(frozen=True, slots=True)
class FailedRow:
    """A row a writer could not take, and why."""

    row: Row
    reason: Reason
    detail: str


@dataclass(slots=True)
class WriteResult:
    """What a writer did with a batch of rows: every row is counted in exactly one field."""

    written: int = 0
    duplicates: int = 0
    failed: list[FailedRow] = field(default_factory=list)
    # RequestIds known to be new, when the backend can tell (DuckDB can; Log Analytics cannot).
    written_keys: set[str] | None = None
    # Rows the store held that a conflicting, earlier row of this batch replaced (the earliest row
    # of a RequestId wins): dead-lettered as conflicts; not rows of this batch, so not counted above.
    displaced: list[FailedRow] = field(default_factory=list)


class UsageWriter(Protocol):
    """Writes usage rows; a row whose RequestId it already holds may be reported as a duplicate."""

    def write(self, rows: Sequence[Row]) -> WriteResult:
        """Write rows; rows that cannot be written are returned in ``failed``, never dropped."""
        ...


@runtime_checkable
class ColumnWriter(Protocol):
    """Takes a batch of whole usage-table columns at once, when none of its keys is held."""

    def write_columns(self, columns: Mapping[str, np.ndarray[Any, Any]]) -> WriteResult | None:
        """All-or-nothing insert of whole usage-table columns.

        ``columns`` holds every column of the usage table (``table_columns(USAGE_TABLE)``), in table
        order, with the dtypes ``edges.store._column_arrays`` makes: real -> float64 (NaN = null),
        dateTime -> datetime64[us] of UTC wall time, int/long -> int64, boolean -> bool,
        string/dynamic -> object arrays of str. If every RequestId is new to the store and distinct
        in the batch, the rows are inserted and ``WriteResult(written=n, written_keys={ids})`` comes
        back. Otherwise (a key held or repeated, any refusal) NOTHING is written and None comes back:
        the caller sends those rows through ``write()`` (the row path, which handles duplicates,
        conflicts and bisection).
        """
        ...


@runtime_checkable
class RevisionWriter(Protocol):
    """Writes later revisions of usage rows (``UsageRevision``): in place where it can, else appended."""

    def supersede(self, rows: Sequence[Row]) -> WriteResult:
        """Write revisions; a revision not higher than the stored one changes nothing (a duplicate)."""
        ...


class DeadLetterStore(Protocol):
    """Keeps what could not be charged, with the original body, so it can be replayed."""

    def put(self, records: Sequence[DeadLetter]) -> None:
        """Persist every record or raise SinkError; partial success must be safe to repeat."""
        ...


class AlertSink(Protocol):
    """Where budget alert rows go; returns the AlertIds it accepted (recorded, so raised)."""

    def write_alerts(self, rows: Sequence[Row]) -> set[str]:
        """Write alert rows; return the AlertIds written."""
        ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One dead-lettered message: the untouched body, the reason code and where it came from."""

    message: Message
    reason: Reason
    detail: str
    dead_lettered_at: datetime
    field: str | None = None
    request_id: str = ""
    # "event": the message as received (replayed through the whole pipeline); "row": the priced
    # row of an event that failed after pricing (a writer refused it, or a conflict), which is all
    # a replay needs, so no prompt or completion text is kept for it.
    kind: str = "event"

    @property
    def id(self) -> str:
        """Stable id (body and reason), so a repeated put or a second replay is recognisable."""
        digest = hashlib.sha256(self.message.body)
        digest.update(b"\0" + self.reason.value.encode())
        return digest.hexdigest()[:32]

    def to_json(self) -> str:
        """One JSONL line, always encodable as UTF-8. The body is text when it is UTF-8, else base64.

        Any other field may hold what a caller sent (a detail quoting a value, a native error's
        message): a lone surrogate there is written as its JSON escape (``\\ud800``), which reads
        back as the same string, so writing a dead-letter cannot fail whatever the input.
        """
        record: dict[str, Any] = {
            "format": DEADLETTER_FORMAT,
            "id": self.id,
            "reason": self.reason.value,
            "detail": self.detail,
            "field": self.field,
            "requestId": self.request_id or None,
            "deadLetteredAt": self.dead_lettered_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "source": self.message.source.as_dict(),
            "kind": self.kind,
        }
        try:
            record["body"] = self.message.body.decode("utf-8")
        except UnicodeDecodeError:
            record["bodyBase64"] = base64.b64encode(self.message.body).decode("ascii")
        text = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = json.dumps(record, ensure_ascii=True, separators=(",", ":"))
        return text

    @classmethod
    def from_json(cls, line: str) -> DeadLetter:
        """Read back one JSONL line written by ``to_json``."""
        record = json.loads(line)
        if "bodyBase64" in record:
            body = base64.b64decode(record["bodyBase64"])
        else:
            body = str(record["body"]).encode("utf-8")
        src = record.get("source") or {}
        source = Source(
            kind=src.get("kind", ""),
            name=src.get("name", ""),
            position=src.get("position", ""),
            enqueued_time=src.get("enqueuedTime", ""),
        )
        return cls(
            message=Message(body, source),
            reason=Reason(record["reason"]),
            detail=record.get("detail", ""),
            dead_lettered_at=datetime.fromisoformat(record["deadLetteredAt"]),
            field=record.get("field"),
            request_id=record.get("requestId") or "",
            kind=record.get("kind") or "event",
        )


def row_for_json(row: Row) -> dict[str, Any]:
    """A row with wire-safe values: ISO-8601 UTC strings for datetimes, floats for Decimal costs."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            out[key] = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        elif isinstance(value, Decimal):
            out[key] = float(value)
        else:
            out[key] = value
    return out
