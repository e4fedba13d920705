"""The local dead-letter store: a folder of JSONL files, the embedded default.

Each ``put`` writes one new file ``YYYY/MM/DD/deadletter-<hash>.jsonl`` atomically (temp file,
fsync, rename), so a crash never leaves half a record. The name derives from the content only (a
digest of the records' ids, which are digests of body and reason; the day is the earliest Event
Hub enqueued time among them, else the day of the put), so a repeated put of the same records lands
on the same name instead of doubling them, and the local store also finds a file of the same digest
under another day: re-running ``chargeback ingest`` on a file writes nothing new.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

from chargeback.edges.sinks import DeadLetter
from chargeback.errors import SinkError, SinkUnavailable


def batch_digest(records: Sequence[DeadLetter]) -> str:
    """A digest of every record's id: the same records, in any order, give the same digest."""
    return hashlib.sha256("\n".join(sorted(r.id for r in records)).encode()).hexdigest()[:32]


def _batch_day(records: Sequence[DeadLetter]) -> datetime:
    """The earliest enqueued time of the records (a property of the delivery), else the put's time."""
    days: list[datetime] = []
    for record in records:
        try:
            days.append(datetime.fromisoformat(record.message.source.enqueued_time).astimezone(UTC))
        except ValueError:
            continue
    return min(days) if days else records[0].dead_lettered_at.astimezone(UTC)


def batch_name(records: Sequence[DeadLetter]) -> str:
    """Name of a batch's file or blob, from its content: ``YYYY/MM/DD/deadletter-<digest>.jsonl``."""
    return f"{_batch_day(records):%Y/%m/%d}/deadletter-{batch_digest(records)}.jsonl"


class LocalDeadLetterStore:
    """Dead-letters as JSONL files under a folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def put(self, records: Sequence[DeadLetter]) -> None:
        """Write the records as one new file; raise SinkError if the folder cannot take them."""
        if not records:
            return
        if self.root.exists() and any(self.root.glob(f"*/*/*/deadletter-{batch_digest(records)}.jsonl")):
            return  # the same records are already kept (a re-run, or a redelivery on another day)
        target = self.root / batch_name(records)
        temp = target.with_suffix(".jsonl.tmp")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with temp.open("w", encoding="utf-8") as handle:
                for record in records:
                    handle.write(record.to_json())
                    handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, target)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink(missing_ok=True)
            cls = SinkUnavailable if isinstance(exc, (TimeoutError, ConnectionError)) else SinkError
            raise cls(f"dead-letter folder {self.root} refused {len(records)} records: {exc}") from exc

    def files(self) -> list[Path]:
        """Every dead-letter file, oldest first."""
        return sorted(self.root.glob("*/*/*/deadletter-*.jsonl")) if self.root.exists() else []

    def records(self) -> Iterator[DeadLetter]:
        """Every dead-lettered record, oldest file first."""
        for path in self.files():
            with path.open(encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        yield DeadLetter.from_json(line)
