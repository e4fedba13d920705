"""The local dead-letter store: a folder of JSONL files, the embedded default.

Each ``put`` writes one new file ``YYYY/MM/DD/deadletter-<time>-<hash>.jsonl`` atomically (temp file,
fsync, rename), so a crash never leaves half a record and a repeated put of the same records lands
on the same name instead of doubling them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Sequence
from datetime import UTC
from pathlib import Path

from chargeback.edges.sinks import DeadLetter
from chargeback.errors import SinkError, SinkUnavailable


def batch_name(records: Sequence[DeadLetter]) -> str:
    """File name for a batch: its first record's time plus a digest of all its ids."""
    first = records[0].dead_lettered_at.astimezone(UTC)
    digest = hashlib.sha256("\n".join(sorted(r.id for r in records)).encode()).hexdigest()[:16]
    return f"{first:%Y/%m/%d}/deadletter-{first:%H%M%S}-{digest}.jsonl"


class LocalDeadLetterStore:
    """Dead-letters as JSONL files under a folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def put(self, records: Sequence[DeadLetter]) -> None:
        """Write the records as one new file; raise SinkError if the folder cannot take them."""
        if not records:
            return
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
