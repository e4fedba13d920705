"""The Log Analytics usage writer: rows to a custom table through the Logs Ingestion API.

    rows ─► row_for_json ─► gzip chunks ≤ 1 MB (compressed, as sent) ─► LogsIngestionClient.upload
                                                        │ 429/5xx/timeout/dropped: retry (Retry-After)
                                                        │ 413, 400: split the chunk in two and send each
                                                        └ gave up: the chunk's rows in WriteResult.failed

Wire format: ``POST {endpoint}/dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01``,
body a gzip JSON array (``Content-Encoding: gzip``), bearer scope ``https://monitor.azure.com/.default``.
The SDK's own ``upload(list)`` chunks by *uncompressed* size (~1 MiB, about 1,300 usage rows); we
chunk by the compressed size that actually crosses the wire (about 15,000 usage rows per call) and
hand each pre-gzipped body to ``upload`` as a stream, which the SDK sends as-is with
``Content-Encoding: gzip``. Should the service ever refuse such a body with 413, the writer halves
the chunk and retries the halves, so rows still land (in more calls) instead of failing. A 400 (a
row the stream refuses) is bisected the same way, down to the row at fault, so one bad row fails
alone instead of its whole chunk; at most ``bisect_budget`` extra calls per write go to that (a
stream that refuses every row, a DCR mismatch, should not cost a call per row).

Retries are ours, not azure-core's (``retry_total=0`` per call), so their bounds are explicit:
``max_attempts`` per chunk, exponential backoff, ``Retry-After`` honoured (never retried sooner; a
wait longer than ``max_retry_after`` or past the write's ``deadline`` gives the chunk up rather than
sleeping the Function away), per-call connect/read timeouts. After ``give_up_after`` chunks in a row
found the endpoint unavailable, the remaining chunks fail fast with the same reason.

A failed chunk's rows come back in ``WriteResult.failed`` (``sink-unavailable`` for throttling,
outages and timeouts, ``write-failed`` for a refused request such as 400/401/403/404 or a row too
large to send alone, ``internal-error`` for a row that cannot be serialised); ``write`` never raises
for a failed upload. Log Analytics does not deduplicate, so ``written_keys`` stays None: a
retried call that the service had in fact accepted (a timeout after ingestion) lands twice, which
is why every query and rollup dedupes on RequestId.
"""

from __future__ import annotations

import email.utils
import io
import json
import logging
import random
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from chargeback.core.pipeline import Row
from chargeback.edges.azure_errors import classify
from chargeback.edges.endpoints import is_local_endpoint
from chargeback.edges.sinks import FailedRow, WriteResult, row_for_json
from chargeback.errors import ConfigError, Reason, SinkUnavailable

if TYPE_CHECKING:
    from azure.monitor.ingestion import LogsIngestionClient

log = logging.getLogger("chargeback.edges.loganalytics")

MAX_BODY_BYTES = 1_000_000  # "1 MB per call"; the decimal reading keeps us under either one
# The service also refuses a body that inflates past 50 MiB (seen with very repetitive rows); usage
# rows compress about 10:1, so this cap only matters for pathological batches, and keeps a margin.
MAX_UNCOMPRESSED_BYTES = 40 * 1024 * 1024
_GZIP_OVERHEAD = 64  # header, trailer, closing bracket and final deflate block, generously


@dataclass(frozen=True, slots=True)
class Chunk:
    """A gzip JSON array of some rows (their indexes in the batch), ready to send."""

    indexes: list[int]
    body: bytes


def _deflate_bound(raw: int) -> int:
    """Most bytes deflate can emit for ``raw`` input bytes (stored blocks: 5 bytes per 16 KB)."""
    return raw + 5 * (raw // 16_000 + 1)


def gzip_chunks(
    payloads: Sequence[bytes], limit: int = MAX_BODY_BYTES, raw_limit: int = MAX_UNCOMPRESSED_BYTES
) -> tuple[list[Chunk], list[int]]:
    """Pack serialised rows into gzip JSON arrays of at most ``limit`` bytes each, in order.

    One pass with a streaming compressor per chunk: the size so far is known exactly after a sync
    flush, and the bytes fed since are bounded by their worst-case deflate size, so no chunk ever
    exceeds ``limit`` and each is filled to within about one row of it. A chunk also closes before its
    JSON text passes ``raw_limit`` bytes. Returns the chunks and the indexes of rows too large to fit
    any chunk on their own.
    """
    chunks: list[Chunk] = []
    oversize: list[int] = []
    index, count = 0, len(payloads)
    while index < count:
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
        parts = [compressor.compress(b"[")]
        size, pending, raw = len(parts[0]), 1, 2
        members: list[int] = []
        while index < count:
            piece = payloads[index]
            extra = len(piece) + (1 if members else 0)
            if members and raw + extra > raw_limit:
                break
            if size + _deflate_bound(pending + extra) + _GZIP_OVERHEAD > limit:
                if pending:
                    parts.append(compressor.flush(zlib.Z_SYNC_FLUSH))
                    size, pending = size + len(parts[-1]), 0
                    continue
                if members:
                    break
                oversize.append(index)
                index += 1
                continue
            if members:
                parts.append(compressor.compress(b","))
                size += len(parts[-1])
            parts.append(compressor.compress(piece))
            size += len(parts[-1])
            pending += extra
            raw += extra
            members.append(index)
            index += 1
        if members:
            parts.append(compressor.compress(b"]"))
            parts.append(compressor.flush(zlib.Z_FINISH))
            chunks.append(Chunk(members, b"".join(parts)))
    return chunks, oversize


def retry_after_seconds(headers: Mapping[str, str] | None, now: datetime | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if not headers:
        return None
    lowered = {key.lower(): value for key, value in headers.items()}
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        if name in lowered:
            try:
                return max(0.0, float(lowered[name]) / 1000)
            except ValueError:
                pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How one chunk ended: ok, or failed with a reason (``too_large``: split and try again)."""

    ok: bool
    reason: Reason = Reason.WRITE_FAILED
    detail: str = ""
    too_large: bool = False
    row_fault: bool = False  # 400: some row in the chunk does not fit the stream; bisect to find it


_OK = _Outcome(ok=True)


class LogAnalyticsWriter:
    """UsageWriter (and alerts writer) on ``azure-monitor-ingestion``'s ``LogsIngestionClient``."""

    def __init__(
        self,
        client: LogsIngestionClient,
        rule_id: str,
        stream_name: str,
        *,
        max_body_bytes: int = MAX_BODY_BYTES,
        max_attempts: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        max_retry_after: float = 60.0,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        deadline: float = 240.0,
        give_up_after: int = 2,
        bisect_budget: int = 64,
        enforce_https: bool | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rule_id or not stream_name:
            raise ConfigError("a Log Analytics writer needs a DCR immutable id and a stream name")
        self.client = client
        self.rule_id = rule_id
        self.stream_name = stream_name
        self.max_body_bytes = max_body_bytes
        self.max_attempts = max(1, max_attempts)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.deadline = deadline
        self.give_up_after = max(1, give_up_after)
        self.bisect_budget = max(0, bisect_budget)
        if enforce_https is None:
            endpoint = str(getattr(getattr(client, "_config", None), "endpoint", "") or "")
            enforce_https = not (endpoint and is_local_endpoint(endpoint))
        self.enforce_https = enforce_https
        self._sleep = sleep
        self._clock = clock
        self.calls = 0  # upload calls made, for benchmarks and tests

    # ------------------------------------------------------------------------------------------

    def supersede(self, rows: Sequence[Row]) -> WriteResult:
        """Later revisions of rows, appended: every query keeps the latest ``UsageRevision`` per RequestId."""
        return self.write(rows)

    def write(self, rows: Sequence[Row]) -> WriteResult:
        """Upload rows in ≤ 1 MB gzip chunks; rows of chunks that could not be sent are in ``failed``."""
        result = WriteResult()
        if not rows:
            return result
        started = self._clock()
        payloads: list[bytes] = []
        sendable: list[int] = []
        for index, row in enumerate(rows):
            try:
                payloads.append(
                    json.dumps(row_for_json(row), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
                )
                sendable.append(index)
            except (TypeError, ValueError) as exc:
                detail = f"row cannot be serialised as JSON: {type(exc).__name__}"
                result.failed.append(FailedRow(row, Reason.INTERNAL_ERROR, detail))
        chunks, oversize = gzip_chunks(payloads, self.max_body_bytes)
        for position in oversize:
            detail = f"row is larger than {self.max_body_bytes} bytes compressed"
            result.failed.append(FailedRow(rows[sendable[position]], Reason.WRITE_FAILED, detail))

        payload_of = dict(zip(sendable, payloads, strict=True))
        unavailable_in_a_row = 0
        bisections = 0
        queue = [[sendable[i] for i in chunk.indexes] for chunk in chunks]
        bodies: list[bytes | None] = [chunk.body for chunk in chunks]
        while queue:
            members, body = queue.pop(0), bodies.pop(0)
            if unavailable_in_a_row >= self.give_up_after:
                outcome = _Outcome(False, Reason.SINK_UNAVAILABLE, "not sent: Log Analytics was unavailable")
            elif self._clock() - started >= self.deadline:
                outcome = _Outcome(
                    False, Reason.SINK_UNAVAILABLE, f"not sent: write budget {self.deadline:g}s spent"
                )
            else:
                if body is None:
                    split, _ = gzip_chunks([payload_of[i] for i in members], self.max_body_bytes)
                    body = split[0].body if len(split) == 1 else None
                outcome = self._send(body, started) if body is not None else _Outcome(False, too_large=True)
            if outcome.ok:
                result.written += len(members)
                unavailable_in_a_row = 0
                continue
            if outcome.too_large and len(members) > 1:
                half = len(members) // 2
                queue[:0] = [members[:half], members[half:]]
                bodies[:0] = [None, None]
                log.info("log analytics: 413 for %d rows; sending them as two smaller calls", len(members))
                continue
            if outcome.row_fault and len(members) > 1 and bisections < self.bisect_budget:
                bisections += 1
                half = len(members) // 2
                queue[:0] = [members[:half], members[half:]]
                bodies[:0] = [None, None]
                log.info("log analytics: 400 for %d rows; bisecting to the row at fault", len(members))
                continue
            if outcome.too_large:
                outcome = _Outcome(
                    False, Reason.WRITE_FAILED, "HTTP 413: the service refused the row as too large"
                )
            unavailable_in_a_row = (
                unavailable_in_a_row + 1 if outcome.reason == Reason.SINK_UNAVAILABLE else 0
            )
            log.warning(
                "log analytics: %d rows to %s not written (%s): %s",
                len(members),
                self.stream_name,
                outcome.reason.value,
                outcome.detail,
            )
            result.failed.extend(FailedRow(rows[i], outcome.reason, outcome.detail) for i in members)
        return result

    def _send(self, body: bytes, started: float) -> _Outcome:
        """One chunk with bounded retries; never raises."""
        from azure.core.exceptions import HttpResponseError

        last = "no attempt"
        for attempt in range(1, self.max_attempts + 1):
            wait: float | None = None
            try:
                self.calls += 1
                self.client.upload(
                    self.rule_id,
                    self.stream_name,
                    io.BytesIO(body),
                    retry_total=0,
                    connection_timeout=self.connect_timeout,
                    read_timeout=self.timeout,
                    enforce_https=self.enforce_https,
                )
                return _OK
            except Exception as exc:
                kind = classify(exc)  # the one SDK-error table: retry only what is unavailable
                if kind is None:
                    log.exception("log analytics: unexpected error uploading %d bytes", len(body))
                    return _Outcome(False, Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {_short(exc)}")
                status = getattr(exc, "status_code", None)
                if status == 413:
                    return _Outcome(False, too_large=True)
                if kind is not SinkUnavailable:
                    reason = getattr(exc, "reason", None) or "refused"
                    return _Outcome(
                        False, Reason.WRITE_FAILED, f"HTTP {status}: {reason}", row_fault=status == 400
                    )
                if status is not None:
                    last = f"HTTP {status}"
                    headers = getattr(getattr(exc, "response", None), "headers", None)
                    wait = retry_after_seconds(headers) if headers is not None else None
                elif isinstance(exc, HttpResponseError):
                    last = f"{type(exc).__name__}: {exc.message}"
                else:
                    last = f"{type(exc).__name__}: no answer ({_short(exc)})"
            if attempt == self.max_attempts:
                break
            if wait is None:
                wait = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            elif wait > self.max_retry_after:
                return _Outcome(False, Reason.SINK_UNAVAILABLE, f"{last}; Retry-After {wait:g}s is too long")
            if self._clock() - started + wait >= self.deadline:
                return _Outcome(False, Reason.SINK_UNAVAILABLE, f"{last}; no time left to retry")
            log.info("log analytics: %s, retry %d in %.1fs", last, attempt, wait)
            self._sleep(wait)
        return _Outcome(False, Reason.SINK_UNAVAILABLE, f"{last} after {self.max_attempts} attempts")


def _short(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:limit]
