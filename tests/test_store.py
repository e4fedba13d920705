"""The embedded DuckDB store: schema from tables.json, idempotent inserts, failures returned not raised."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from chargeback.core.schema import table_columns
from chargeback.edges.store import DuckDBStore, create_table_sql
from chargeback.errors import Reason


def row(request_id: str, cost: str | None = "0.0125") -> dict[str, Any]:
    defaults = {"long": 0, "int": 0, "real": Decimal(0), "boolean": False}
    values: dict[str, Any] = {c.name: defaults.get(c.type, "") for c in table_columns()}
    values.update(
        TimeGenerated=datetime(2026, 10, 20, 12, 0, tzinfo=UTC),
        RequestId=request_id,
        StatusCode=200,
        Streamed=False,
        PromptTokens=1000,
        CachedTokens=0,
        CompletionTokens=100,
        ReasoningTokens=0,
        TotalTokens=1100,
        InputCost=Decimal(cost) if cost else None,
        CachedInputCost=Decimal(0) if cost else None,
        OutputCost=Decimal(0) if cost else None,
        TotalCost=Decimal(cost) if cost else None,
        Tags='{"project": "alpha"}',
        UsageRevision=0,
    )
    return values


def test_table_has_every_schema_column_with_request_id_as_key():
    """The DuckDB table is created from tables.json with RequestId as primary key."""
    sql = create_table_sql("AOAIChargeback_CL")
    for column in table_columns():
        assert f'"{column.name}"' in sql
    assert 'PRIMARY KEY ("RequestId")' in sql


def test_second_delivery_of_a_request_id_adds_no_row():
    """Writing the same RequestId twice stores one row and reports one duplicate."""
    with DuckDBStore() as store:
        first = store.write([row("a"), row("b")])
        second = store.write([row("b"), row("c")])
        assert (first.written, first.duplicates) == (2, 0)
        assert (second.written, second.duplicates) == (1, 1)
        assert second.written_keys == {"c"}
        assert store.count() == 3


def test_reading_between_writes_never_fails_the_next_write(tmp_path: Path):
    """A count between writes leaves no open result, so a mixed batch is still split new/duplicate."""
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        store.write([row("known")])
        first = store.write([*(row(f"new-{i}") for i in range(500)), row("known")])
        assert store.count() == 501
        second = store.write([row(f"new-{i}") for i in range(490, 510)])
        assert (first.written, first.duplicates, first.failed) == (500, 1, [])
        assert (second.written, second.duplicates, second.failed) == (10, 10, [])
        assert store.count() == 511


def test_duplicates_inside_one_batch_are_stored_once():
    """Two rows with one RequestId in the same write are one row and one duplicate."""
    with DuckDBStore() as store:
        result = store.write([row("x"), row("x")])
        assert (result.written, result.duplicates) == (1, 1)


def test_values_round_trip_with_utc_time_and_null_costs(tmp_path: Path):
    """Times are stored as UTC, Decimal costs as numbers, unpriced costs as NULL, in a real file."""
    path = tmp_path / "store" / "usage.duckdb"
    with DuckDBStore(path) as store:
        store.write([row("priced", "0.0125"), row("unpriced", None)])
    with DuckDBStore(path) as store:
        got = store.connection.execute(
            'SELECT RequestId, TimeGenerated, TotalCost FROM "AOAIChargeback_CL" ORDER BY RequestId'
        ).fetchall()
    assert got == [
        ("priced", datetime(2026, 10, 20, 12, 0), 0.0125),
        ("unpriced", datetime(2026, 10, 20, 12, 0), None),
    ]


def test_database_error_returns_every_row_as_failed():
    """When DuckDB refuses a batch, every row comes back as failed with write-failed, none is lost."""
    store = DuckDBStore()
    store.connection.execute('DROP TABLE "AOAIChargeback_CL"')
    result = store.write([row("a"), row("b")])
    assert result.written == 0
    assert [f.reason for f in result.failed] == [Reason.WRITE_FAILED, Reason.WRITE_FAILED]
    assert "DuckDB refused" in result.failed[0].detail


def test_times_in_any_zone_naive_and_null_values_round_trip():
    """Aware times of any zone are stored as UTC wall time, naive ones as given; None is NULL anywhere."""
    from datetime import timedelta, timezone

    plus2 = timezone(timedelta(hours=2))
    rows = [row("utc"), row("plus2"), row("naive"), row("nulls")]
    rows[1]["TimeGenerated"] = datetime(2026, 10, 20, 14, 0, 0, 123456, tzinfo=plus2)
    rows[2]["TimeGenerated"] = datetime(2026, 10, 20, 12, 0)
    rows[3].update(TimeGenerated=None, PromptTokens=None, Streamed=None, Model=None)
    del rows[3]["Tags"]  # a row without a column: the column is NULL
    with DuckDBStore() as store:
        assert store.write(rows).written == 4
        got = store.connection.execute(
            "SELECT RequestId, TimeGenerated, PromptTokens, Streamed, Model, Tags, TotalCost "
            'FROM "AOAIChargeback_CL" ORDER BY RequestId'
        ).fetchall()
    noon = datetime(2026, 10, 20, 12, 0)
    assert got == [
        ("naive", noon, 1000, False, "", '{"project": "alpha"}', 0.0125),
        ("nulls", None, None, None, None, None, 0.0125),
        ("plus2", noon.replace(microsecond=123456), 1000, False, "", '{"project": "alpha"}', 0.0125),
        ("utc", noon, 1000, False, "", '{"project": "alpha"}', 0.0125),
    ]


def test_a_value_of_the_wrong_type_fails_alone_not_its_batch():
    """A cost that is not a number cannot be stored: that row fails, its neighbours are written."""
    bad = row("bad")
    bad["TotalCost"] = "lots"
    with DuckDBStore() as store:
        result = store.write([row("good"), bad])
        assert (result.written, result.written_keys) == (1, {"good"})
        assert [(f.row["RequestId"], f.reason) for f in result.failed] == [("bad", Reason.WRITE_FAILED)]
        assert store.count() == 1


def test_a_refused_batch_is_bisected_down_to_its_bad_rows():
    """3 unstorable rows among 1,000: exactly those fail, the other 997 are written in the same call."""
    rows = [row(f"r{i}") for i in range(1000)]
    for index in (0, 500, 999):
        rows[index]["PromptTokens"] = "many"
    with DuckDBStore() as store:
        result = store.write(rows)
        assert result.written == 997
        assert sorted(f.row["RequestId"] for f in result.failed) == ["r0", "r500", "r999"]
        assert store.count() == 997
        assert result.written + result.duplicates + len(result.failed) == len(rows)


def test_a_conflicting_duplicate_fails_as_a_conflict_and_the_first_row_stays():
    """The same RequestId from another subscription, or with other tokens, is a conflict, not a duplicate."""
    with DuckDBStore() as store:
        store.write([row("a"), row("b")])
        other_sub, other_usage, same = row("a"), row("b"), row("a")
        other_sub["SubscriptionId"] = "team-z"
        other_usage["CompletionTokens"] = 999
        result = store.write([other_sub, other_usage, same, row("c")])
        assert (result.written, result.duplicates) == (1, 1)
        assert [(f.row["RequestId"], f.reason) for f in result.failed] == [
            ("a", Reason.CONFLICT),
            ("b", Reason.CONFLICT),
        ]
        assert "SubscriptionId" in result.failed[0].detail
        held = store.connection.execute(
            'SELECT "SubscriptionId" FROM "AOAIChargeback_CL" WHERE "RequestId" = \'a\''
        ).fetchall()
        assert held == [("",)]  # the first row's subscription, not team-z


def test_a_higher_revision_replaces_the_row_in_place():
    """supersede replaces a row only with a higher UsageRevision; repeating it changes nothing."""
    with DuckDBStore() as store:
        store.write([row("a"), row("b")])
        revised = {**row("a", "0.5"), "UsageRevision": 1, "UsageSource": "gateway-log"}
        first = store.supersede([revised])
        again = store.supersede([revised])
        stale = store.supersede([{**row("b", "9"), "UsageRevision": 0}])
        assert (first.written, first.written_keys) == (1, {"a"})
        assert (again.written, again.duplicates) == (0, 1)
        assert (stale.written, stale.duplicates) == (0, 1)
        assert store.count() == 2
        got = store.connection.execute(
            'SELECT RequestId, UsageRevision, UsageSource, TotalCost FROM "AOAIChargeback_CL" ORDER BY 1'
        ).fetchall()
        assert got == [("a", 1, "gateway-log", 0.5), ("b", 0, "", 0.0125)]


def test_a_store_from_before_the_revision_columns_gets_them(tmp_path: Path):
    """Columns are only added: an older DuckDB file gains UsageRevision (0) and UsageUnknown on open."""
    import duckdb

    path = tmp_path / "old.duckdb"
    old_columns = [c for c in table_columns() if c.name not in ("UsageRevision", "UsageUnknown")]
    with duckdb.connect(str(path)) as connection:
        names = ", ".join(f'"{c.name}" VARCHAR' for c in old_columns)
        connection.execute(f'CREATE TABLE "AOAIChargeback_CL" ({names}, PRIMARY KEY ("RequestId"))')
        connection.execute('INSERT INTO "AOAIChargeback_CL" ("RequestId") VALUES (\'old\')')
    with DuckDBStore(path) as store:
        got = store.connection.execute(
            'SELECT UsageRevision, UsageUnknown FROM "AOAIChargeback_CL"'
        ).fetchall()
        assert got == [(0, None)]


def test_a_store_file_from_before_an_additive_column_gains_it(tmp_path: Path):
    """A store made with fewer columns opens, gains the new ones (null in its old rows) and takes new rows."""
    import duckdb

    path = tmp_path / "old.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.execute(
            'CREATE TABLE "AOAIChargeback_CL" '
            '("TimeGenerated" TIMESTAMP, "RequestId" VARCHAR, PRIMARY KEY ("RequestId"))'
        )
        connection.execute("""INSERT INTO "AOAIChargeback_CL" VALUES (TIMESTAMP '2026-10-01', 'old')""")
    with DuckDBStore(path) as store:
        assert store.write([row("new")]).written == 1
        values = store.connection.execute(
            'SELECT "RequestId", "Images", "PromptTokens" FROM "AOAIChargeback_CL" ORDER BY 1'
        ).fetchall()
    assert values == [("new", 0, 1000), ("old", None, None)]


def test_an_earlier_conflicting_row_replaces_the_stored_one_which_comes_back_displaced():
    """The earliest TimeGenerated wins whoever came first; the replaced row comes back to be dead-lettered."""
    from datetime import timedelta

    with DuckDBStore() as store:
        store.write([row("a")])
        earlier = row("a")
        earlier["SubscriptionId"] = "team-z"
        earlier["TimeGenerated"] -= timedelta(hours=1)
        result = store.write([earlier])
        assert (result.written, result.duplicates, result.failed, result.written_keys) == (1, 0, [], {"a"})
        [displaced] = result.displaced
        assert (displaced.reason, displaced.row["SubscriptionId"]) == (Reason.CONFLICT, "")
        assert displaced.row["TimeGenerated"] == row("a")["TimeGenerated"]
        held = store.connection.execute('SELECT "SubscriptionId" FROM "AOAIChargeback_CL"').fetchall()
        assert held == [("team-z",)]


def columns_of(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The usage-table columns of rows, with the dtypes the column path makes."""
    from chargeback.core.schema import USAGE_TABLE
    from chargeback.edges.store import _column_arrays

    return _column_arrays(table_columns(USAGE_TABLE), rows)


def table_rows(store: DuckDBStore) -> list[tuple[Any, ...]]:
    """Every stored usage row, in RequestId order."""
    return store.connection.execute('SELECT * FROM "AOAIChargeback_CL" ORDER BY "RequestId"').fetchall()


def test_the_store_is_a_column_writer():
    """DuckDBStore speaks the ColumnWriter protocol the columnar ingest path looks for."""
    from chargeback.edges.sinks import ColumnWriter

    with DuckDBStore() as store:
        assert isinstance(store, ColumnWriter)


def test_columns_of_new_keys_are_written_as_write_would_write_the_rows(tmp_path: Path):
    """write_columns of new keys stores exactly what write() of the same rows stores, and says so."""
    rows = [row(f"r{i}", None if i % 7 == 0 else f"0.{i:04d}") for i in range(300)]
    rows[3]["TimeGenerated"] = datetime(2026, 10, 20, 12, 0, 0, 654321, tzinfo=UTC)
    rows[5]["Model"] = "gpt-4o-2024-08-06"
    with DuckDBStore(tmp_path / "rows.duckdb") as by_rows:
        expected = by_rows.write(rows)
        stored_by_rows = table_rows(by_rows)
    with DuckDBStore(tmp_path / "columns.duckdb") as by_columns:
        result = by_columns.write_columns(columns_of(rows))
    with DuckDBStore(tmp_path / "columns.duckdb") as reopened:
        stored_by_columns = table_rows(reopened)
    assert result is not None
    assert (result.written, result.duplicates, result.failed) == (300, 0, [])
    assert result.written_keys == expected.written_keys == {f"r{i}" for i in range(300)}
    assert stored_by_columns == stored_by_rows


def test_a_held_key_writes_nothing_and_hands_the_batch_back(tmp_path: Path):
    """One RequestId the store holds: None comes back and the table is exactly as it was."""
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        store.write([row("held"), row("other")])
        before = table_rows(store)
        changed = row("held", "9.5")
        assert store.write_columns(columns_of([row("new-1"), changed, row("new-2")])) is None
        assert table_rows(store) == before
        assert store.write([row("new-1")]).written == 1  # the row path still works afterwards


def test_a_key_twice_in_the_batch_writes_nothing(tmp_path: Path):
    """A RequestId repeated within the columns: None, nothing written; the row path decides."""
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        assert store.write_columns(columns_of([row("a"), row("b"), row("a")])) is None
        assert store.count() == 0


def test_columns_duckdb_refuses_or_that_are_incomplete_write_nothing(tmp_path: Path):
    """A value DuckDB cannot store, or a missing column, gives None and an unchanged table."""
    bad = row("bad")
    bad["PromptTokens"] = "many"
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        assert store.write_columns(columns_of([row("good"), bad])) is None
        incomplete = columns_of([row("good")])
        del incomplete["Tags"]
        assert store.write_columns(incomplete) is None
        assert store.count() == 0
        empty = store.write_columns(columns_of([]))
        assert empty is not None
        assert (empty.written, empty.written_keys) == (0, set())
