"""The embedded store: a DuckDB file holding ``AOAIChargeback_CL`` (and the alerts table).

RequestId is the primary key, so a second delivery of the same call adds no row and is counted as
a duplicate: at-least-once delivery in, exactly-once charged. A later revision of a call's usage
(``UsageRevision``, from APIM's LLM log) replaces its row in place (``supersede``). Columns come from
``schemas/tables.json``, the file the Bicep loads too.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chargeback.core.pipeline import Row, conflict_detail, is_conflict, row_identity
from chargeback.core.schema import ALERTS_TABLE, USAGE_TABLE, Column, table_columns
from chargeback.edges.sinks import FailedRow, WriteResult
from chargeback.errors import Reason, SinkError, SinkUnavailable

if TYPE_CHECKING:
    import duckdb
    import numpy as np

# Log Analytics column type -> DuckDB type. `dynamic` is kept as JSON text.
DUCKDB_TYPES = {
    "string": "VARCHAR",
    "int": "INTEGER",
    "long": "BIGINT",
    "real": "DOUBLE",
    "boolean": "BOOLEAN",
    "dateTime": "TIMESTAMP",
    "dynamic": "VARCHAR",
}
PRIMARY_KEYS = {USAGE_TABLE: "RequestId", ALERTS_TABLE: "AlertId"}
# DuckDB checkpoints (rewrites the changed table data and the RequestId index into the file) when
# the write-ahead log passes this size; at its default, 16 MB, that is every ~40k rows, and each
# checkpoint costs more as the table grows. Fewer, larger ones: ~20 % off an ingest of 200k rows,
# close included; a crash replays at most this much log when the file is next opened.
CHECKPOINT_THRESHOLD = "256MB"


def _store_faults() -> tuple[type[BaseException], ...]:
    """DuckDB errors of the database itself, not of a row: splitting the batch would not help."""
    import duckdb

    return (
        duckdb.IOException,
        duckdb.OutOfMemoryException,
        duckdb.ConnectionException,
        duckdb.FatalException,
        duckdb.InternalException,
    )


def _earlier_conflicts(rows: Sequence[Row], held: dict[Any, Row]) -> list[Row]:
    """Incoming rows that conflict with the stored one and are earlier: the earliest row wins.

    The same rule as the queries on Log Analytics (the earliest TimeGenerated at the highest
    UsageRevision), so both stores charge a conflicting RequestId to the same row whichever came
    first; at an equal TimeGenerated the stored row stays.
    """
    winners = []
    for row in rows:
        stored = held.get(row.get("RequestId"))
        if stored is None or not is_conflict(row, row_identity(stored)):
            continue
        mine, theirs = row.get("TimeGenerated"), stored.get("TimeGenerated")
        if (
            isinstance(mine, datetime)
            and isinstance(theirs, datetime)
            and _utc_naive(mine) < _utc_naive(theirs)
        ):
            winners.append(row)
    return winners


def _as_row(stored: Row) -> Row:
    """A row read back from DuckDB as the pipeline builds it: UTC-aware time, Decimal costs."""
    row = dict(stored)
    stamp = row.get("TimeGenerated")
    if isinstance(stamp, datetime) and stamp.tzinfo is None:
        row["TimeGenerated"] = stamp.replace(tzinfo=UTC)
    for name, value in row.items():
        if isinstance(value, float):
            row[name] = Decimal(repr(value))
    return row


def _merged(first: WriteResult, second: WriteResult) -> WriteResult:
    keys = None
    if first.written_keys is not None and second.written_keys is not None:
        keys = first.written_keys | second.written_keys
    return WriteResult(
        written=first.written + second.written,
        duplicates=first.duplicates + second.duplicates,
        failed=[*first.failed, *second.failed],
        written_keys=keys,
        displaced=[*first.displaced, *second.displaced],
    )


def create_table_sql(table: str) -> str:
    """CREATE TABLE statement for a custom table, with its idempotency key as primary key."""
    columns = ",\n  ".join(f'"{c.name}" {DUCKDB_TYPES[c.type]}' for c in table_columns(table))
    return f'CREATE TABLE IF NOT EXISTS "{table}" (\n  {columns},\n  PRIMARY KEY ("{PRIMARY_KEYS[table]}")\n)'


def _utc_naive(value: datetime) -> datetime:
    """DuckDB TIMESTAMP holds UTC wall time; KQL sees it as a UTC datetime."""
    if value.tzinfo is UTC:
        # The usual case, a quarter of the cost of .replace(tzinfo=None), which parses keywords.
        return datetime.combine(value.date(), value.time())
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_NAT = -(2**63)  # numpy's NaT as int64: DuckDB reads it as NULL
_NAN = float("nan")  # DuckDB reads NaN in a numpy float column as NULL


def _timestamps(values: Sequence[Any]) -> np.ndarray[Any, Any]:
    """UTC wall time as ``datetime64[us]``: microseconds since the epoch, counted in integers.

    Naive values are taken as UTC already (as ``_utc_naive`` does). numpy converting datetime
    objects itself costs ~0.9 us each; this is ~0.25 us.
    """
    import numpy as np  # installed with pandas; imported lazily like it

    micros: list[int] = []
    append = micros.append
    for value in values:
        if value is None:
            append(_NAT)
            continue
        delta = value - (_EPOCH if value.tzinfo is not None else _NAIVE_EPOCH)
        append((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)
    return np.array(micros, dtype=np.int64).view("datetime64[us]")


def _column_arrays(columns: Sequence[Column], rows: Sequence[Row]) -> dict[str, np.ndarray[Any, Any]]:
    """The rows as one numpy array per column, which DuckDB scans without pandas in between.

    Anything unexpected in a column (a value of another type) leaves it an object array, and
    DuckDB decides: a value it cannot store fails the batch, as it did through pandas.
    """
    import numpy as np  # installed with pandas; imported lazily like it

    names = [column.name for column in columns]
    try:
        # One C-level pass: each row to a tuple in column order, then transposed by zip.
        transposed: list[Sequence[Any]] = list(zip(*map(itemgetter(*names), rows), strict=True))
        if not rows:
            transposed = [() for _ in names]
    except (KeyError, TypeError):
        transposed = [[row.get(name) for row in rows] for name in names]  # rows missing a column
    count = len(rows)
    data: dict[str, np.ndarray[Any, Any]] = {}
    for column, values in zip(columns, transposed, strict=True):
        array: np.ndarray[Any, Any] | None = None
        try:
            if column.type == "real":
                array = np.array([_NAN if v is None else float(v) for v in values], dtype=np.float64)
            elif column.type == "dateTime":
                array = _timestamps(values)
            elif column.type in {"int", "long", "boolean"}:
                array = np.array(values)
                if array.dtype.kind not in "iub":
                    array = None  # a None or another type in the column
        except (TypeError, ValueError, AttributeError, OverflowError):
            array = None
        if array is None:
            if column.type == "dateTime":
                objects = [_utc_naive(v) if isinstance(v, datetime) else v for v in values]
            elif column.type == "real":
                objects = [float(v) if isinstance(v, Decimal) else v for v in values]
            else:
                objects = list(values)
            array = np.fromiter(objects, dtype=object, count=count)
        data[column.name] = array
    return data


class DuckDBStore:
    """A DuckDB file (or ``:memory:``) with the custom tables; thread-safe for one process."""

    def __init__(self, path: str | Path = ":memory:") -> None:
        import duckdb

        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self.connection: duckdb.DuckDBPyConnection = duckdb.connect(self.path)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower():
                raise SinkError(f"cannot open the store {self.path}: {str(exc).splitlines()[0]}") from None
            # DuckDB lets one process write a file; a second ingest (or an open duckdb shell) waits.
            raise SinkUnavailable(
                f"the store {self.path} is in use by another process (DuckDB allows one writer at a "
                "time): wait for it to finish, or pass another --db"
            ) from None
        self.connection.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
        for table in PRIMARY_KEYS:
            self.connection.execute(create_table_sql(table))
            self._add_missing_columns(table)

    def _add_missing_columns(self, table: str) -> None:
        """Columns are only ever added (DESIGN): a file made by an older version gets the new ones."""
        present = {
            name.lower()
            for (name,) in self.connection.execute(
                "SELECT column_name FROM duckdb_columns() WHERE table_name = $table AND schema_name = 'main'",
                {"table": table},
            ).fetchall()
        }
        for column in table_columns(table):
            if column.name.lower() not in present:
                default = " DEFAULT 0" if column.name == "UsageRevision" else ""
                self.connection.execute(
                    f'ALTER TABLE "{table}" ADD COLUMN "{column.name}" {DUCKDB_TYPES[column.type]}{default}'
                )

    def write(self, rows: Sequence[Row]) -> WriteResult:
        """Insert usage rows; existing RequestIds are duplicates; a database error fails the rows."""
        return self.insert(USAGE_TABLE, rows)

    def write_columns(self, columns: Mapping[str, np.ndarray[Any, Any]]) -> WriteResult | None:
        """All-or-nothing insert of whole usage-table columns (``sinks.ColumnWriter``).

        The batch is one INSERT: if any RequestId is already held or repeated in the batch, or
        DuckDB refuses anything, the statement fails as a whole, nothing is written and None comes
        back for the caller to send the rows through ``write()``.
        """
        names = [column.name for column in table_columns(USAGE_TABLE)]
        if set(columns) != set(names):
            return None
        lengths = {len(array) for array in columns.values()}
        if len(lengths) != 1:
            return None
        count = lengths.pop()
        keys = set(columns["RequestId"].tolist())
        if count == 0:
            return WriteResult(written_keys=set())
        if len(keys) != count or not all(type(key) is str for key in keys):
            return None  # a key twice in the batch (or not a string id): the row path decides
        listed = ", ".join(f'"{name}"' for name in names)
        with self._lock:
            try:
                self.connection.register("incoming_columns", {name: columns[name] for name in names})
                try:
                    self.connection.execute(
                        f'INSERT INTO "{USAGE_TABLE}" ({listed}) SELECT {listed} FROM incoming_columns'
                    ).fetchall()
                finally:
                    self.connection.unregister("incoming_columns")
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception:  # a held key, a value DuckDB refuses, a fault: the row path says which
                return None
        return WriteResult(written=count, written_keys=keys)

    def insert(self, table: str, rows: Sequence[Row]) -> WriteResult:
        """Insert rows into a table, skipping keys it already holds.

        A batch DuckDB refuses is split in halves and each half tried again, down to single rows,
        so a row it cannot store fails alone (``write-failed``) and its neighbours are written: k
        bad rows in n cost about 2·k·log2(n) extra inserts. A fault of the database itself (I/O,
        out of memory, a closed or invalidated connection) fails the batch without splitting.
        A RequestId already held with another subscription or other token counts (at the same
        ``UsageRevision``) is not a redelivery but a conflict, and the row with the earliest
        TimeGenerated is charged, as the queries on Log Analytics decide: a later incoming row
        fails as ``conflict``; an earlier one replaces the stored row, which comes back in
        ``displaced`` to be dead-lettered.
        """
        if not rows:
            return WriteResult()
        try:
            result = self._insert(table, rows)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else ""
            detail = f"DuckDB refused the batch: {type(exc).__name__}: {first_line}"
            fatal = isinstance(exc, _store_faults())
            if fatal or len(rows) == 1:
                detail = detail.encode("utf-8", "backslashreplace").decode("utf-8")[:500]
                failed = [FailedRow(row, Reason.WRITE_FAILED, detail) for row in rows]
                return WriteResult(failed=failed, written_keys=set())
            half = len(rows) // 2
            return _merged(self.insert(table, rows[:half]), self.insert(table, rows[half:]))
        return result

    def _insert(self, table: str, rows: Sequence[Row]) -> WriteResult:
        """One attempt at the whole batch; raises what DuckDB (or the conversion) raises."""
        import duckdb

        columns = table_columns(table)
        arrays = _column_arrays(columns, rows)
        names = ", ".join(f'"{c.name}"' for c in columns)
        key = PRIMARY_KEYS[table]
        insert = f'INSERT INTO "{table}" ({names}) SELECT {names} FROM incoming_rows'
        with self._lock:
            self.connection.register("incoming_rows", arrays)
            try:
                # Optimistic: a batch of new keys (the usual case) is one plain insert, ~10 %
                # cheaper than ON CONFLICT ... RETURNING. A key the table holds, or one twice in
                # the batch, fails it as a whole (nothing is kept) and the batch goes again
                # with ON CONFLICT, which says which keys were new.
                try:
                    # Consume every result: DuckDB 2 refuses further work on a connection that
                    # still holds an unfinished one.
                    self.connection.execute(insert).fetchall()
                    new_keys = set(arrays[key].tolist())
                    held: dict[Any, Row] = {}
                    winners: list[Row] = []
                except duckdb.ConstraintException:
                    inserted = self.connection.execute(
                        f'{insert} ON CONFLICT DO NOTHING RETURNING "{key}"'
                    ).fetchall()
                    new_keys = {value for (value,) in inserted}
                    held = self._held(table, [row.get(key) for row in rows if row.get(key) not in new_keys])
                    winners = _earlier_conflicts(rows, held)
                    if winners:
                        self._replace(table, columns, [row[key] for row in winners])
            finally:
                self.connection.unregister("incoming_rows")
        won = {row[key] for row in winners}
        conflicts = [
            row
            for row in rows
            if row.get(key) in held
            and row.get(key) not in won
            and is_conflict(row, row_identity(held[row.get(key)]))
        ]
        failed = [
            FailedRow(row, Reason.CONFLICT, conflict_detail(row, row_identity(held[row.get(key)])))
            for row in conflicts
        ]
        displaced = [
            FailedRow(
                _as_row(held[row[key]]), Reason.CONFLICT, conflict_detail(held[row[key]], row_identity(row))
            )
            for row in winners
        ]
        written_keys = new_keys | won
        duplicates = len(rows) - len(written_keys) - len(failed)
        return WriteResult(
            written=len(written_keys),
            duplicates=duplicates,
            failed=failed,
            written_keys=written_keys,
            displaced=displaced,
        )

    def _replace(self, table: str, columns: Sequence[Column], keys: list[Any]) -> None:
        """Replace the stored rows of ``keys`` by the incoming ones (registered as incoming_rows)."""
        assignments = ", ".join(
            f'"{c.name}" = incoming_rows."{c.name}"' for c in columns if c.name != "RequestId"
        )
        self.connection.execute(
            f'UPDATE "{table}" SET {assignments} FROM incoming_rows '
            f'WHERE "{table}"."RequestId" = incoming_rows."RequestId" '
            'AND incoming_rows."RequestId" IN (SELECT unnest($keys))',
            {"keys": [str(k) for k in keys]},
        ).fetchall()

    def _held(self, table: str, keys: list[Any]) -> dict[Any, Row]:
        """The stored rows of these keys (usage table only: alerts have no conflicts)."""
        if table != USAGE_TABLE or not keys:
            return {}
        cursor = self.connection.execute(
            f'SELECT * FROM "{table}" WHERE "RequestId" IN (SELECT unnest($keys))',
            {"keys": [str(k) for k in keys]},
        )
        names = [description[0] for description in cursor.description or ()]
        stored = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        return {row["RequestId"]: row for row in stored}

    def supersede(self, rows: Sequence[Row]) -> WriteResult:
        """Replace usage rows in place by later revisions of the same RequestId.

        A row replaces the stored one only when its ``UsageRevision`` is higher, so a timer that
        runs twice, or a redelivered revision, changes nothing (counted as duplicates). A row whose
        RequestId the store does not hold is inserted (the revision is then the only copy).
        """
        if not rows:
            return WriteResult()
        import duckdb

        columns = table_columns(USAGE_TABLE)
        arrays = _column_arrays(columns, rows)
        names = [c.name for c in columns if c.name != "RequestId"]
        assignments = ", ".join(f'"{name}" = incoming_rows."{name}"' for name in names)
        try:
            with self._lock:
                self.connection.register("incoming_rows", arrays)
                try:
                    replaced = self.connection.execute(
                        f'UPDATE "{USAGE_TABLE}" SET {assignments} FROM incoming_rows '
                        f'WHERE "{USAGE_TABLE}"."RequestId" = incoming_rows."RequestId" '
                        f'AND incoming_rows."UsageRevision" > coalesce("{USAGE_TABLE}"."UsageRevision", 0) '
                        f'RETURNING "{USAGE_TABLE}"."RequestId"'
                    ).fetchall()
                    all_names = ", ".join(f'"{c.name}"' for c in columns)
                    inserted = self.connection.execute(
                        f'INSERT INTO "{USAGE_TABLE}" ({all_names}) SELECT {all_names} FROM incoming_rows '
                        'ON CONFLICT DO NOTHING RETURNING "RequestId"'
                    ).fetchall()
                finally:
                    self.connection.unregister("incoming_rows")
        except duckdb.Error as exc:
            detail = f"DuckDB refused the revisions: {type(exc).__name__}: {exc}"
            return WriteResult(failed=[FailedRow(row, Reason.WRITE_FAILED, detail) for row in rows])
        keys = {value for (value,) in replaced} | {value for (value,) in inserted}
        return WriteResult(written=len(keys), duplicates=len(rows) - len(keys), written_keys=keys)

    def count(self, table: str = USAGE_TABLE) -> int:
        """Number of rows in a table."""
        with self._lock:
            result = self.connection.execute(f'SELECT count(*) FROM "{table}"').fetchall()
        return int(result[0][0]) if result else 0

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self.connection.close()

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
