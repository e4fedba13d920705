"""The KQL files: every one runs on DuckDB through duckdb-kql, and their numbers match plain SQL."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from chargeback.errors import ConfigError
from chargeback.kqlrun import LocalKqlRunner, bind, declared_parameters, load_query, query_files
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

    from chargeback.azure_clients import LocalStandInCredential
    from chargeback.exports import build_statement
    from chargeback.kqlrun import LogAnalyticsKqlRunner
    from chargeback.localserver import LocalLogAnalytics
    from chargeback.pricing import DeploymentMap
    from chargeback.rollup import run_rollup

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
