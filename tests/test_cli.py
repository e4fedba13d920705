"""The command line: ingest streams JSONL into the store with a readable summary; demo runs end to end."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from chargeback import wiring as runtime
from chargeback.cli import main
from tests.conftest import make_event, to_body


@pytest.fixture(autouse=True)
def fresh_runtime():
    """Each CLI run builds its own writer."""
    runtime.build_writer.cache_clear()
    yield
    runtime.build_writer.cache_clear()


def write_jsonl(path: Path, bodies: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(bodies) + b"\n")
    return path


def test_ingest_writes_rows_dead_letters_and_prints_a_summary(tmp_path: Path, config_files, capsys):
    """ingest: good rows stored, bad ones dead-lettered, counts by outcome and reason printed, exit 0."""
    card, deployments = config_files
    good = [make_event() for _ in range(3)]
    bodies = [to_body(e) for e in good] + [
        to_body(good[0]),
        b"{broken",
        to_body(make_event(schemaVersion="2")),
    ]
    path = write_jsonl(tmp_path / "events.jsonl", bodies)
    db = tmp_path / "out.duckdb"
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
            "--deadletter",
            str(tmp_path / "dl"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    for text in (
        "received",
        "written",
        "duplicate",
        "dead-lettered",
        "invalid-json",
        "unknown-schema-version",
        "reported",
        "priced",
        "team-a",
    ):
        assert text in out
    runtime.build_writer.cache_clear()
    with duckdb.connect(str(db), read_only=True) as connection:
        ids = {r[0] for r in connection.execute('SELECT RequestId FROM "AOAIChargeback_CL"').fetchall()}
    assert ids == {e["requestId"] for e in good}
    assert len(list((tmp_path / "dl").rglob("*.jsonl"))) == 1


def test_ingest_reads_gzip_files(tmp_path: Path, config_files):
    """A .jsonl.gz file is read as JSONL."""
    card, deployments = config_files
    path = tmp_path / "events.jsonl.gz"
    path.write_bytes(gzip.compress(to_body(make_event()) + b"\n"))
    code = main(
        [
            "ingest",
            str(path),
            "--db",
            str(tmp_path / "g.duckdb"),
            "--rate-card",
            str(card),
            "--deployments",
            str(deployments),
            "--deadletter",
            str(tmp_path / "dl"),
        ]
    )
    assert code == 0


def test_missing_file_is_a_clear_error_with_exit_2(tmp_path: Path, capsys):
    """A path that does not exist is reported, not a traceback."""
    assert main(["ingest", str(tmp_path / "nope.jsonl"), "--db", str(tmp_path / "x.duckdb")]) == 2
    assert "no such file" in capsys.readouterr().out


def test_bad_rate_card_is_a_config_error_with_exit_2(tmp_path: Path, capsys):
    """A broken rate card stops the run with its reason code before anything is written."""
    card = tmp_path / "card.csv"
    card.write_text("model,deployment_type\nx,global\n")
    path = write_jsonl(tmp_path / "e.jsonl", [to_body(make_event())])
    assert main(["ingest", str(path), "--db", str(tmp_path / "x.duckdb"), "--rate-card", str(card)]) == 2
    assert "config-invalid" in capsys.readouterr().out


def test_a_multi_line_config_error_keeps_its_newlines_not_a_literal_escape(tmp_path: Path, capsys) -> None:
    """A rate card with several bad lines prints one real line per problem, no literal \\x0a."""
    card = tmp_path / "card.csv"
    card.write_text(
        "model,deployment_type,effective_from,input_per_1m,cached_input_per_1m,output_per_1m,currency\n"
        "gpt-4o,global,2024-01-01,abc,2.50,15.00,USD\n"
        "gpt-4o-mini,global,2024-01-01,abc,0.075,0.60,USD\n",
        encoding="utf-8",
    )
    path = write_jsonl(tmp_path / "e.jsonl", [to_body(make_event())])
    assert main(["ingest", str(path), "--db", str(tmp_path / "x.duckdb"), "--rate-card", str(card)]) == 2
    out = capsys.readouterr().out
    assert "config-invalid" in out
    assert "\\x0a" not in out
    assert len([line for line in out.splitlines() if "abc" in line]) == 2


def test_python_dash_m_runs_the_same_cli():
    """python -m chargeback answers --help with the commands."""
    result = subprocess.run(
        [sys.executable, "-m", "chargeback", "--help"], capture_output=True, text=True, check=True
    )
    assert "ingest" in result.stdout
    assert "demo" in result.stdout


def test_demo_generates_ingests_and_reports_a_month(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """demo: a small month goes end to end and the store holds one row per distinct call."""
    monkeypatch.chdir(tmp_path)
    code = main(
        [
            "demo",
            "--events",
            "400",
            "--month",
            "2026-10",
            "--db",
            str(tmp_path / "demo.duckdb"),
            "--deadletter",
            str(tmp_path / "dl"),
            "--out",
            str(tmp_path / "exports"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "2026-10" in out
    runtime.build_writer.cache_clear()
    with duckdb.connect(str(tmp_path / "demo.duckdb"), read_only=True) as connection:
        found = connection.execute(
            'SELECT count(*), count(DISTINCT RequestId) FROM "AOAIChargeback_CL"'
        ).fetchone()
        sources = dict(
            connection.execute(
                'SELECT UsageSource, max(UsageRevision) FROM "AOAIChargeback_CL" GROUP BY ALL'
            ).fetchall()
        )
    assert found == (400, 400)
    # Streams go through APIM unbuffered: charged from its LLM log as a superseding revision.
    # Images, speech and transcription priced by the units the gateway measured are "recounted".
    assert sources == {"reported": 0, "estimated": 0, "gateway-log": 1, "recounted": 0}
    assert "charged from APIM's LLM log" in out
    lines = (tmp_path / "demo" / "events-2026-10.jsonl").read_bytes().splitlines()
    assert len(lines) > 400  # redeliveries and broken events on top of the 400 calls
    assert json.loads(lines[0])["schemaVersion"] == "1"


def test_demo_ends_with_the_invoice_reconciled_to_the_cent_and_the_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    """demo: its Azure invoice is explained to the cent, each planted gap named, and the report written."""
    from decimal import Decimal

    from chargeback.jobs.sample_invoice import sample_invoice

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "exports"
    args = ["demo", "--events", "600", "--month", "2026-10", "--db", str(tmp_path / "demo.duckdb")]
    assert main([*args, "--deadletter", str(tmp_path / "dl"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = out / "chargeback-2026-10.report.html"
    assert str(report) in printed
    assert "bypassed-apim" in printed
    manifest = json.loads((out / "chargeback-2026-10.reconcile.json").read_text())
    invoice = sample_invoice((out / "chargeback-2026-10.focus.csv").read_bytes(), "2026-10")
    assert invoice.bypass_tokens > 0
    totals = manifest["totals"]["USD"]
    planted = invoice.bypass_cost + invoice.price_gap + invoice.unpriced_cost
    assert Decimal(totals["variance"]) == planted.quantize(Decimal("0.01"))
    assert Decimal(totals["quantityGap"]) == invoice.bypass_cost.quantize(Decimal("0.01"))
    assert Decimal(totals["priceGap"]) == invoice.price_gap.quantize(Decimal("0.01"))
    assert Decimal(totals["unpriced"]) == invoice.unpriced_cost.quantize(Decimal("0.01"))
    assert set(manifest["causes"]) == {"bypassed-apim", "price", "unpriced"}
    html = report.read_text(encoding="utf-8")
    for team in ("Customer Support Bot", "Marketing Content", "Data Science Lab", "Enterprise Search"):
        assert team in html
    assert "bypassed-apim" in html


def test_the_rollup_the_demo_prints_publishes_nothing_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    """demo: the follow-up command it prints (its own deployments map) finds the statement unchanged."""
    import shlex

    monkeypatch.chdir(tmp_path)
    db, out = str(tmp_path / "demo.duckdb"), str(tmp_path / "exports")
    args = ["demo", "--events", "300", "--month", "2026-10", "--db", db, "--out", out]
    assert main([*args, "--deadletter", str(tmp_path / "dl")]) == 0
    printed = capsys.readouterr().out
    command = printed[printed.index("chargeback rollup --month") :].split("\n")[0]
    argv = shlex.split(command)[1:]
    assert "--deployments" in argv
    assert main([*argv, "--db", db, "--out", out]) == 0
    assert "unchanged, already published" in " ".join(capsys.readouterr().out.split())
    assert not list((tmp_path / "exports").glob("*.v2.*"))


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["budgets", "check", "--as-of", "yesterday"], "'yesterday' is not an ISO date or instant"),
        (["demo", "--month", "oct"], "'oct' is not a month: use YYYY-MM"),
        (["demo", "--events", "-5"], "-5 must be greater than 0"),
        (["rollup", "--month", "2026-13"], "'2026-13' is not a month"),
        (["ingest", "x.jsonl", "--batch-size", "0"], "0 must be greater than 0"),
    ],
)
def test_bad_arguments_are_one_line_with_the_fix_and_exit_2(argv: list[str], says: str, capsys) -> None:
    """A bad argument is one stderr line naming it and the help to read, exit 2, no traceback."""
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert says in lines[0]
    assert "--help" in lines[0]
    assert "Traceback" not in captured.err + captured.out


def test_missing_input_file_is_input_missing_not_internal_error(tmp_path: Path, capsys) -> None:
    """A missing ingest file is reason input-missing, exit 2."""
    assert main(["ingest", str(tmp_path / "nope.jsonl"), "--db", str(tmp_path / "x.duckdb")]) == 2
    out = capsys.readouterr().out
    assert "input-missing" in out
    assert "internal-error" not in out


def test_ingest_of_a_directory_is_input_missing_with_exit_2(tmp_path: Path, capsys) -> None:
    """A directory given to ingest is one input-missing line, exit 2, not an internal error."""
    assert main(["ingest", str(tmp_path), "--db", str(tmp_path / "x.duckdb")]) == 2
    out = capsys.readouterr().out
    assert "input-missing" in out
    assert "internal-error" not in out


def test_ingest_of_a_gz_file_that_is_not_gzip_is_a_clear_error_with_exit_2(tmp_path: Path, capsys) -> None:
    """A .gz file that is not gzip is one input line naming the file, exit 2, and nothing is written."""
    fake = tmp_path / "x.jsonl.gz"
    fake.write_bytes(to_body(make_event()) + b"\n")
    db = tmp_path / "x.duckdb"
    assert main(["ingest", str(fake), "--db", str(db)]) == 2
    out = capsys.readouterr().out
    assert "not a gzip file" in out
    assert "input-missing" in out
    assert "internal-error" not in out
    assert not db.exists()


@pytest.mark.parametrize("command", ["ratecard", "deployments"])
def test_import_of_a_missing_file_is_input_missing_with_exit_2(command: str, tmp_path: Path, capsys) -> None:
    """`ratecard import` / `deployments import` of a missing file is input-missing, exit 2."""
    assert main([command, "import", str(tmp_path / "nope.json"), "--out", str(tmp_path / "o.csv")]) == 2
    out = capsys.readouterr().out
    assert "input-missing" in out
    assert "internal-error" not in out


def test_a_closed_pipe_on_stdout_ends_the_command_quietly_with_exit_0(tmp_path: Path, config_files) -> None:
    """`chargeback ingest f | head` whose reader has gone exits 0 with no error and no traceback."""
    card, deployments = config_files
    path = write_jsonl(tmp_path / "e.jsonl", [to_body(make_event())])
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command prints: every write is EPIPE
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "chargeback",
                "ingest",
                str(path),
                "--db",
                str(tmp_path / "x.duckdb"),
                "--rate-card",
                str(card),
                "--deployments",
                str(deployments),
                "--deadletter",
                str(tmp_path / "dl"),
            ],
            stdout=write,
            stderr=subprocess.PIPE,
            check=False,
            timeout=120,
        )
    finally:
        os.close(write)
    assert done.returncode == 0, done.stderr
    assert done.stderr == b""
    with duckdb.connect(str(tmp_path / "x.duckdb")) as connection:
        assert connection.execute('SELECT count(*) FROM "AOAIChargeback_CL"').fetchone() == (1,)


def test_replay_from_a_missing_folder_is_input_missing_with_exit_2(tmp_path: Path, capsys) -> None:
    """`replay --dry-run --from-folder` of a missing folder is input-missing, exit 2, not 0 records."""
    code = main(
        ["replay", "--dry-run", "--from-folder", str(tmp_path / "nope"), "--db", str(tmp_path / "x.duckdb")]
    )
    assert code == 2
    out = capsys.readouterr().out
    assert "input-missing" in out
    assert "0 records" not in out


def test_rollup_never_creates_a_store_and_never_publishes_a_mistyped_db(tmp_path: Path, capsys) -> None:
    """rollup on a --db that does not exist: exit 2, no store file created, nothing published."""
    typo = tmp_path / "chargback.duckdb"
    out = tmp_path / "exports"
    assert main(["rollup", "--month", "2026-10", "--db", str(typo), "--out", str(out)]) == 2
    assert "no store at" in capsys.readouterr().out
    assert not typo.exists()
    assert not out.exists()


def test_rollup_refuses_an_empty_month_and_a_missing_budgets_file_unless_allowed(
    tmp_path: Path, config_files, capsys
) -> None:
    """An empty month exits 3 and a missing budgets file exits 2, publishing nothing; the flags allow both."""
    rate_card, deployments = config_files
    db, out = tmp_path / "s.duckdb", tmp_path / "exports"
    path = write_jsonl(tmp_path / "e.jsonl", [to_body(make_event())])
    assert main(["ingest", str(path), "--db", str(db), "--rate-card", str(rate_card)]) == 0
    capsys.readouterr()
    base = ["rollup", "--db", str(db), "--out", str(out), "--deployments", str(deployments)]
    assert main([*base, "--month", "2001-01"]) == 3
    assert "statement-refused" in capsys.readouterr().out
    assert not out.exists()
    assert main([*base, "--month", "2001-01", "--budgets", str(tmp_path / "nope.csv")]) == 2
    assert "no budgets file" in capsys.readouterr().out
    assert not out.exists()
    allowed = [*base, "--month", "2001-01", "--allow-empty", "--budgets", str(tmp_path / "nope.csv")]
    assert main([*allowed, "--allow-missing-budgets"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "chargeback-2001-01.focus.csv",
        "chargeback-2001-01.manifest.json",
        "chargeback-2001-01.summary.csv",
    ]


def test_top_level_help_is_plain_text_with_exit_codes(capsys) -> None:
    """--help shows no RST markup and lists the exit codes."""
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "``" not in text
    assert "exit codes:" in text
    for code in ("0 ", "1 ", "2 ", "3 "):
        assert f"\n  {code}" in text


def test_statement_table_is_whole_at_80_columns(tmp_path: Path, config_files) -> None:
    """At 80 columns every heading of the statement table is printed whole and no line is wider."""
    from rich.console import Console

    rate_card, deployments = config_files
    db, out = tmp_path / "s.duckdb", tmp_path / "exports"
    events = [to_body(make_event(timestamp="2026-10-05T10:00:00Z")) for _ in range(1)]
    path = write_jsonl(tmp_path / "e.jsonl", events)
    assert main(["ingest", str(path), "--db", str(db), "--rate-card", str(rate_card)]) == 0
    console = Console(width=80, record=True, file=io.StringIO())
    from chargeback import cli

    args = cli.build_parser().parse_args(
        [
            "rollup",
            "--month",
            "2026-10",
            "--db",
            str(db),
            "--out",
            str(out),
            "--deployments",
            str(deployments),
        ]
    )
    assert cli.cmd_rollup(args, console) == 0
    text = console.export_text()
    for heading in ("Subscription", "Cost ctr", "Calls", "Token cost", "PTU", "Charged", "Budget", "Used %"):
        assert heading in text
    assert max(len(line) for line in text.splitlines()) <= 80
