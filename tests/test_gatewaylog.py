"""APIM's log tables on DuckDB: created idempotently with their documented columns, appended like APIM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import duckdb

from chargeback.core.schema import azure_table_columns, azure_table_names
from chargeback.edges.gatewaylog import append_rows, create_gateway_tables, has_gateway_tables


def test_the_tables_are_created_once_with_every_documented_column():
    """create_gateway_tables is idempotent and gives each table exactly its documented columns."""
    with duckdb.connect() as connection:
        assert not has_gateway_tables(connection)
        create_gateway_tables(connection)
        create_gateway_tables(connection)
        assert has_gateway_tables(connection)
        for table in azure_table_names():
            described = [row[0] for row in connection.execute(f'DESCRIBE "{table}"').fetchall()]
            assert described == [column.name for column in azure_table_columns(table)]


def test_rows_are_appended_in_utc_with_absent_columns_null():
    """A row with an aware time lands in UTC; columns it lacks are null; the count is returned."""
    table = "ApiManagementGatewayLlmLog"
    with duckdb.connect() as connection:
        create_gateway_tables(connection)
        when = datetime(2026, 10, 20, 12, 0, tzinfo=timezone(timedelta(hours=2)))
        assert append_rows(connection, table, [{"TimeGenerated": when, "CorrelationId": "req-1"}]) == 1
        assert append_rows(connection, table, []) == 0
        [(stamp, correlation)] = connection.execute(
            f'SELECT "TimeGenerated", "CorrelationId" FROM "{table}"'
        ).fetchall()
        assert (stamp, correlation) == (when.astimezone(UTC).replace(tzinfo=None), "req-1")
        nulls = connection.execute(f'SELECT count(*) FROM "{table}" WHERE "PromptTokens" IS NULL').fetchone()
        assert nulls == (1,)
