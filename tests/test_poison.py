"""No event can stop the pipeline: each hostile input of issue #11 ends as one row or one dead-letter.

Every case goes through the real Event Hub trigger (``function_app.on_usage_events`` with
``azure.functions.EventHubEvent`` objects) and through ``chargeback ingest``, in a batch beside
good events that must be written untouched.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import duckdb
import pytest

import function_app
from chargeback import wiring as runtime
from chargeback.cli import main
from chargeback.core.pipeline import row_from_json
from chargeback.edges.deadletter import LocalDeadLetterStore
from tests.conftest import make_event, to_body

WHITESPACE_PROMPT = json.dumps({"messages": [{"role": "user", "content": " " * 1_000_000}]})


def whitespace_event() -> dict[str, Any]:
    """A ~1 MB prompt of one whitespace run and no usage: tiktoken alone panics on it."""
    return make_event(usage=None, requestBody=WHITESPACE_PROMPT, responseBody=None)


# (event, the dead-letter reason it must get, or None when it must be a row)
HOSTILE: dict[str, tuple[dict[str, Any], str | None]] = {
    "whitespace-megabyte": (whitespace_event(), None),
    "surrogate-request-id": (make_event(requestId="\ud800"), "unencodable-text"),
    "surrogate-tag-value": (make_event(tags={"project": "a\udfffb"}), "unencodable-text"),
    "surrogate-tag-key": (make_event(tags={"p\ud801": "x"}), "unencodable-text"),
    "surrogate-subscription-name": (make_event(subscriptionName="Team \ud800"), "unencodable-text"),
    "control-in-name": (make_event(subscriptionName="Team\x1b[2J"), "control-characters"),
    "newline-in-user": (make_event(userId="alice\nFAKE LINE"), "control-characters"),
    "bidi-override-name": (make_event(subscriptionName="Team \u202eA"), "control-characters"),
    "long-user-id": (make_event(userId="u" * 257), "value-too-long"),
    "long-tag-key": (make_event(tags={"k" * 129: "v"}), "value-too-long"),
    "too-many-tags": (make_event(tags={f"k{i}": "v" for i in range(51)}), "too-many-tags"),
    "formula-name": (make_event(subscriptionName='=HYPERLINK("http://x","y")'), None),
    "markup-name": (make_event(subscriptionName="[/bold] [red]x"), None),
}


def good_events(count: int = 5) -> list[dict[str, Any]]:
    return [make_event() for _ in range(count)]


def _rows(db: Path) -> dict[str, dict[str, Any]]:
    runtime.build_writer.cache_clear()  # close the writer's connection before reading the file
    with duckdb.connect(str(db), read_only=True) as connection:
        cursor = connection.execute('SELECT * FROM "AOAIChargeback_CL"')
        names = [d[0] for d in cursor.description]
        return {row[1]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def _dead(folder: Path) -> list[Any]:
    return list(LocalDeadLetterStore(folder).records())


@pytest.fixture
def trigger(config_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The Event Hub trigger as the Functions host calls it, on a fresh local store."""
    card, deployments = config_files
    for name, value in {
        "CHARGEBACK_SINK": "duckdb",
        "CHARGEBACK_DUCKDB_PATH": str(tmp_path / "store.duckdb"),
        "DEADLETTER_PATH": str(tmp_path / "deadletter"),
        "RATE_CARD_PATH": str(card),
        "DEPLOYMENTS_PATH": str(deployments),
    }.items():
        monkeypatch.setenv(name, value)
    runtime.build_writer.cache_clear()
    runtime.build_deadletter.cache_clear()
    yield function_app.on_usage_events.build().get_user_function()
    runtime.build_writer.cache_clear()


def hub_events(bodies: list[bytes]) -> list[func.EventHubEvent]:
    return [
        func.EventHubEvent(
            body=body,
            enqueued_time=datetime(2026, 10, 31, 23, 0, tzinfo=UTC),
            sequence_number=i,
            offset=str(i),
            partition_key="p",
        )
        for i, body in enumerate(bodies)
    ]


def _check(case: str, db: Path, deadletter: Path, good: list[dict[str, Any]]) -> None:
    event, reason = HOSTILE[case]
    rows, dead = _rows(db), _dead(deadletter)
    assert {e["requestId"] for e in good} <= set(rows)  # the neighbours, untouched
    if reason is None:
        assert event["requestId"] in rows
        assert dead == []
        return
    assert len(rows) == len(good)
    assert [d.reason.value for d in dead] == [reason]
    assert dead[0].message.body == to_body(event)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_each_hostile_event_through_the_trigger_is_one_row_or_one_dead_letter(
    trigger: Any, tmp_path: Path, case: str
):
    """Through the Event Hub trigger: the hostile event is one outcome, its neighbours are written."""
    good = good_events()
    bodies = [to_body(good[0]), to_body(HOSTILE[case][0]), *(to_body(e) for e in good[1:])]
    trigger(hub_events(bodies))
    _check(case, tmp_path / "store.duckdb", tmp_path / "deadletter", good)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_each_hostile_event_through_the_cli_is_one_row_or_one_dead_letter(
    config_files: tuple[Path, Path], tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
):
    """Through ``chargeback ingest``: exit 0, one outcome for the hostile event, neighbours written."""
    card, deployments = config_files
    good = good_events()
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([to_body(good[0]), to_body(HOSTILE[case][0]), *map(to_body, good[1:])]))
    db, deadletter = tmp_path / "cli.duckdb", tmp_path / "dl"
    args = ["ingest", str(path), "--db", str(db), "--rate-card", str(card), "--deployments", str(deployments)]
    runtime.build_writer.cache_clear()
    assert main([*args, "--deadletter", str(deadletter)]) == 0
    assert "Traceback" not in capsys.readouterr().out
    _check(case, db, deadletter, good)


def test_the_megabyte_of_whitespace_is_estimated_not_a_panic(trigger: Any, tmp_path: Path):
    """tiktoken is never handed the run whole: the row is flagged estimated, with a plausible count."""
    event = whitespace_event()
    trigger(hub_events([to_body(event)]))
    row = _rows(tmp_path / "store.duckdb")[event["requestId"]]
    assert row["UsageSource"] == "estimated"
    # A million spaces is ~7,800 o200k tokens (runs of 128 spaces are one token each).
    assert 7_000 < row["PromptTokens"] < 9_000


def test_a_rerun_of_the_same_file_writes_no_new_dead_letter(config_files: tuple[Path, Path], tmp_path: Path):
    """Dead-letter names derive from content: ingesting the same file twice leaves one file."""
    card, deployments = config_files
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"{broken\n" + to_body(make_event(requestId="\ud800")) + b"\n")
    args = ["ingest", str(path), "--db", str(tmp_path / "s.duckdb"), "--deadletter", str(tmp_path / "dl")]
    for _ in range(2):
        runtime.build_writer.cache_clear()
        assert main([*args, "--rate-card", str(card), "--deployments", str(deployments)]) == 0
    assert len(LocalDeadLetterStore(tmp_path / "dl").files()) == 1
    assert len(_dead(tmp_path / "dl")) == 2


def test_formula_names_reach_the_csvs_as_text(
    config_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """A subscription named like a formula is charged, and every CSV cell holding it starts with '."""
    import csv

    card, deployments = config_files
    names = ['=HYPERLINK("http://evil","x")', "+cmd|' /C calc'!A0", "@SUM(1)", "-2+3"]
    events = [make_event(subscriptionId=f"sub-{i}", subscriptionName=name) for i, name in enumerate(names)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(to_body(e) for e in events))
    db, out = tmp_path / "s.duckdb", tmp_path / "exports"
    common = ["--db", str(db), "--deployments", str(deployments)]
    runtime.build_writer.cache_clear()
    assert (
        main(["ingest", str(path), *common, "--rate-card", str(card), "--deadletter", str(tmp_path / "dl")])
        == 0
    )
    runtime.build_writer.cache_clear()
    assert main(["rollup", "--month", "2026-10", *common, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Traceback" not in printed
    cells = [
        cell
        for csv_path in sorted(out.glob("*.csv"))
        for row in csv.reader(csv_path.read_text(encoding="utf-8").splitlines())
        for cell in row
    ]
    assert cells
    for name in names:
        assert "'" + name in cells
        assert name not in cells
    assert not [
        cell for cell in cells if cell[:1] in ("=", "+", "@") or (cell[:1] == "-" and not cell[1:2].isdigit())
    ]


def test_a_locked_store_is_one_line_and_exit_2(
    config_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """A second process holding the DuckDB file: ``ingest`` says so in one line and exits 2."""
    import subprocess
    import sys

    card, deployments = config_files
    db = tmp_path / "busy.duckdb"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('ready', flush=True); "
            "sys.stdin.read()",
            str(db),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        path = tmp_path / "events.jsonl"
        path.write_bytes(to_body(make_event()))
        runtime.build_writer.cache_clear()
        code = main(
            [
                "ingest",
                str(path),
                "--db",
                str(db),
                "--rate-card",
                str(card),
                "--deployments",
                str(deployments),
            ]
        )
    finally:
        holder.communicate("", timeout=60)
    out = capsys.readouterr().out
    assert code == 2
    assert len(out.strip().splitlines()) == 1
    assert "in use by another process" in out
    assert "Traceback" not in out


def _conflicting(event: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    other_sub = dict(event, subscriptionId="team-z")
    other_usage = dict(event, usage=dict(event["usage"], completion_tokens=9_999, total_tokens=10_999))
    return other_sub, other_usage


def test_conflicting_duplicates_through_the_trigger_are_dead_lettered_as_conflicts(
    trigger: Any, tmp_path: Path
):
    """Same RequestId, other subscription or usage: a conflict, in the same batch or a later one."""
    first = make_event()
    other_sub, other_usage = _conflicting(first)
    trigger(hub_events([to_body(first), to_body(other_sub)]))
    trigger(hub_events([to_body(other_usage), to_body(first)]))  # a later batch, and a redelivery
    rows, dead = _rows(tmp_path / "store.duckdb"), _dead(tmp_path / "deadletter")
    assert rows[first["requestId"]]["SubscriptionId"] == "team-a"
    assert rows[first["requestId"]]["CompletionTokens"] == 200
    # Dead-lettered as their priced rows (the conflict is found after pricing): no bodies kept.
    assert {(d.reason.value, d.kind) for d in dead} == {("conflict", "row")}
    losers = sorted(
        (r["SubscriptionId"], r["CompletionTokens"])
        for r in map(row_from_json, (d.message.body for d in dead))
    )
    assert losers == [("team-a", 9_999), ("team-z", 200)]


def test_conflicting_duplicates_through_the_cli_are_dead_lettered_as_conflicts(
    config_files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """``chargeback ingest`` counts a conflict as a dead-letter reason, and a redelivery as a duplicate."""
    card, deployments = config_files
    first = make_event()
    other_sub, other_usage = _conflicting(first)
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(to_body(e) for e in (first, other_sub, first, other_usage)))
    db, deadletter = tmp_path / "s.duckdb", tmp_path / "dl"
    runtime.build_writer.cache_clear()
    args = ["ingest", str(path), "--db", str(db), "--rate-card", str(card), "--deployments", str(deployments)]
    assert main([*args, "--deadletter", str(deadletter)]) == 0
    assert "conflict" in capsys.readouterr().out
    assert list(_rows(db)) == [first["requestId"]]
    assert sorted(d.reason.value for d in _dead(deadletter)) == ["conflict", "conflict"]


def test_both_stores_charge_a_conflicting_request_id_to_the_same_row(pricer, log_analytics, tmp_path: Path):
    """The same batches into DuckDB and into Log Analytics (queried by KQL): each conflict resolves alike."""
    from azure.monitor.query import LogsQueryClient

    from chargeback.core.pipeline import Message, Source
    from chargeback.edges.azure_clients import LocalStandInCredential
    from chargeback.edges.kqlrun import LocalKqlRunner, LogAnalyticsKqlRunner
    from chargeback.edges.store import DuckDBStore
    from chargeback.jobs.ingest import ingest_batch
    from tests.conftest import la_writer

    late, early = "2026-10-20T11:15:30Z", "2026-10-20T10:15:30Z"
    a_late = make_event(requestId="a", subscriptionId="team-a", timestamp=late)
    a_early = make_event(requestId="a", subscriptionId="team-z", timestamp=early)  # arrives second
    b_early = make_event(requestId="b", subscriptionId="team-b", timestamp=early)
    b_late = make_event(requestId="b", subscriptionId="team-c", timestamp=late)
    c_twice = make_event(requestId="c", subscriptionId="team-c", timestamp=early)
    batches = [[a_late], [a_early, b_late, c_twice], [b_early, c_twice]]
    month = {"MonthStart": datetime(2026, 10, 1, tzinfo=UTC), "MonthEnd": datetime(2026, 11, 1, tzinfo=UTC)}
    totals = {}
    with DuckDBStore() as store:
        for name, writer in (("duckdb", store), ("loganalytics", la_writer(log_analytics))):
            dead = LocalDeadLetterStore(tmp_path / name)
            for batch in batches:
                summary = ingest_batch(
                    [Message(to_body(e), Source("file")) for e in batch],
                    pricer=pricer,
                    writer=writer,
                    deadletter=dead,
                )
                assert summary.accounted
        local = LocalKqlRunner(store.connection).run("monthly_rollup", month)
    client = LogsQueryClient(LocalStandInCredential(), endpoint=log_analytics.endpoint)
    remote = LogAnalyticsKqlRunner(client, "workspace-1", enforce_https=False).run(
        "monthly_rollup", month, window=(month["MonthStart"], month["MonthEnd"])
    )
    for name, frame in (("duckdb", local), ("loganalytics", remote)):
        totals[name] = frame.groupby("SubscriptionId")["Requests"].sum().to_dict()
    assert totals["duckdb"] == totals["loganalytics"] == {"team-z": 1, "team-b": 1, "team-c": 1}
