"""The local dead-letter store: a folder of JSONL files, the embedded default.

Each ``put`` writes one new file ``YYYY/MM/DD/deadletter-<hash>.jsonl`` atomically (``atomic_write``:
temp file, fsync, rename), so a crash never leaves half a record. The name derives from the content only (a
digest of the records' ids, which are digests of body and reason; the day is the earliest Event
Hub enqueued time among them, else the day of the put), so a repeated put of the same records lands
on the same name instead of doubling them, and the local store also finds a file of the same digest
under another day: re-running ``chargeback ingest`` on a file writes nothing new.

Replay keeps its ledger beside the records: ``replayed/<digest>.txt`` names the ids already
replayed (``ledger_name``, the same name in a Blob container), written with the same
``atomic_write``, so a second replay skips what the first did.

With DEADLETTER_REDACT_BODIES=true, ``RedactingDeadLetterStore`` keeps no request or response
body at rest (their sha256 and length instead), in the folder and the Blob container alike.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chargeback.core.pipeline import Message
from chargeback.edges.azure_errors import sink_error
from chargeback.edges.sinks import DeadLetter, DeadLetterStore

REPLAYED_PREFIX = "replayed/"


def atomic_write(target: Path, data: bytes) -> None:
    """Write a file whole or not at all: a temporary file beside it, fsync, then rename over the name.

    Raises OSError (the temporary file is removed); a reader never sees a half-written file.
    """
    temp = target.with_name(f"{target.name}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with temp.open("wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, target)
    except OSError:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
        raise


def ledger_name(ids: Collection[str]) -> str:
    """Name of a replay ledger file or blob: a digest of its ids, so marking twice writes the same one."""
    digest = hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:32]
    return f"{REPLAYED_PREFIX}{digest}.txt"


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
        data = "".join(record.to_json() + "\n" for record in records).encode("utf-8")
        try:
            atomic_write(self.root / batch_name(records), data)
        except OSError as exc:
            raise sink_error(exc, f"dead-letter folder {self.root} refused {len(records)} records") from exc

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

    def replayed_ids(self) -> set[str]:
        """Ids of records already replayed (the ledger files under ``replayed/``)."""
        ids: set[str] = set()
        ledger = self.root / REPLAYED_PREFIX
        if ledger.is_dir():
            for path in ledger.glob("*.txt"):
                ids.update(path.read_text(encoding="ascii").split())
        return ids

    def mark_replayed(self, ids: Collection[str]) -> None:
        """Record that these ids were replayed (one ledger file), so a second replay skips them."""
        if not ids:
            return
        data = "".join(f"{record_id}\n" for record_id in sorted(ids)).encode("ascii")
        try:
            atomic_write(self.root / ledger_name(ids), data)
        except OSError as exc:
            raise sink_error(exc, f"cannot write the replay ledger in {self.root}") from exc


REDACTED_FIELDS = ("requestBody", "responseBody")


def redact_body(body: bytes) -> bytes:
    """An event body without prompt or completion text: each body field becomes its sha256 and length.

    What replay needs to price reported usage stays (ids, usage, timestamps); a body that is not a
    JSON object (it was rejected as such) is replaced whole by its digest.
    """
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        doc = None
    if not isinstance(doc, dict):
        return json.dumps({"redacted": _digest(body)}, separators=(",", ":")).encode("ascii")
    redacted = {}
    for name in REDACTED_FIELDS:
        value = doc.get(name)
        if isinstance(value, str) and value:
            redacted[name] = _digest(value.encode("utf-8", "surrogatepass"))
            doc[name] = None
    if not redacted:
        return body
    doc["redactedBodies"] = redacted
    return json.dumps(doc, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _digest(data: bytes) -> dict[str, object]:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


class RedactingDeadLetterStore:
    """DEADLETTER_REDACT_BODIES=true: events are dead-lettered without their bodies (``redact_body``).

    Priced rows (``kind == "row"``) hold no body and pass unchanged. Everything else of a store
    (``records``, ``files``, the replay ledger) is the wrapped store's.
    """

    def __init__(self, inner: DeadLetterStore) -> None:
        self.inner = inner

    def put(self, records: Sequence[DeadLetter]) -> None:
        """Put the records with their bodies redacted."""
        self.inner.put([_redacted(record) for record in records])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def _redacted(record: DeadLetter) -> DeadLetter:
    if record.kind != "event":
        return record
    body = redact_body(record.message.body)
    if body == record.message.body:
        return record
    return dataclasses.replace(record, message=Message(body, record.message.source))
