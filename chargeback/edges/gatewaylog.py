"""APIM's diagnostic log tables on DuckDB: where the LLM log lives when there is no Azure.

In Azure, APIM's diagnostic setting (categories ``GatewayLlmLogs`` and ``GatewayLogs``) writes
``ApiManagementGatewayLlmLog`` and ``ApiManagementGatewayLogs`` into the workspace, and the
``gateway_usage`` timer reads them with KQL beside ``AOAIChargeback_CL``. Locally the same KQL runs
on DuckDB, so the same tables (their documented columns, ``schemas/azure_tables.json``) are created
in the local store by the demo, and in the local Log Analytics stand-in, and filled with what APIM
would have logged. Nothing here runs in the Function App.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from chargeback.core.schema import azure_table_columns, azure_table_names
from chargeback.edges.store import DUCKDB_TYPES


def create_table_sql(table: str) -> str:
    """The table as Log Analytics keeps it: its documented columns, no key."""
    columns = ", ".join(f'"{c.name}" {DUCKDB_TYPES[c.type]}' for c in azure_table_columns(table))
    return f'CREATE TABLE IF NOT EXISTS "{table}" ({columns})'


def create_gateway_tables(connection: Any) -> None:
    """Create APIM's LLM and gateway log tables (idempotent)."""
    for table in azure_table_names():
        connection.execute(create_table_sql(table))


def has_gateway_tables(connection: Any) -> bool:
    """True when the database holds every APIM log table the late-usage query reads."""
    rows = connection.execute(
        "SELECT table_name FROM duckdb_tables()"
        " WHERE schema_name = 'main' AND database_name = current_database()"
    ).fetchall()
    present = {name for (name,) in rows}
    return all(table in present for table in azure_table_names())


def append_rows(connection: Any, table: str, rows: Sequence[Mapping[str, Any]]) -> int:
    """Append rows (absent columns null) as APIM's diagnostic setting would; returns how many."""
    columns = azure_table_columns(table)
    names = ", ".join(f'"{c.name}"' for c in columns)
    marks = ", ".join("?" for _ in columns)
    values = [[_value(row.get(c.name), c.type) for c in columns] for row in rows]
    if values:
        connection.executemany(f'INSERT INTO "{table}" ({names}) VALUES ({marks})', values)
    return len(values)


def _value(value: Any, kind: str) -> Any:
    if kind == "dateTime" and isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    if kind == "dynamic" and value is not None and not isinstance(value, str):
        import json

        return json.dumps(value)
    return value
