"""Run the package's ``.kql`` files: on Log Analytics in Azure, on the DuckDB store locally.

Every aggregation of the rollups and budget checks is a ``.kql`` file in ``chargeback/kql/`` (the
workbook's queries live in ``chargeback/kql/workbook/``). The same text runs in both places, so it
keeps to the KQL subset that both Log Analytics and duckdb-kql support (where, summarize, join,
union, let, iff, countif; no make-series, evaluate or serialize).

Parameters: a file names the values it needs in a header comment::

    // Parameters: MonthStart:datetime, MonthEnd:datetime

and ``bind`` prepends one ``let`` statement per parameter (``let MonthStart = datetime(...);``).
Log Analytics' query API has no out-of-band parameters, so ``let`` is the one form both engines
accept; values are rendered by ``kql_literal`` (typed, strings escaped), never pasted raw.

Results come back as a pandas DataFrame (imported lazily: the Functions host times module import).
In Azure, ``LogsQueryClient.query_workspace`` returns at most 500,000 rows, so every query summarizes
in KQL; a partial result (row limit, timeout) is an error, never a silently short statement.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from importlib import resources
from importlib.resources.abc import Traversable
from typing import TYPE_CHECKING, Any, Protocol

from chargeback.errors import ChargebackError, ConfigError, Reason

if TYPE_CHECKING:
    import pandas as pd

    from chargeback.settings import Settings

log = logging.getLogger("chargeback.kqlrun")

ParamValue = datetime | str | bool | int | float | Decimal
_PARAMS_HEADER = re.compile(r"^\s*//\s*Parameters\s*:\s*(?P<list>.*)$", re.IGNORECASE | re.MULTILINE)
_PARAM = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*:\s*(?P<type>[a-z]+)$")
_TYPES = frozenset({"datetime", "string", "bool", "long", "int", "real"})


class QueryError(ChargebackError):
    """A KQL query failed or came back incomplete (partial result, row limit, bad syntax)."""

    reason = Reason.QUERY_FAILED


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


def declared_parameters(text: str) -> dict[str, str]:
    """``{name: type}`` from the file's ``// Parameters: A:datetime, B:string`` header (may be empty)."""
    declared: dict[str, str] = {}
    for match in _PARAMS_HEADER.finditer(text):
        for item in filter(None, (part.strip() for part in match["list"].split(","))):
            parsed = _PARAM.match(item)
            if parsed is None or parsed["type"] not in _TYPES:
                raise ConfigError(f"bad KQL parameter declaration {item!r}; expected Name:type")
            declared[parsed["name"]] = parsed["type"]
    return declared


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
    """The query with one ``let`` per declared parameter prepended; every declared one is required."""
    declared = declared_parameters(text)
    missing = sorted(set(declared) - set(params))
    if missing:
        raise ConfigError(f"KQL query needs parameter(s) {', '.join(missing)}")
    lets = [f"let {name} = {kql_literal(params[name], kind)};" for name, kind in declared.items()]
    return "\n".join([*lets, text]) if lets else text


class KqlRunner(Protocol):
    """Runs a named package query with parameters and returns its one result table."""

    def run(self, name: str, params: Mapping[str, ParamValue], *, window: tuple[datetime, datetime]) -> Any:
        """Run ``chargeback/kql/<name>.kql``; ``window`` is the time range the query reads."""
        ...


class LocalKqlRunner:
    """Runs the queries on a DuckDB connection (the local store) through duckdb-kql."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def run(
        self, name: str, params: Mapping[str, ParamValue], *, window: tuple[datetime, datetime] | None = None
    ) -> pd.DataFrame:
        """Run a package query; ``window`` is unused locally (the query filters on its parameters)."""
        return self.run_text(bind(load_query(name), params), name=name)

    def run_text(self, query: str, *, name: str = "<query>") -> pd.DataFrame:
        """Run KQL text as is."""
        import duckdb_kql

        cursor = self.connection.cursor()  # its own connection to the database: safe beside writers
        try:
            frame: pd.DataFrame = duckdb_kql.df(cursor, query)
        except Exception as exc:  # duckdb-kql and DuckDB raise their own trees; surface them as one
            raise QueryError(f"KQL query {name} failed locally: {type(exc).__name__}: {exc}") from exc
        finally:
            cursor.close()
        return frame


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
        """Run a package query over ``window`` (the API's timespan); a partial result is an error."""
        return self.run_text(bind(load_query(name), params), window=window, name=name)

    def run_text(
        self, query: str, *, window: tuple[datetime, datetime], name: str = "<query>"
    ) -> pd.DataFrame:
        """Run KQL text over a time window and return its first table."""
        import pandas as pd
        from azure.core.exceptions import HttpResponseError
        from azure.monitor.query import LogsQueryStatus

        try:
            response = self.client.query_workspace(self.workspace_id, query, timespan=window, **self.options)
        except HttpResponseError as exc:
            raise QueryError(f"KQL query {name} failed on Log Analytics: {exc.message}") from exc
        if response.status != LogsQueryStatus.SUCCESS:
            error = getattr(response, "partial_error", None)
            raise QueryError(
                f"KQL query {name} returned a partial result ({error}); summarize more in KQL or narrow it"
            )
        if not response.tables:
            raise QueryError(f"KQL query {name} returned no table")
        table = response.tables[0]
        columns = [getattr(column, "name", column) for column in table.columns]
        return pd.DataFrame([list(row) for row in table.rows], columns=columns)


def build_runner(settings: Settings, connection: Any = None) -> LocalKqlRunner | LogAnalyticsKqlRunner:
    """Log Analytics when a workspace is configured, else duckdb-kql on the local store."""
    if settings.log_analytics_workspace_id:
        from chargeback.azure_clients import logs_query_client
        from chargeback.settings import is_local_endpoint

        endpoint = settings.log_analytics_query_endpoint
        return LogAnalyticsKqlRunner(
            logs_query_client(settings),
            settings.log_analytics_workspace_id,
            enforce_https=not (endpoint and is_local_endpoint(endpoint)),
        )
    if connection is None:
        from chargeback.runtime import build_writer
        from chargeback.store import DuckDBStore

        store = build_writer(settings)
        if not isinstance(store, DuckDBStore):
            raise ConfigError("no LOG_ANALYTICS_WORKSPACE_ID and no local DuckDB store to query")
        connection = store.connection
    return LocalKqlRunner(connection)
