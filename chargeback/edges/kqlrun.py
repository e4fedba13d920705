"""Run the package's ``.kql`` files: on Log Analytics in Azure, on the DuckDB store locally.

Every aggregation of the rollups and budget checks is a ``.kql`` file in ``chargeback/kql/`` (the
workbook's queries live in ``chargeback/kql/workbook/``). The same text runs in both places, so it
keeps to the KQL subset that both Log Analytics and duckdb-kql support (where, summarize, join,
union, let, iff, countif; no make-series, evaluate or serialize).

Parameters: a file names the values it needs in a header comment::

    // Parameters: MonthStart:datetime, MonthEnd:datetime

and ``bind`` prepends one ``let`` statement per parameter (``let MonthStart = datetime(...);``).
Log Analytics' query API has no out-of-band parameters, so ``let`` is the one form both engines
accept; values are rendered by ``kql_literal`` (typed, strings escaped), never pasted raw. A ``bool``,
``long``, ``int`` or ``real`` parameter may carry a default (``Deduplicate:bool = true``), used when
no value is given.

Deduplication (``Deduplicate:bool = true``): Log Analytics does not deduplicate and Event Hub
delivers at least once, so the queries over ``AOAIChargeback_CL`` reduce repeated RequestIds to one
row. The runner, not the caller, decides the value: ``LogAnalyticsKqlRunner`` always binds true;
``LocalKqlRunner`` binds false only when the table the query reads has ``RequestId`` as its primary
key (the local store's schema, checked in the catalog on every run, never assumed), because such a
table cannot hold a RequestId twice and the dedupe (a hash of every RequestId of the month) would
only cost time and memory. A caller may force true; asking for false where the key does not
guarantee it is an error.

Locally the month is a value, not text: ``LocalKqlRunner`` declares the non-bool parameters as
``declare query_parameters(...)`` (duckdb-kql binds them as DuckDB prepared-statement values; the
scan still prunes row groups on them) and keeps the bools as ``let`` literals (``Deduplicate =
false`` must be a constant for DuckDB to fold the dedupe legs away). The SQL is then the same for
every month, so it ships with the package: ``chargeback/kql/translated.json`` holds duckdb-kql's
translation of each top-level query (each value of its bools) over a fresh store's schema, keyed by
the hash of the KQL text, the tables' columns and the duckdb-kql version. A run whose key is there
uses it (no ANTLR parse, ~0.3 s of a cold process); anything else (another duckdb-kql, a changed
table) translates as before, cached per process. ``python -m chargeback.edges.kqlrun`` writes the
file from the ``.kql`` files, and a test regenerates it and fails if it differs: the ``.kql`` text
stays the one source, and Log Analytics still runs it with ``let`` bindings.

Results come back as a pandas DataFrame (imported lazily: the Functions host times module import),
or with ``records`` as a list of dicts, without pandas (importing it is a quarter of a second of the
rollup command, whose small result is regrouped in Python anyway).
In Azure, ``LogsQueryClient.query_workspace`` returns at most 500,000 rows, so every query summarizes
in KQL; a partial result (row limit, timeout) is an error, never a silently short statement.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import logging
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any, Protocol

from chargeback.edges.azure_errors import classify, describe
from chargeback.errors import ConfigError, QueryError, SinkUnavailable

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("chargeback.edges.kqlrun")

ParamValue = datetime | str | bool | int | float | Decimal
_PARAMS_HEADER = re.compile(r"^\s*//\s*Parameters\s*:\s*(?P<list>.*)$", re.IGNORECASE | re.MULTILINE)
_PARAM = re.compile(
    r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*:\s*(?P<type>[a-z]+)(?:\s*=\s*(?P<default>[A-Za-z0-9_.+-]+))?$"
)
_TYPES = frozenset({"datetime", "string", "bool", "long", "int", "real"})
TRANSLATIONS = "translated.json"  # in chargeback/kql/: the shipped local translations
DEDUPLICATE = "Deduplicate"  # the runner-owned parameter: dedupe AOAIChargeback_CL on RequestId
USAGE_TABLE_NAME = "AOAIChargeback_CL"


def query_root() -> Traversable:
    """The folder of the package's ``.kql`` files."""
    return resources.files("chargeback").joinpath("kql")


def query_files() -> Iterator[tuple[str, Traversable]]:
    """Every ``.kql`` file under ``chargeback/kql/`` (recursively), as (relative name, file)."""

    def walk(folder: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
        for entry in sorted(folder.iterdir(), key=lambda item: item.name):
            if entry.is_dir():
                yield from walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(".kql"):
                yield f"{prefix}{entry.name[: -len('.kql')]}", entry

    yield from walk(query_root(), "")


def load_query(name: str) -> str:
    """The text of ``chargeback/kql/<name>.kql`` (``name`` may include a subfolder)."""
    entry = query_root().joinpath(*f"{name}.kql".split("/"))
    try:
        return entry.read_text(encoding="utf-8")
    except (OSError, FileNotFoundError) as exc:
        raise ConfigError(f"no KQL query {name!r} in chargeback/kql ({exc})") from None


def _parse_declarations(text: str) -> Iterator[tuple[str, str, ParamValue | None]]:
    for match in _PARAMS_HEADER.finditer(text):
        for item in filter(None, (part.strip() for part in match["list"].split(","))):
            parsed = _PARAM.match(item)
            if parsed is None or parsed["type"] not in _TYPES:
                raise ConfigError(f"bad KQL parameter declaration {item!r}; expected Name:type")
            kind, default = parsed["type"], parsed["default"]
            yield parsed["name"], kind, None if default is None else _default_value(item, kind, default)


def _default_value(item: str, kind: str, text: str) -> ParamValue:
    try:
        if kind == "bool" and text in ("true", "false"):
            return text == "true"
        if kind in ("long", "int"):
            return int(text)
        if kind == "real":
            return Decimal(text)
    except (ArithmeticError, ValueError):
        pass
    raise ConfigError(f"bad default in KQL parameter declaration {item!r} (bool, long, int or real only)")


def declared_parameters(text: str) -> dict[str, str]:
    """``{name: type}`` from the file's ``// Parameters: A:datetime, B:string`` header (may be empty)."""
    return {name: kind for name, kind, _ in _parse_declarations(text)}


def parameter_defaults(text: str) -> dict[str, ParamValue]:
    """``{name: default}`` of the declared parameters that have one (``Deduplicate:bool = true``)."""
    return {name: default for name, _, default in _parse_declarations(text) if default is not None}


def _iso(value: datetime) -> str:
    utc = value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def kql_literal(value: ParamValue, kind: str) -> str:
    """A typed KQL literal for a parameter value (strings quoted and escaped)."""
    if kind == "datetime":
        if not isinstance(value, datetime):
            raise ConfigError(f"KQL datetime parameter needs a datetime, got {value!r}")
        return f"datetime({_iso(value)})"
    if kind == "string":
        text = str(value)
        escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
        return f'"{escaped}"'
    if kind == "bool":
        return "true" if value else "false"
    if kind in ("long", "int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"KQL {kind} parameter needs a whole number, got {value!r}")
        return f"{kind}({value})"
    if isinstance(value, bool | datetime | str):
        raise ConfigError(f"KQL real parameter needs a number, got {value!r}")
    return f"real({Decimal(str(value))})"


def bind(text: str, params: Mapping[str, ParamValue]) -> str:
    """The query with one ``let`` per declared parameter prepended; each needs a value or a default."""
    declared = declared_parameters(text)
    params = {**parameter_defaults(text), **params}
    missing = sorted(set(declared) - set(params))
    if missing:
        raise ConfigError(f"KQL query needs parameter(s) {', '.join(missing)}")
    lets = [f"let {name} = {kql_literal(params[name], kind)};" for name, kind in declared.items()]
    return "\n".join([*lets, text]) if lets else text


def bind_local(text: str, params: Mapping[str, ParamValue]) -> tuple[str, dict[str, ParamValue]]:
    """The query for duckdb-kql: bools as ``let`` literals, the rest declared as query parameters.

    Returns the text (the same for every value of the declared parameters) and those values by name.
    """
    declared = declared_parameters(text)
    params = {**parameter_defaults(text), **params}
    missing = sorted(set(declared) - set(params))
    if missing:
        raise ConfigError(f"KQL query needs parameter(s) {', '.join(missing)}")
    values = {name: params[name] for name, kind in declared.items() if kind != "bool"}
    for name, kind in declared.items():
        kql_literal(params[name], kind)  # the same type checks as bind's
    head = [f"declare query_parameters({', '.join(f'{name}:{declared[name]}' for name in values)});"]
    lets = [
        f"let {name} = {kql_literal(params[name], kind)};"
        for name, kind in declared.items()
        if kind == "bool"
    ]
    return "\n".join([*head[: 1 if values else 0], *lets, text]), values


def _sql_value(value: ParamValue, kind: str) -> Any:
    """A declared parameter's value as DuckDB binds it (duckdb-kql's coercion: naive UTC, float)."""
    if kind == "datetime":
        assert isinstance(value, datetime)  # checked by kql_literal
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    if kind == "string":
        return str(value)
    if kind == "real":
        return float(value)  # type: ignore[arg-type]
    return value


class KqlRunner(Protocol):
    """Runs a named package query with parameters and returns its one result table."""

    def run(self, name: str, params: Mapping[str, ParamValue], *, window: tuple[datetime, datetime]) -> Any:
        """Run ``chargeback/kql/<name>.kql``; ``window`` is the time range the query reads."""
        ...

    def records(
        self, name: str, params: Mapping[str, ParamValue], *, window: tuple[datetime, datetime]
    ) -> list[dict[str, Any]]:
        """``run``'s result as one dict per row (column name -> value; null is None)."""
        ...


class LocalKqlRunner:
    """Runs the queries on a DuckDB connection (the local store) through duckdb-kql."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def run(
        self, name: str, params: Mapping[str, ParamValue], *, window: tuple[datetime, datetime] | None = None
    ) -> pd.DataFrame:
        """Run a package query; ``window`` is unused locally (the query filters on its parameters).

        ``Deduplicate`` is bound false when the table's primary key already makes RequestIds unique.
        """
        frame: pd.DataFrame = self._run_named(name, params, lambda cursor: cursor.df())
        return frame

    def records(
        self, name: str, params: Mapping[str, ParamValue], *, window: tuple[datetime, datetime] | None = None
    ) -> list[dict[str, Any]]:
        """``run``'s result as one dict per row, fetched from DuckDB without pandas."""

        def fetch(cursor: Any) -> list[dict[str, Any]]:
            columns = [column[0] for column in cursor.description or ()]
            return [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]

        result: list[dict[str, Any]] = self._run_named(name, params, fetch)
        return result

    def _run_named(self, name: str, params: Mapping[str, ParamValue], fetch: Any) -> Any:
        """A package query as ``bind_local`` words it, its SQL shipped or translated (``translation``)."""
        text = load_query(name)
        if DEDUPLICATE in declared_parameters(text):
            params = {**params, DEDUPLICATE: self._deduplicate(name, params.get(DEDUPLICATE))}
        query, values = bind_local(text, params)
        return self._execute(query, name, fetch, values)

    def unique_request_ids(self) -> bool:
        """Whether ``AOAIChargeback_CL``, as a query resolves it, has ``RequestId`` as its primary key.

        Read from DuckDB's catalog (the local store's table has the key; a copy, a view, or the Log
        Analytics stand-in has not) on a new cursor, as ``run_text`` runs the query: the table an
        unqualified name resolves to in the current database and schema.
        """
        cursor = self.connection.cursor()
        try:
            row = cursor.execute(
                """SELECT count(*) FROM duckdb_constraints()
                   WHERE database_name = current_database() AND schema_name = current_schema()
                     AND lower(table_name) = lower($table) AND constraint_type = 'PRIMARY KEY'
                     AND len(constraint_column_names) = 1
                     AND lower(constraint_column_names[1]) = 'requestid'""",
                {"table": USAGE_TABLE_NAME},
            ).fetchone()
        except Exception as exc:  # not a DuckDB catalog we can read: do not trust the key
            log.warning("cannot read the RequestId key of %s (%s); deduplicating", USAGE_TABLE_NAME, exc)
            return False
        finally:
            cursor.close()
        return row is not None and row[0] == 1

    def _deduplicate(self, name: str, requested: ParamValue | None) -> bool:
        unique = self.unique_request_ids()
        if requested is not None and not requested and not unique:
            raise ConfigError(
                f"KQL query {name}: Deduplicate=false needs {USAGE_TABLE_NAME} keyed on RequestId; it is not"
            )
        deduplicate = bool(requested) if requested is not None else not unique
        log.debug("KQL query %s: Deduplicate=%s (RequestId primary key: %s)", name, deduplicate, unique)
        return deduplicate

    def run_text(self, query: str, *, name: str = "<query>") -> pd.DataFrame:
        """Run KQL text as is."""
        frame: pd.DataFrame = self._execute(query, name, lambda cursor: cursor.df())
        return frame

    def _execute(
        self, query: str, name: str, fetch: Any, values: Mapping[str, ParamValue] | None = None
    ) -> Any:
        """``duckdb_kql.execute``'s steps, with the translation shipped or cached (``translation``).

        Free text (``values`` None) is translated over every table duckdb-kql sees (database-qualified
        names too), as ``duckdb_kql.execute`` does; a package query over the current database's
        tables (``local_tables``: its text never names another database), which is what lets its
        translation be keyed without the database's name and shipped.
        """
        cursor = self.connection.cursor()  # its own connection to the database: safe beside writers
        try:
            cursor.execute("SET TimeZone='UTC'")  # KQL datetimes are UTC (as duckdb_kql.execute sets it)
            if values is None:
                from duckdb_kql.engine import schema

                tables = tuple((table, tuple(columns)) for table, columns in schema(cursor).items())
                sql, slots, fixed = translate(query, tables)
            else:
                sql, slots, fixed = translation(query, local_tables(cursor))
            arguments = dict(fixed)
            for parameter, slot, kind in slots:
                arguments[slot] = _sql_value((values or {})[parameter], kind)
            return fetch(cursor.execute(sql, arguments) if arguments else cursor.execute(sql))
        except Exception as exc:  # duckdb-kql and DuckDB raise their own trees; surface them as one
            raise QueryError(f"KQL query {name} failed locally: {type(exc).__name__}: {exc}") from exc
        finally:
            cursor.close()


Tables = tuple[tuple[str, tuple[str, ...]], ...]
# (SQL, (KQL name, DuckDB placeholder, KQL type) of each declared parameter the SQL reads, values
# duckdb-kql bound while translating, such as now()'s clock).
Translation = tuple[str, tuple[tuple[str, str, str], ...], tuple[tuple[str, Any], ...]]


def local_tables(cursor: Any) -> Tables:
    """The current database's tables and their columns, as duckdb-kql's ``schema`` names them bare."""
    rows = cursor.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_catalog = current_database() ORDER BY table_name, ordinal_position"
    ).fetchall()
    return tuple(
        (table, tuple(column for _, column in group))
        for table, group in itertools.groupby(rows, key=lambda row: row[0])
    )


@functools.lru_cache(maxsize=64)
def translate(query: str, tables: Tables) -> Translation:
    """DuckDB SQL of KQL text over tables (name, columns), cached per process.

    duckdb-kql's translation (an ANTLR parser in Python) is a pure function of the text and the
    tables' columns: ~0.15 s for monthly_rollup.kql once warm, ~0.3 s the first time in a process. A
    process that runs a query again (a warm Function worker, a report after a rollup) reuses the SQL;
    the key is the whole text and schema, so a changed query or table is translated afresh. Declared
    parameters are left as placeholders (their values are bound at execution); any other unbound
    name is refused, as ``duckdb_kql.execute`` refuses it.
    """
    import duckdb_kql
    from duckdb_kql.errors import KqlSchemaError

    translated = duckdb_kql.to_sql(query, schema={table: list(columns) for table, columns in tables})
    declared = {declaration.name for declaration in translated.declarations}
    unbound = [name for name in translated.unbound if name not in declared]
    if unbound:
        raise KqlSchemaError(", ".join(unbound), hint="declared query parameter with no value and no default")
    slots = tuple(
        (declaration.name, declaration.slot, declaration.type)
        for declaration in translated.declarations
        if declaration.slot in translated.slots
    )
    return str(translated), slots, tuple(translated.parameters.items())


@functools.lru_cache(maxsize=1)
def translator_version() -> str:
    """The installed duckdb-kql's version (part of a shipped translation's key)."""
    from importlib.metadata import version

    return version("duckdb-kql")


def translation_key(query: str, tables: Tables) -> str:
    """SHA-256 of the duckdb-kql version, the KQL text and the tables' columns."""
    text = json.dumps([translator_version(), query, [[table, list(columns)] for table, columns in tables]])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.lru_cache(maxsize=1)
def shipped_translations() -> dict[str, Translation]:
    """``chargeback/kql/translated.json`` by key (empty when the file is absent)."""
    try:
        document = json.loads(query_root().joinpath(TRANSLATIONS).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    return {
        key: (entry["sql"], tuple((name, slot, kind) for name, slot, kind in entry["slots"]), ())
        for key, entry in document["translations"].items()
    }


def translation(query: str, tables: Tables) -> Translation:
    """The shipped translation of ``query`` over ``tables`` if the package has it, else ``translate``'s."""
    shipped = shipped_translations().get(translation_key(query, tables))
    return shipped if shipped is not None else translate(query, tables)


def build_translations(tables: Tables) -> dict[str, Any]:
    """The document ``translated.json`` holds: every top-level query, each value of its bools.

    Keys and SQL are what ``LocalKqlRunner`` computes at run time over ``tables`` (a fresh store's).
    A query that reads a table the store does not have (the APIM gateway logs) is left out: it
    translates where it runs, over the tables it finds.
    """
    from duckdb_kql.errors import KqlSchemaError

    translations: dict[str, Any] = {}
    for name, _ in query_files():
        if "/" in name:  # the workbook's queries run in the workbook (and read now()); not shipped
            continue
        text = load_query(name)
        declared = declared_parameters(text)
        bools = [parameter for parameter, kind in declared.items() if kind == "bool"]
        samples: dict[str, ParamValue] = {
            parameter: datetime(2000, 1, 1, tzinfo=UTC) if kind == "datetime" else 0
            for parameter, kind in declared.items()
        }
        for choice in itertools.product((False, True), repeat=len(bools)):
            values = {**samples, **dict(zip(bools, choice, strict=True))}
            for parameter, kind in declared.items():
                if kind == "string":
                    values[parameter] = ""
            query, _ = bind_local(text, values)
            try:
                sql, slots, fixed = translate(query, tables)
            except KqlSchemaError as exc:
                if "unknown table" not in str(exc):
                    raise
                break
            if fixed:
                raise ConfigError(f"KQL query {name}: its translation binds values ({fixed}); cannot ship it")
            translations[translation_key(query, tables)] = {
                "query": name,
                "bools": dict(zip(bools, choice, strict=True)),
                "slots": [list(slot) for slot in slots],
                "sql": sql,
            }
    return {"duckdb-kql": translator_version(), "translations": translations}


def store_tables() -> Tables:
    """The tables of a fresh local store (``DuckDBStore``), as ``local_tables`` reads them."""
    from chargeback.edges.store import DuckDBStore

    store = DuckDBStore(":memory:")
    try:
        cursor = store.connection.cursor()
        try:
            return local_tables(cursor)
        finally:
            cursor.close()
    finally:
        store.close()


def render_translations(document: Mapping[str, Any]) -> str:
    """``translated.json``'s text: sorted keys, one entry per line group, a final newline."""
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


class LogAnalyticsKqlRunner:
    """Runs the queries on a Log Analytics workspace through ``LogsQueryClient.query_workspace``."""

    def __init__(self, client: Any, workspace_id: str, *, enforce_https: bool = True) -> None:
        if not workspace_id:
            raise ConfigError("LOG_ANALYTICS_WORKSPACE_ID is not set")
        self.client = client
        self.workspace_id = workspace_id
        # Plain http is only for the local stand-in server (settings refuse it elsewhere).
        self.options: dict[str, Any] = {} if enforce_https else {"enforce_https": False}

    def run(
        self, name: str, params: Mapping[str, ParamValue], *, window: tuple[datetime, datetime]
    ) -> pd.DataFrame:
        """Run a package query over ``window`` (the API's timespan); a partial result is an error.

        ``Deduplicate`` is always bound true: Log Analytics has no key and keeps every delivery.
        """
        return self.run_text(self._bind(name, params), window=window, name=name)

    def records(
        self, name: str, params: Mapping[str, ParamValue], *, window: tuple[datetime, datetime]
    ) -> list[dict[str, Any]]:
        """``run``'s result as one dict per row."""
        columns, rows = self._table(self._bind(name, params), window=window, name=name)
        return [dict(zip(columns, row, strict=True)) for row in rows]

    @staticmethod
    def _bind(name: str, params: Mapping[str, ParamValue]) -> str:
        text = load_query(name)
        if DEDUPLICATE in declared_parameters(text):
            if not params.get(DEDUPLICATE, True):
                raise ConfigError(
                    f"KQL query {name}: Log Analytics does not deduplicate; Deduplicate must be true"
                )
            params = {**params, DEDUPLICATE: True}
        return bind(text, params)

    def run_text(
        self, query: str, *, window: tuple[datetime, datetime], name: str = "<query>"
    ) -> pd.DataFrame:
        """Run KQL text over a time window and return its first table."""
        import pandas as pd

        columns, rows = self._table(query, window=window, name=name)
        return pd.DataFrame(rows, columns=columns)

    def _table(
        self, query: str, *, window: tuple[datetime, datetime], name: str
    ) -> tuple[list[str], list[list[Any]]]:
        from azure.monitor.query import LogsQueryStatus

        try:
            response = self.client.query_workspace(self.workspace_id, query, timespan=window, **self.options)
        except Exception as exc:
            kind = classify(exc)  # the one SDK-error table
            if kind is None:
                raise
            retry = "; worth retrying later" if kind is SinkUnavailable else ""
            message = getattr(exc, "message", None) or describe(exc)
            raise QueryError(f"KQL query {name} failed on Log Analytics: {message}{retry}") from exc
        if response.status != LogsQueryStatus.SUCCESS:
            error = getattr(response, "partial_error", None)
            raise QueryError(
                f"KQL query {name} returned a partial result ({error}); summarize more in KQL or narrow it"
            )
        if not response.tables:
            raise QueryError(f"KQL query {name} returned no table")
        table = response.tables[0]
        columns = [getattr(column, "name", column) for column in table.columns]
        return columns, [list(row) for row in table.rows]


if __name__ == "__main__":  # python -m chargeback.edges.kqlrun: write chargeback/kql/translated.json
    from pathlib import Path

    target = Path(__file__).resolve().parent.parent / "kql" / TRANSLATIONS
    target.write_text(render_translations(build_translations(store_tables())), encoding="utf-8")
    print(f"wrote {target}")
