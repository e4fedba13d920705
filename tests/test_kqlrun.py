"""The KQL files: every one runs on DuckDB through duckdb-kql, and their numbers match plain SQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from chargeback.edges.kqlrun import LocalKqlRunner, bind, declared_parameters, load_query, query_files
from chargeback.errors import ConfigError
from tests import monthdata

START, END = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
VALUES = {"datetime": START, "string": "2026-10", "bool": True, "long": 1, "int": 1, "real": 1.5}
QUERIES = sorted(name for name, _ in query_files())
DEDUPED = """
    SELECT * FROM (SELECT DISTINCT ON ("RequestId") * FROM "AOAIChargeback_CL"
                   ORDER BY "RequestId", "TimeGenerated" DESC)
    WHERE "TimeGenerated" >= TIMESTAMP '2026-10-01' AND "TimeGenerated" < TIMESTAMP '{end}'
"""


def params_for(text: str) -> dict[str, Any]:
    """A value for every parameter a query declares (month bounds, an as-of instant, a month)."""
    named = {"MonthStart": START, "MonthEnd": END, "AsOf": datetime(2026, 10, 20, tzinfo=UTC)}
    return {name: named.get(name, VALUES[kind]) for name, kind in declared_parameters(text).items()}


def test_the_package_ships_the_rollup_queries() -> None:
    """The rollup, month-to-date, alerts and rate-card queries are all found under chargeback/kql."""
    assert {"monthly_rollup", "month_to_date_spend", "alerts_raised", "rate_card_versions"} <= set(QUERIES)


@pytest.mark.parametrize("name", QUERIES)
def test_every_kql_file_runs_locally(name: str, october_store: Any) -> None:
    """Every .kql file under chargeback/kql (workbook queries included) runs on the seeded store."""
    from chargeback.edges.gatewaylog import create_gateway_tables

    create_gateway_tables(october_store.connection)  # APIM's log tables, as in the workspace
    text = load_query(name)
    frame = LocalKqlRunner(october_store.connection).run_text(bind(text, params_for(text)), name=name)
    assert list(frame.columns)


def _sums(frame: Any, columns: list[str]) -> dict[str, Decimal]:
    return {column: Decimal(repr(float(frame[column].fillna(0).sum()))) for column in columns}


def test_monthly_rollup_matches_sql_over_deduplicated_rows(october_store: Any) -> None:
    """With redeliveries in the table, the rollup's totals equal SQL over one row per RequestId."""
    connection = monthdata.duplicated_copy(october_store)
    assert connection.execute(
        'SELECT count(*) - count(DISTINCT "RequestId") FROM "AOAIChargeback_CL"'
    ).fetchone()[0]
    frame = LocalKqlRunner(connection).run("monthly_rollup", {"MonthStart": START, "MonthEnd": END})
    expected = connection.execute(
        f"""SELECT SubscriptionId, count(*), sum(PromptTokens), sum(CachedTokens), sum(CompletionTokens),
                   sum(coalesce(InputCost, 0)), sum(coalesce(OutputCost, 0)),
                   sum(coalesce(CachedInputCost, 0))
            FROM ({DEDUPED.format(end="2026-11-01")}) GROUP BY ALL ORDER BY 1"""
    ).fetchall()
    got = frame.groupby("SubscriptionId")[
        [
            "Requests",
            "PromptTokens",
            "CachedTokens",
            "CompletionTokens",
            "InputCost",
            "OutputCost",
            "CachedInputCost",
        ]
    ].sum()
    assert len(expected) == len(got) == 3
    for sub, requests, prompt, cached, completion, input_cost, output_cost, cached_cost in expected:
        row = got.loc[sub]
        assert (row.Requests, row.PromptTokens, row.CachedTokens, row.CompletionTokens) == (
            requests,
            prompt,
            cached,
            completion,
        )
        assert row.InputCost == pytest.approx(input_cost, abs=1e-9)
        assert row.OutputCost == pytest.approx(output_cost, abs=1e-9)
        assert row.CachedInputCost == pytest.approx(cached_cost, abs=1e-9)


def test_month_to_date_spend_matches_sql(october_store: Any) -> None:
    """Month-to-date spend per subscription equals SQL over deduplicated rows before AsOf."""
    connection = monthdata.duplicated_copy(october_store)
    as_of = datetime(2026, 10, 15, tzinfo=UTC)
    frame = LocalKqlRunner(connection).run("month_to_date_spend", {"MonthStart": START, "AsOf": as_of})
    expected = dict(
        connection.execute(
            "SELECT SubscriptionId, sum(coalesce(TotalCost, 0)) "
            f"FROM ({DEDUPED.format(end='2026-10-15')}) GROUP BY 1"
        ).fetchall()
    )
    got = frame.groupby("SubscriptionId")["Spend"].sum().to_dict()
    assert got.keys() == expected.keys()
    for sub, spend in expected.items():
        assert got[sub] == pytest.approx(spend, abs=1e-9)
    ptu = frame[frame.PtuDeployment != ""]
    assert set(ptu.PtuDeployment) == {"ptu-chat"}
    assert ptu.PtuPromptTokens.sum() > 0


def test_bind_prepends_typed_lets_and_escapes_strings() -> None:
    """Parameters become let statements; a string cannot break out of its literal."""
    text = load_query("alerts_raised")
    bound = bind(text, {"AlertMonth": 'x" | take 1 //'})
    assert bound.startswith('let AlertMonth = "x\\" | take 1 //";\n')
    bound = bind(load_query("monthly_rollup"), {"MonthStart": START, "MonthEnd": END})
    assert bound.startswith("let MonthStart = datetime(2026-10-01T00:00:00.000000Z);\n")


def test_bind_refuses_a_missing_parameter() -> None:
    """A query run without one of its declared parameters is a configuration error."""
    with pytest.raises(ConfigError, match="MonthEnd"):
        bind(load_query("monthly_rollup"), {"MonthStart": START})


def test_rollup_through_the_real_logs_query_client_against_the_local_server(october_store: Any) -> None:
    """The rollup run through LogsQueryClient on the local Log Analytics server equals the local run."""
    from azure.monitor.query import LogsQueryClient

    from chargeback.core.pricing import DeploymentMap
    from chargeback.edges.azure_clients import LocalStandInCredential
    from chargeback.edges.kqlrun import LogAnalyticsKqlRunner
    from chargeback.jobs.rollup import run_rollup
    from chargeback.jobs.statement import build_statement
    from chargeback_dev.localserver import LocalLogAnalytics

    local = run_rollup(LocalKqlRunner(october_store.connection), "2026-10")
    frame = october_store.connection.execute('SELECT * FROM "AOAIChargeback_CL"').df()
    with LocalLogAnalytics() as server:
        with server.lock:
            cursor = server.connection.cursor()
            cursor.register("seed", frame)
            cursor.execute('INSERT INTO "AOAIChargeback_CL" SELECT * FROM seed')
            cursor.execute('INSERT INTO "AOAIChargeback_CL" SELECT * FROM seed LIMIT 5')  # redeliveries
            cursor.close()
        client = LogsQueryClient(LocalStandInCredential(), endpoint=server.endpoint)
        remote = run_rollup(LogAnalyticsKqlRunner(client, "workspace-1", enforce_https=False), "2026-10")
    assert len(remote.lines) == len(local.lines)
    assert remote.rate_card_versions == local.rate_card_versions
    # Float sums may differ in the last bit; the statements (exact quantity x price) are identical.
    ptu = DeploymentMap.load(october_store.config["deployments"]).ptu_deployments()
    assert build_statement(remote, {}, ptu).focus == build_statement(local, {}, ptu).focus


# ------------------------------------------------------------------------------------------------
# The Deduplicate switch: off only where the table's primary key already makes RequestIds unique

MONTH = {"MonthStart": START, "MonthEnd": END}
SPEND = {"MonthStart": START, "AsOf": datetime(2026, 10, 20, tzinfo=UTC)}


def test_parameter_defaults_fill_missing_values() -> None:
    """``Name:bool = true`` in the header is bound when no value is given; a given value wins."""
    text = "// Parameters: A:datetime, Deduplicate:bool = true, N:long = 3\nT"
    assert declared_parameters(text) == {"A": "datetime", "Deduplicate": "bool", "N": "long"}
    bound = bind(text, {"A": START})
    assert "let Deduplicate = true;\nlet N = long(3);" in bound
    assert "let Deduplicate = false;" in bind(text, {"A": START, "Deduplicate": False})
    with pytest.raises(ConfigError, match="default"):
        declared_parameters("// Parameters: S:string = x\nT")


def test_the_deduplicated_queries_default_to_deduplicate() -> None:
    """The rollup and month-to-date queries declare the switch with default true."""
    for name in ("monthly_rollup", "month_to_date_spend"):
        text = load_query(name)
        assert declared_parameters(text)["Deduplicate"] == "bool"
        assert "let Deduplicate = true;" in bind(text, params_for(text) | {"Deduplicate": True})
        assert "let Deduplicate = true;" in bind(
            text, {k: v for k, v in params_for(text).items() if k != "Deduplicate"}
        )


def test_the_local_runner_reads_the_key_from_the_catalog(october_store: Any) -> None:
    """The store's table has RequestId as primary key; a copy without it, or another key, has not."""
    import duckdb

    assert LocalKqlRunner(october_store.connection).unique_request_ids()
    assert not LocalKqlRunner(monthdata.duplicated_copy(october_store)).unique_request_ids()
    other = duckdb.connect()
    other.execute(
        'CREATE TABLE "AOAIChargeback_CL" ("RequestId" VARCHAR, "X" INT, PRIMARY KEY ("RequestId", "X"))'
    )
    assert not LocalKqlRunner(other).unique_request_ids()
    view = duckdb.connect()
    view.execute('CREATE TABLE t ("RequestId" VARCHAR PRIMARY KEY)')
    view.execute('CREATE VIEW "AOAIChargeback_CL" AS SELECT * FROM t')
    assert not LocalKqlRunner(view).unique_request_ids()


def _frames_equal(left: Any, right: Any) -> None:
    import pandas as pd

    pd.testing.assert_frame_equal(left.reset_index(drop=True), right.reset_index(drop=True), rtol=1e-12)


@pytest.mark.parametrize(("name", "params"), [("monthly_rollup", MONTH), ("month_to_date_spend", SPEND)])
def test_on_the_keyed_store_the_undeduplicated_run_equals_the_deduplicated(
    name: str, params: dict[str, Any], october_store: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The local store cannot hold a RequestId twice, so skipping the dedupe changes no number."""
    runner = LocalKqlRunner(october_store.connection)
    with caplog.at_level("DEBUG", logger="chargeback.edges.kqlrun"):
        skipped = runner.run(name, params)
    assert f"KQL query {name}: Deduplicate=False" in caplog.text
    deduped = runner.run(name, params | {"Deduplicate": True})
    assert len(skipped) > 3
    _frames_equal(skipped, deduped)
    # And both equal the query run on an unkeyed copy of the same rows (where it must dedupe).
    copy = monthdata.duplicated_copy(october_store)
    copy.execute("""DELETE FROM "AOAIChargeback_CL" WHERE rowid NOT IN
                    (SELECT min(rowid) FROM "AOAIChargeback_CL" GROUP BY "RequestId")""")
    _frames_equal(skipped, LocalKqlRunner(copy).run(name, params))


def test_without_the_key_the_local_runner_deduplicates_and_refuses_to_skip(october_store: Any) -> None:
    """On a table that may hold redeliveries the dedupe stays on; asking to skip it is an error."""
    connection = monthdata.duplicated_copy(october_store)
    runner = LocalKqlRunner(connection)
    frame = runner.run("monthly_rollup", MONTH)
    distinct = connection.execute(
        """SELECT count(DISTINCT "RequestId") FROM "AOAIChargeback_CL"
           WHERE "TimeGenerated" >= TIMESTAMP '2026-10-01' AND "TimeGenerated" < TIMESTAMP '2026-11-01'"""
    ).fetchone()[0]
    assert frame.Requests.sum() == distinct
    with pytest.raises(ConfigError, match="Deduplicate=false"):
        runner.run("monthly_rollup", MONTH | {"Deduplicate": False})


def _plan_operators(connection: Any, query: str) -> list[str]:
    import json

    import duckdb_kql

    from chargeback.core.schema import USAGE_TABLE, table_columns

    sql = duckdb_kql.to_sql(query, schema={USAGE_TABLE: [c.name for c in table_columns(USAGE_TABLE)]})
    cursor = connection.cursor()
    cursor.execute("SET TimeZone = 'UTC'")
    plans = json.loads(cursor.execute("EXPLAIN (FORMAT json) " + sql).fetchall()[0][1])
    cursor.close()

    def names(node: dict[str, Any]) -> list[str]:
        return [str(node["name"]), *(name for child in node.get("children", []) for name in names(child))]

    return [name for plan in plans for name in names(plan)]


@pytest.mark.parametrize(
    ("name", "params", "joins"),
    [
        # Repeated and Earlier (ids charged in earlier months), two legs each.
        ("monthly_rollup", MONTH, 4),
        ("month_to_date_spend", SPEND, 4),
        ("rate_card_versions", MONTH, 4),
        ("meter_usage", {"Since": START, "Until": END}, 2),  # Repeated only: no month to charge
    ],
)
def test_the_disabled_dedupe_is_folded_away(
    name: str, params: dict[str, Any], joins: int, october_store: Any
) -> None:
    """Deduplicate = false leaves one scan of the table and no join: the dedupe legs plan as empty."""
    text = load_query(name)
    off = _plan_operators(october_store.connection, bind(text, params | {"Deduplicate": False}))
    on = _plan_operators(october_store.connection, bind(text, params | {"Deduplicate": True}))
    scans = {"SEQ_SCAN", "TABLE_SCAN"}
    assert sum(operator in scans for operator in off) == 1, off
    assert not any("JOIN" in operator for operator in off), off
    assert on.count("HASH_JOIN") == joins, on
    assert sum(operator in scans for operator in on) >= 2, on


class _RecordingClient:
    """A LogsQueryClient stand-in that records the query and answers one empty table."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def query_workspace(self, workspace_id: str, query: str, **kwargs: Any) -> Any:
        from types import SimpleNamespace

        from azure.monitor.query import LogsQueryStatus

        self.queries.append(query)
        return SimpleNamespace(
            status=LogsQueryStatus.SUCCESS, tables=[SimpleNamespace(columns=["A"], rows=[])]
        )


def test_the_log_analytics_runner_always_deduplicates() -> None:
    """Log Analytics keeps every delivery: the runner binds Deduplicate = true and refuses false."""
    from chargeback.edges.kqlrun import LogAnalyticsKqlRunner

    client = _RecordingClient()
    runner = LogAnalyticsKqlRunner(client, "workspace-1")
    runner.run("monthly_rollup", MONTH, window=(START, END))
    runner.run("month_to_date_spend", SPEND | {"Deduplicate": True}, window=(START, END))
    assert all("let Deduplicate = true;" in query for query in client.queries)
    with pytest.raises(ConfigError, match="Log Analytics does not deduplicate"):
        runner.run("monthly_rollup", MONTH | {"Deduplicate": False}, window=(START, END))
    assert len(client.queries) == 2


def test_the_local_log_analytics_server_path_deduplicates_redeliveries(october_store: Any) -> None:
    """Rows appended twice to the local Log Analytics server (no key, like Log Analytics) count once."""
    from azure.monitor.query import LogsQueryClient

    from chargeback.edges.azure_clients import LocalStandInCredential
    from chargeback.edges.kqlrun import LogAnalyticsKqlRunner
    from chargeback_dev.localserver import LocalLogAnalytics

    local = LocalKqlRunner(october_store.connection)
    expected = local.run("monthly_rollup", MONTH)
    frame = october_store.connection.execute('SELECT * FROM "AOAIChargeback_CL"').df()
    with LocalLogAnalytics() as server:
        with server.lock:
            cursor = server.connection.cursor()
            cursor.register("seed", frame)
            cursor.execute('INSERT INTO "AOAIChargeback_CL" SELECT * FROM seed')
            # Redeliveries of a third of the calls, each copy stamped a second later.
            cursor.execute(
                """INSERT INTO "AOAIChargeback_CL" SELECT * REPLACE ("TimeGenerated" + INTERVAL 1 SECOND AS
                   "TimeGenerated") FROM seed WHERE RIGHT("RequestId", 1) IN ('1', '4', '7')"""
            )
            row = cursor.execute(
                'SELECT count(*), count(DISTINCT "RequestId") FROM "AOAIChargeback_CL"'
            ).fetchone()
            assert row is not None
            total, distinct = row
            cursor.close()
        assert total > distinct
        client = LogsQueryClient(LocalStandInCredential(), endpoint=server.endpoint)
        remote = LogAnalyticsKqlRunner(client, "workspace-1", enforce_https=False).run(
            "monthly_rollup", MONTH, window=(START, END)
        )
    assert remote.Requests.sum() == expected.Requests.sum() == distinct
    assert remote.PromptTokens.sum() == expected.PromptTokens.sum()
    assert remote.CompletionTokens.sum() == expected.CompletionTokens.sum()


def test_the_rollup_rounds_unit_prices_as_round_to_six_digits() -> None:
    """``round(x * 1e6) / 1e6`` (cheap on DuckDB) is ``round(x, 6)`` for per-1M prices from costs."""
    import duckdb

    query = """range i from 1 to 200000 step 1
        | extend Tokens = i % 7919 + 1, Price = (i % 4001) * 0.0125 + 0.001
        | extend Cost = Tokens * Price / 1000000.0
        | extend Read = Cost * 1000000.0 / Tokens
        | where round(Read, 6) != round(Read * 1000000.0) / 1000000.0 or round(Read, 6) != round(Price, 6)
        | count"""
    frame = LocalKqlRunner(duckdb.connect()).run_text(query)
    assert frame.iloc[0, 0] == 0


def test_a_later_revision_supersedes_in_both_stores_without_double_charging(october_store: Any) -> None:
    """A gateway-log revision replaces the row locally and wins arg_max in Log Analytics: same totals."""
    from azure.monitor.query import LogsQueryClient

    from chargeback.edges.azure_clients import LocalStandInCredential
    from chargeback.edges.kqlrun import LogAnalyticsKqlRunner
    from chargeback_dev.localserver import LocalLogAnalytics

    connection = october_store.connection
    before = LocalKqlRunner(connection).run("monthly_rollup", MONTH)
    original = connection.execute('SELECT * FROM "AOAIChargeback_CL"').df()
    revised = original[original.RequestId.str.endswith(("2", "5")) & original.OutputCost.notna()].copy()
    revised["UsageRevision"] = 1
    revised["UsageSource"] = "gateway-log"
    revised["CompletionTokens"] = revised["CompletionTokens"] + 1000
    revised["OutputCost"] = revised["OutputCost"] + 1.0
    assert len(revised) > 0
    result = october_store.supersede(revised.to_dict("records"))
    assert result.written == len(revised)
    local = LocalKqlRunner(connection).run("monthly_rollup", MONTH)
    with LocalLogAnalytics() as server:
        with server.lock:
            cursor = server.connection.cursor()
            for name, frame in (("seed", original), ("later", revised)):
                cursor.register(name, frame)
                cursor.execute(f'INSERT INTO "AOAIChargeback_CL" SELECT * FROM {name}')
            cursor.close()
        client = LogsQueryClient(LocalStandInCredential(), endpoint=server.endpoint)
        runner = LogAnalyticsKqlRunner(client, "workspace-1", enforce_https=False)
        remote = runner.run("monthly_rollup", MONTH, window=(START, END))
        spend = runner.run("month_to_date_spend", SPEND, window=(START, END))
    assert local.Requests.sum() == remote.Requests.sum() == before.Requests.sum() == len(original)
    assert local.CompletionTokens.sum() == remote.CompletionTokens.sum()
    assert local.CompletionTokens.sum() == before.CompletionTokens.sum() + 1000 * len(revised)
    assert abs(float(local.OutputCost.sum()) - float(before.OutputCost.sum()) - len(revised)) < 1e-6
    assert abs(float(remote.OutputCost.sum()) - float(local.OutputCost.sum())) < 1e-6
    assert spend.Requests.sum() <= len(original)
    assert set(local.UsageSource) >= {"gateway-log"}


def test_a_conflict_and_a_next_month_redelivery_resolve_as_in_the_keyed_store(october_store: Any) -> None:
    """Keyless (Log Analytics): a later conflicting row loses and a November copy is not charged again."""
    keyed = LocalKqlRunner(october_store.connection).run("monthly_rollup", MONTH)
    connection = monthdata.duplicated_copy(october_store)
    [(request_id,)] = connection.execute(
        'SELECT "RequestId" FROM "AOAIChargeback_CL" ORDER BY "RequestId" LIMIT 1'
    ).fetchall()
    # The same call charged to another subscription an hour later (a conflict that reached Log
    # Analytics from another batch), and a replay of it stamped in November (the 2-day clamp).
    connection.execute(
        """INSERT INTO "AOAIChargeback_CL" SELECT * REPLACE ('team-z' AS "SubscriptionId",
               "TimeGenerated" + INTERVAL 1 HOUR AS "TimeGenerated") FROM "AOAIChargeback_CL"
           WHERE "RequestId" = $id LIMIT 1""",
        {"id": request_id},
    )
    connection.execute(
        """INSERT INTO "AOAIChargeback_CL" SELECT * REPLACE (TIMESTAMP '2026-11-05' AS "TimeGenerated")
           FROM "AOAIChargeback_CL" WHERE "RequestId" = $id LIMIT 1""",
        {"id": request_id},
    )
    runner = LocalKqlRunner(connection)
    keyless = runner.run("monthly_rollup", MONTH)
    assert "team-z" not in set(keyless.SubscriptionId)
    by_subscription = ["SubscriptionId", "Requests", "PromptTokens", "CompletionTokens"]
    assert (
        keyless[by_subscription].groupby("SubscriptionId").sum().to_dict()
        == keyed[by_subscription].groupby("SubscriptionId").sum().to_dict()
    )
    november = runner.run(
        "monthly_rollup", {"MonthStart": END, "MonthEnd": datetime(2026, 12, 1, tzinfo=UTC)}
    )
    assert november.empty or november.Requests.sum() == 0


@pytest.mark.parametrize("name", ["monthly_rollup", "month_to_date_spend"])
def test_the_earliest_row_stage_carries_every_column_the_latest_revision_stage_reads(name: str) -> None:
    """The two dedupe stages (earliest row per revision, then the top revision) name the same columns."""
    import re

    text = load_query(name)
    earliest = re.search(r"arg_min\(TimeGenerated, (.*?)\) by RequestId, UsageRevision", text, re.S)
    latest = re.search(r"arg_max\(UsageRevision, TimeGenerated, (.*?)\) by RequestId\)", text, re.S)
    assert earliest is not None
    assert latest is not None
    assert earliest.group(1).split() == latest.group(1).split()


@pytest.mark.parametrize("name", ["meter_usage"])
def test_the_rate_card_queries_count_each_call_once_on_log_analytics_shaped_rows(
    name: str, october_store: Any
) -> None:
    """meter_usage dedupes the range on Log Analytics-shaped rows: redeliveries change nothing."""
    text = load_query(name)
    bound = bind(
        text, params_for(text) | {"Since": START, "Until": END, "MonthStart": START, "MonthEnd": END}
    )
    keyed = LocalKqlRunner(october_store.connection).run_text(bound, name=name)
    redelivered = LocalKqlRunner(monthdata.duplicated_copy(october_store)).run_text(bound, name=name)
    assert len(keyed) > 0
    _frames_equal(keyed, redelivered)


def test_rate_card_versions_count_the_rows_the_rollup_charges_on_log_analytics_shaped_rows(
    october_store: Any,
) -> None:
    """rate_card_versions dedupes as monthly_rollup: a revision's card wins, a later conflict's does not."""
    keyed = LocalKqlRunner(october_store.connection).run("rate_card_versions", MONTH)
    connection = monthdata.duplicated_copy(october_store)
    [(revised,), (conflicting,)] = connection.execute(
        'SELECT DISTINCT "RequestId" FROM "AOAIChargeback_CL" ORDER BY "RequestId" LIMIT 2'
    ).fetchall()
    # A later revision of one call priced by a new card; the other call again at the same revision an
    # hour later from another batch (a conflict: the earliest row wins), then replayed in November.
    connection.execute(
        """INSERT INTO "AOAIChargeback_CL" SELECT * REPLACE (1 AS "UsageRevision",
               'card-revised' AS "RateCardVersion")
           FROM "AOAIChargeback_CL" WHERE "RequestId" = $id LIMIT 1""",
        {"id": revised},
    )
    connection.execute(
        """INSERT INTO "AOAIChargeback_CL" SELECT * REPLACE ('card-conflict' AS "RateCardVersion",
               "TimeGenerated" + INTERVAL 1 HOUR AS "TimeGenerated")
           FROM "AOAIChargeback_CL" WHERE "RequestId" = $id LIMIT 1""",
        {"id": conflicting},
    )
    runner = LocalKqlRunner(connection)
    versions = runner.run("rate_card_versions", MONTH)
    counts = dict(zip(versions.RateCardVersion, versions.Rows, strict=True))
    assert sum(counts.values()) == runner.run("monthly_rollup", MONTH).Requests.sum() == keyed.Rows.sum()
    assert counts["card-revised"] == 1
    assert "card-conflict" not in counts


@pytest.mark.parametrize("name", QUERIES)
def test_the_runner_returns_what_duckdb_kql_execute_returns(name: str, october_store: Any) -> None:
    """The runner's own translate-and-execute (cached SQL) gives duckdb_kql.execute's rows and columns."""
    import duckdb_kql

    from chargeback.edges.gatewaylog import create_gateway_tables

    create_gateway_tables(october_store.connection)
    query = bind(load_query(name), params_for(load_query(name)))
    cursor = october_store.connection.cursor()
    expected = duckdb_kql.execute(cursor, query).df()
    cursor.close()
    _frames_equal(LocalKqlRunner(october_store.connection).run_text(query, name=name), expected)


def test_a_package_query_runs_the_shipped_sql_for_any_month(october_store: Any) -> None:
    """On a store's schema every month runs the shipped SQL; another table translates once, then reuses it."""
    from chargeback.edges.kqlrun import translate

    runner = LocalKqlRunner(october_store.connection)
    translate.cache_clear()
    first = runner.records("monthly_rollup", MONTH)
    runner.records("monthly_rollup", {"MonthStart": END, "MonthEnd": datetime(2026, 12, 1, tzinfo=UTC)})
    assert (translate.cache_info().hits, translate.cache_info().misses) == (0, 0)
    october_store.connection.execute('CREATE TABLE "Unrelated" ("A" INTEGER)')
    assert runner.records("monthly_rollup", MONTH) == first
    assert runner.records("monthly_rollup", MONTH) == first
    assert (translate.cache_info().hits, translate.cache_info().misses) == (1, 1)


def test_the_shipped_translations_are_the_kql_files_translated() -> None:
    """translated.json is exactly what the .kql files translate to now (else: regenerate it)."""
    from chargeback.edges.kqlrun import (
        TRANSLATIONS,
        build_translations,
        query_root,
        render_translations,
        store_tables,
    )

    shipped = query_root().joinpath(TRANSLATIONS).read_text(encoding="utf-8")
    assert shipped == render_translations(build_translations(store_tables())), (
        "chargeback/kql/translated.json is stale: run `python -m chargeback.edges.kqlrun`"
    )


def test_the_shipped_translations_cover_the_store_queries() -> None:
    """Each store query ships for each Deduplicate value; the gateway join and workbook do not."""
    import json

    from chargeback.edges.kqlrun import TRANSLATIONS, query_root

    entries = json.loads(query_root().joinpath(TRANSLATIONS).read_text(encoding="utf-8"))["translations"]
    shipped = {(entry["query"], tuple(sorted(entry["bools"].items()))) for entry in entries.values()}
    assert ("monthly_rollup", (("Deduplicate", False),)) in shipped
    assert ("monthly_rollup", (("Deduplicate", True),)) in shipped
    assert ("stream_estimates", ()) in shipped
    assert not any(name == "gateway_llm_usage" or "/" in name for name, _ in shipped)


def test_bind_local_declares_values_and_keeps_bools_as_literals() -> None:
    """The local text declares the month as query parameters (values apart) and binds Deduplicate as a let."""
    from chargeback.edges.kqlrun import bind_local

    text = "// Parameters: MonthStart:datetime, Who:string, Deduplicate:bool = true\nT"
    query, values = bind_local(text, {"MonthStart": START, "Who": 'a"b'})
    assert (
        query
        == f"declare query_parameters(MonthStart:datetime, Who:string);\nlet Deduplicate = true;\n{text}"
    )
    assert values == {"MonthStart": START, "Who": 'a"b'}
    with pytest.raises(ConfigError):
        bind_local(text, {"MonthStart": "2026-10-01", "Who": "x"})


@pytest.mark.parametrize("name", [name for name in QUERIES if "/" not in name])
def test_the_declared_parameters_give_the_let_bound_rows(name: str, october_store: Any) -> None:
    """A package query run with its values as query parameters returns what the let-bound text returns."""
    from chargeback.edges.gatewaylog import create_gateway_tables

    create_gateway_tables(october_store.connection)
    params = params_for(load_query(name))
    runner = LocalKqlRunner(october_store.connection)
    expected = runner.run_text(bind(load_query(name), params), name=name)
    _frames_equal(runner.run(name, params), expected)


def test_the_translation_is_deterministic() -> None:
    """duckdb-kql gives the same SQL for the same text and schema, so caching it changes nothing."""
    import duckdb_kql

    from chargeback.core.schema import USAGE_TABLE, table_columns

    schema = {USAGE_TABLE: [column.name for column in table_columns(USAGE_TABLE)]}
    for name in ("monthly_rollup", "rate_card_versions", "stream_estimates"):
        query = bind(load_query(name), params_for(load_query(name)))
        assert str(duckdb_kql.to_sql(query, schema=schema)) == str(duckdb_kql.to_sql(query, schema=schema))
