"""A local Log Analytics stand-in: the Logs Ingestion API and the query API over one DuckDB file.

Runs beside ``func start`` so the ``loganalytics`` sink and the KQL rollups work without Azure::

    python -m chargeback_dev.localserver --port 8089 --db .chargeback/loganalytics.duckdb

    POST /dataCollectionRules/{dcr}/streams/{stream}?api-version=2023-01-01
         gzip or plain JSON array; bearer token required (not verified); 413 over 1 MB; 204 on success;
         rows appended to the stream's table (``Custom-X`` -> ``X``): no dedupe, like Log Analytics
    POST /v1/workspaces/{id}/query   {"query": KQL, "timespan": ISO-8601 interval or duration}
         -> {"tables": [{"name": "PrimaryResult", "columns": [{"name", "type"}], "rows": [...]}]}
         KQL runs on DuckDB through ``duckdb-kql``; the timespan filters every table on TimeGenerated

It also holds APIM's diagnostic log tables, ``ApiManagementGatewayLlmLog`` and
``ApiManagementGatewayLogs`` (their documented columns, ``chargeback/schemas/azure_tables.json``),
which APIM's diagnostic setting fills in Azure: ``append_gateway_log`` is that setting here, so the
late usage of streams (``jobs/gateway_usage.py``) runs end to end through the real query client.

The real SDK clients talk to it unchanged: ``LogsIngestionClient(endpoint, credential)`` (pass
``enforce_https=False`` per call, which ``chargeback.edges.loganalytics`` does for localhost) and
``LogsQueryClient(credential, endpoint=endpoint)``. Tests inject faults per request with a
``FaultPlan``: 429 with Retry-After, 500, 503, 413, slow answers, dropped connections, the Nth
request failing. It binds to 127.0.0.1 only and logs no bodies.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import random
import re
import threading
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

from chargeback.core.schema import ALERTS_TABLE, USAGE_TABLE, azure_table_names, table_columns
from chargeback.edges.gatewaylog import append_rows, create_gateway_tables
from chargeback.edges.store import DUCKDB_TYPES

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger("chargeback_dev.localserver")

API_VERSION = "2023-01-01"
MAX_BODY_BYTES = 1_000_000  # "1 MB per call": the strict, decimal reading
MAX_INFLATED_BYTES = 256 * 1024 * 1024
TIME_GENERATED_WINDOW = timedelta(days=2)
TABLES = (USAGE_TABLE, ALERTS_TABLE)

_INGEST = re.compile(r"^/dataCollectionRules/(?P<rule>[^/]+)/streams/(?P<stream>[^/]+)$")
_QUERY = re.compile(r"^/v1/workspaces/(?P<workspace>[^/]+)/query$")
_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


# ----------------------------------------------------------------------------------------------
# Fault injection


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected failure. ``kind`` is ``status`` (answer ``status``), ``slow`` or ``drop``.

    ``slow`` waits ``delay`` seconds, then either writes the rows and answers 204 (``commit``: the
    service accepted the data but the client had given up: retries then duplicate rows, as in Log
    Analytics) or answers 503 without writing. ``drop`` reads the request and closes the connection
    without an answer, writing nothing.
    """

    kind: str
    status: int = 503
    retry_after: float | None = None
    delay: float = 0.0
    commit: bool = False

    @classmethod
    def throttled(cls, retry_after: float = 1) -> Fault:
        """429 Too Many Requests with a Retry-After header (seconds)."""
        return cls("status", 429, retry_after=retry_after)

    @classmethod
    def unavailable(cls, retry_after: float | None = None) -> Fault:
        """503 Service Unavailable, optionally with Retry-After."""
        return cls("status", 503, retry_after=retry_after)

    @classmethod
    def server_error(cls) -> Fault:
        """500 Internal Server Error."""
        return cls("status", 500)

    @classmethod
    def too_large(cls) -> Fault:
        """413 Payload Too Large, whatever the size."""
        return cls("status", 413)

    @classmethod
    def bad_request(cls) -> Fault:
        """400 Bad Request."""
        return cls("status", 400)

    @classmethod
    def slow(cls, delay: float, *, commit: bool = False) -> Fault:
        """An answer after ``delay`` seconds (past the client's timeout, typically)."""
        return cls("slow", delay=delay, commit=commit)

    @classmethod
    def drop(cls) -> Fault:
        """Close the connection without answering."""
        return cls("drop")

    @property
    def label(self) -> str:
        """Short name for counters: ``429``, ``slow``, ``slow+commit``, ``drop``."""
        if self.kind == "status":
            return str(self.status)
        return f"{self.kind}+commit" if self.commit else self.kind


@dataclass(slots=True)
class FaultPlan:
    """Which ingestion requests fail: by number (1-based) and/or at random at ``rate``."""

    by_request: dict[int, Fault] = field(default_factory=dict)
    rate: float = 0.0
    kinds: Sequence[Fault] = ()
    seed: int = 0
    apply_to_queries: bool = False
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def pick(self, number: int) -> Fault | None:
        """The fault for the ``number``-th request, if any (call under the server's lock)."""
        if number in self.by_request:
            return self.by_request[number]
        if self.rate and self.kinds and self._random.random() < self.rate:
            return self._random.choice(list(self.kinds))
        return None


@dataclass(slots=True)
class ServerStats:
    """What the server saw: request counts, statuses, injected faults, rows appended."""

    ingest_requests: int = 0
    query_requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    faults: Counter[str] = field(default_factory=Counter)
    rows_ingested: int = 0
    body_sizes: list[int] = field(default_factory=list)


# ----------------------------------------------------------------------------------------------
# Storage and KQL


def stream_table(stream: str) -> str | None:
    """The table a DCR stream feeds (``Custom-AOAIChargeback_CL`` -> ``AOAIChargeback_CL``)."""
    name = stream.removeprefix("Custom-")
    return name if name in TABLES else None


def create_table_sql(table: str) -> str:
    """The table as Log Analytics keeps it: the same columns, no key (appends never dedupe)."""
    columns = ", ".join(f'"{c.name}" {DUCKDB_TYPES[c.type]}' for c in table_columns(table))
    return f'CREATE TABLE IF NOT EXISTS "{table}" ({columns})'


def _select_sql(table: str, clamp_before: datetime | None, received: datetime) -> tuple[str, str]:
    """SELECT over ``unnest(from_json(body))`` casting each JSON field to its column type."""
    spec: dict[str, str] = {}
    exprs: list[str] = []
    now = f"TIMESTAMP '{received:%Y-%m-%d %H:%M:%S.%f}'"
    for column in table_columns(table):
        ref = f'r."{column.name}"'
        if column.type == "dynamic":
            spec[column.name] = "JSON"
            exprs.append(
                f"CASE WHEN json_type({ref}) = 'VARCHAR' THEN {ref} ->> '$' ELSE CAST({ref} AS VARCHAR) END"
            )
            continue
        spec[column.name] = "VARCHAR"
        if column.type == "dateTime":
            expr = f"TRY_CAST(TRY_CAST({ref} AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS TIMESTAMP)"
            if column.name == "TimeGenerated":
                expr = f"coalesce({expr}, {now})"
                if clamp_before is not None:
                    limit = f"TIMESTAMP '{clamp_before:%Y-%m-%d %H:%M:%S.%f}'"
                    expr = f"CASE WHEN {expr} < {limit} THEN {now} ELSE {expr} END"
            exprs.append(expr)
        elif column.type == "string":
            exprs.append(ref)
        else:
            exprs.append(f"TRY_CAST({ref} AS {DUCKDB_TYPES[column.type]})")
    names = ", ".join(f'"{c.name}"' for c in table_columns(table))
    sql = (
        f'INSERT INTO "{table}" ({names}) SELECT {", ".join(exprs)} '
        "FROM (SELECT unnest(from_json(?::JSON, ?)) AS r)"
    )
    return sql, json.dumps([spec])


def parse_timespan(value: str | None, now: datetime) -> tuple[datetime, datetime] | None:
    """An ISO-8601 ``start/end``, ``start/duration`` or ``duration`` (ending now), as naive UTC."""
    if not value:
        return None

    def instant(text: str) -> datetime:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed

    def duration(text: str) -> timedelta:
        match = _DURATION.match(text)
        if not match or text in ("P", "PT"):
            raise ValueError(f"not an ISO-8601 duration: {text!r}")
        parts = {k: float(v) for k, v in match.groupdict().items() if v}
        return timedelta(**parts)

    end_now = now.astimezone(UTC).replace(tzinfo=None)
    if "/" in value:
        first, second = value.split("/", 1)
        start = instant(first)
        end = start + duration(second) if second.startswith("P") else instant(second)
        return start, end
    return end_now - duration(value), end_now


def _wire(value: Any) -> Any:
    """A DuckDB value in the query API's JSON form."""
    if isinstance(value, datetime):
        value = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        return value.isoformat(timespec="microseconds") + "Z"
    if isinstance(value, date):
        return value.isoformat() + "T00:00:00Z"
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, timedelta):
        total = value.total_seconds()
        sign = "-" if total < 0 else ""
        hours, rest = divmod(abs(total), 3600)
        minutes, seconds = divmod(rest, 60)
        return f"{sign}{int(hours):02d}:{int(minutes):02d}:{seconds:09.6f}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=str)
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


class HttpError(Exception):
    """An error answer: status code, Azure-style error code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# ----------------------------------------------------------------------------------------------
# The server


class LocalLogAnalytics(ThreadingHTTPServer):
    """Logs Ingestion + Log Analytics query APIs over a DuckDB file, on 127.0.0.1."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        db: str | Path = ":memory:",
        *,
        port: int = 0,
        faults: FaultPlan | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        clamp_old_time_generated: bool = False,
    ) -> None:
        import duckdb

        super().__init__(("127.0.0.1", port), _Handler)
        self.db_path = str(db)
        if self.db_path != ":memory:":
            Path(self.db_path).parent.mkdir(parents=True, exist_ok=True)
        self.connection: duckdb.DuckDBPyConnection = duckdb.connect(self.db_path)
        self.connection.execute("SET TimeZone='UTC'")
        for table in TABLES:
            self.connection.execute(create_table_sql(table))
        create_gateway_tables(self.connection)
        self.catalog = str(self.connection.execute("SELECT current_database()").fetchall()[0][0])
        self.faults = faults or FaultPlan()
        self.max_body_bytes = max_body_bytes
        self.clamp_old_time_generated = clamp_old_time_generated
        self.stats = ServerStats()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """Base URL for LOGS_INGESTION_ENDPOINT and LOG_ANALYTICS_QUERY_ENDPOINT."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def start(self) -> LocalLogAnalytics:
        """Serve on a background thread."""
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="local-log-analytics", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the database."""
        self.stopping.set()
        if self._thread is not None:
            self.shutdown()
            self._thread.join(timeout=10)
        self.server_close()
        with self.lock:
            self.connection.close()

    def __enter__(self) -> LocalLogAnalytics:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def next_fault(self, *, query: bool) -> Fault | None:
        """Count the request and pick its injected fault, if any."""
        with self.lock:
            if query:
                self.stats.query_requests += 1
                if not self.faults.apply_to_queries:
                    return None
                number = self.stats.query_requests
            else:
                self.stats.ingest_requests += 1
                number = self.stats.ingest_requests
            fault = self.faults.pick(number)
            if fault is not None:
                self.stats.faults[fault.label] += 1
            return fault

    def ingest(self, table: str, rows_json: bytes) -> int:
        """Append a JSON array of rows to a table; returns the number of rows appended."""
        import duckdb

        received = datetime.now(UTC).replace(tzinfo=None)
        clamp = received - TIME_GENERATED_WINDOW if self.clamp_old_time_generated else None
        sql, spec = _select_sql(table, clamp, received)
        with self.lock:
            before = self._count(table)
            try:
                self.connection.execute(sql, [rows_json.decode("utf-8"), spec])
            except (duckdb.Error, UnicodeDecodeError) as exc:
                raise HttpError(400, "InvalidContent", f"rows do not fit the stream: {exc}") from exc
            added = self._count(table) - before
            self.stats.rows_ingested += added
        return added

    def append_gateway_log(self, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
        """What APIM's diagnostic setting does in Azure: append rows to its LLM or gateway log table."""
        if table not in azure_table_names():
            raise ValueError(f"{table} is not an APIM log table")
        with self.lock:
            return append_rows(self.connection, table, rows)

    def _count(self, table: str) -> int:
        row = self.connection.execute(f'SELECT count(*) FROM "{table}"').fetchone()
        return int(row[0]) if row else 0

    def run_query(self, kql: str, timespan: str | None) -> dict[str, Any]:
        """Run KQL with the timespan applied to every table's TimeGenerated; the API's JSON answer."""
        import duckdb
        import duckdb_kql
        from duckdb_kql.types import kusto_type

        span = parse_timespan(timespan, datetime.now(UTC))
        with self.lock:
            cursor = self.connection.cursor()
        try:
            cursor.execute("SET TimeZone='UTC'")
            if span is not None:
                start, end = span
                low, high = (f"TIMESTAMP '{t:%Y-%m-%d %H:%M:%S.%f}'" for t in (start, end))
                bounds = f'{low} AND "TimeGenerated" < {high}'
                for table in (*TABLES, *azure_table_names()):
                    cursor.execute(
                        f'CREATE TEMP VIEW "{table}" AS SELECT * FROM "{self.catalog}".main."{table}" '
                        f'WHERE "TimeGenerated" >= {bounds}'
                    )
            relation = duckdb_kql.kql(cursor, kql, allow_write=False)
            columns = [
                {"name": name, "type": kusto_type(kind)}
                for name, kind in zip(relation.columns, relation.types, strict=True)
            ]
            rows = [[_wire(value) for value in row] for row in relation.fetchall()]
        except (duckdb_kql.KqlError, duckdb.Error) as exc:
            raise HttpError(400, "BadArgumentError", f"{type(exc).__name__}: {exc}") from exc
        finally:
            cursor.close()
        return {"tables": [{"name": "PrimaryResult", "columns": columns, "rows": rows}]}

    def query(self, kql: str) -> list[tuple[Any, ...]]:
        """Run KQL in process (for tests and the developer's own checks)."""
        import duckdb_kql

        with self.lock:
            return duckdb_kql.kql(self.connection, kql, allow_write=False).fetchall()

    def sql(self, sql: str) -> list[tuple[Any, ...]]:
        """Run SQL in process (for tests)."""
        with self.lock:
            return self.connection.execute(sql).fetchall()


class _Handler(BaseHTTPRequestHandler):
    server: LocalLogAnalytics
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("local log analytics: " + format, *args)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(
        self, status: int, payload: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> None:
        with self.server.lock:
            self.server.stats.statuses[status] += 1
        data = json.dumps(payload).encode() if payload is not None else b""
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if data:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)
        except OSError:  # the client gave up (its timeout): nobody to answer
            self.close_connection = True

    def _error(self, error: HttpError, headers: dict[str, str] | None = None) -> None:
        self._send(error.status, {"error": {"code": error.code, "message": error.message}}, headers)

    def _drop(self) -> None:
        import socket

        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def do_GET(self) -> None:
        self._error(HttpError(405, "MethodNotAllowed", "only POST is served"))

    def do_POST(self) -> None:
        url = urlparse(self.path)
        body = self._read_body()
        ingest, query = _INGEST.match(url.path), _QUERY.match(url.path)
        try:
            if not ingest and not query:
                raise HttpError(404, "NotFound", "no such API")
            if not self.headers.get("Authorization", "").startswith("Bearer "):
                raise HttpError(401, "InvalidAuthenticationToken", "a bearer token is required")
            fault = self.server.next_fault(query=bool(query))
            if fault is not None and not self._inject(fault):
                return
            if fault is not None and fault.kind == "slow" and not fault.commit:
                raise HttpError(503, "ServiceUnavailable", "slow answer; nothing was written")
            if ingest:
                self._ingest(url.query, ingest.group("stream"), body)
                self._send(204)
            else:
                request = json.loads(body or b"{}")
                if not isinstance(request, dict) or not isinstance(request.get("query"), str):
                    raise HttpError(400, "BadArgumentError", 'body must be {"query": "...", "timespan": ...}')
                self._send(200, self.server.run_query(request["query"], request.get("timespan")))
        except HttpError as exc:
            self._error(exc)
        except (ValueError, TypeError) as exc:
            self._error(HttpError(400, "BadArgumentError", f"{type(exc).__name__}: {exc}"))
        except OSError:  # the client went away (a timeout): nothing to answer
            self.close_connection = True

    def _inject(self, fault: Fault) -> bool:
        """Apply a fault; False when the request is finished (answered or dropped)."""
        if fault.kind == "drop":
            self._drop()
            return False
        if fault.kind == "slow":
            self.server.stopping.wait(fault.delay)
            return True  # the request then runs; an uncommitted slow answer becomes a 503
        headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
        self._error(HttpError(fault.status, "InjectedFault", f"injected {fault.status}"), headers)
        return False

    def _ingest(self, query: str, stream: str, body: bytes) -> str:
        if parse_qs(query).get("api-version") != [API_VERSION]:
            raise HttpError(400, "InvalidApiVersion", f"api-version must be {API_VERSION}")
        with self.server.lock:
            self.server.stats.body_sizes.append(len(body))
        if len(body) > self.server.max_body_bytes:
            raise HttpError(
                413, "ContentLengthLimitExceeded", f"{len(body)} bytes; limit {self.server.max_body_bytes}"
            )
        table = stream_table(stream)
        if table is None:
            raise HttpError(404, "InvalidStream", f"no stream {stream!r} in this rule")
        if self.headers.get("Content-Encoding", "").lower() == "gzip":
            try:
                inflater = zlib.decompressobj(wbits=31)
                body = inflater.decompress(body, MAX_INFLATED_BYTES)
            except zlib.error as exc:
                raise HttpError(400, "InvalidContentEncoding", f"not gzip: {exc}") from exc
        rows = json.loads(body)
        if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
            raise HttpError(400, "InvalidContent", "body must be a JSON array of objects")
        if rows:
            self.server.ingest(table, json.dumps(rows).encode("utf-8"))
        return table


def main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - interactive
    """Run the local Log Analytics stand-in in the foreground."""
    parser = argparse.ArgumentParser(
        prog="python -m chargeback_dev.localserver", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument(
        "--db", default=".chargeback/loganalytics.duckdb", help="DuckDB file holding the tables"
    )
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of ingestion requests that fail")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the injected faults")
    parser.add_argument(
        "--clamp-time-generated",
        action="store_true",
        help="replace TimeGenerated older than 2 days by the receive time, as Log Analytics does",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    faults = FaultPlan(
        rate=args.fault_rate,
        kinds=(Fault.throttled(1), Fault.server_error(), Fault.unavailable(), Fault.drop()),
        seed=args.seed,
    )
    server = LocalLogAnalytics(
        args.db, port=args.port, faults=faults, clamp_old_time_generated=args.clamp_time_generated
    )
    print(f"local Log Analytics on {server.endpoint} (db {server.db_path}); set:")
    print(f"  CHARGEBACK_SINK=loganalytics LOGS_INGESTION_ENDPOINT={server.endpoint}")
    print("  LOGS_DCR_IMMUTABLE_ID=dcr-local LOG_ANALYTICS_WORKSPACE_ID=local")
    print(f"  LOG_ANALYTICS_QUERY_ENDPOINT={server.endpoint}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.connection.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.exit(main())
