"""What the CLI and the demo print: summaries, statements and alerts, with markup shown, never run."""

from __future__ import annotations

import dataclasses
from collections import Counter
from decimal import Decimal
from pathlib import Path

from rich.console import Console

from chargeback.console import ingest_files, print_alerts, print_statement, print_summary
from chargeback.edges.exportstore import FolderExportStore
from chargeback.jobs.exports import Publication
from chargeback.jobs.ingest import IngestSummary
from chargeback.settings import Settings
from tests.conftest import make_event, to_body


def recorder() -> Console:
    """A rich console that records what it printed, wide enough for one line per row."""
    return Console(record=True, width=200, force_terminal=False)


def test_alerts_are_printed_one_per_line_with_markup_shown_as_text():
    """An alert message with [markup] is printed as written, one line per alert; none says so."""
    console = recorder()
    print_alerts([{"AlertKind": "actual", "Message": "[bold]Team A[/bold] spent 60"}], console)
    print_alerts([], console)
    assert console.export_text().splitlines() == [
        "1 new alert(s) (AOAIChargebackAlerts_CL):",
        "  actual: [bold]Team A[/bold] spent 60",
        "No new budget alerts.",
    ]


def test_the_ingest_summary_shows_outcomes_reasons_and_cost_per_subscription():
    """Outcome counts, dead-letter reasons and the cost table appear in the printed summary."""
    summary = IngestSummary(received=4, written=2, duplicates=1, dead_lettered=1)
    summary.reasons = Counter({"invalid-json": 1})
    summary.cost_by_subscription[("team-a", "Team A", "USD")] = Decimal("1.5")
    summary.requests_by_subscription[("team-a", "Team A", "USD")] = 2
    console = recorder()
    print_summary(summary, console)
    text = console.export_text()
    for expected in ("received", "dead-lettered", "invalid-json", "team-a", "1.5000", "USD"):
        assert expected in text


def test_the_statement_is_read_back_from_the_export_store(tmp_path: Path):
    """print_statement shows the published summary CSV's rows and where the three files are."""
    settings = dataclasses.replace(Settings.from_env({}), exports_path=str(tmp_path))
    FolderExportStore(tmp_path).create(
        "chargeback-2026-10.summary.csv",
        b"SubscriptionId,CostCenter,Requests,TotalCost,AllocatedCost,Budget,BudgetUsedPct\n"
        b"team-a,CC-1,12,3.50,0.00,10.00,35.00\n"
        b"(unallocated),,0,0.00,3900.00,,\n"
        b"customer-support-bot,CC-1001,12345,1234.56,789.01,20000.00,138.10\n",
    )
    publication = Publication("2026-10", 1, "f.csv", "s.csv", "m.json", True)
    console = Console(record=True, width=80, force_terminal=False)  # a plain 80-column terminal
    print_statement(settings, publication, console)
    text = console.export_text()
    assert "Chargeback 2026-10 (version 1)" in text
    assert "team-a" in text
    assert "Used %" in text
    assert "35.00" in text
    assert "138.10" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "FOCUS CSV:   f.csv (published)" in text


def test_ingest_files_runs_the_pipeline_over_jsonl_files(tmp_path: Path, config_files):
    """Every line of the files is counted once: written or dead-lettered, through the wiring's edges."""
    from chargeback import wiring

    card, deployments = config_files
    path = tmp_path / "events.jsonl"
    path.write_bytes(to_body(make_event()) + b"\n" + b"{broken\n")
    settings = dataclasses.replace(
        Settings.from_env({}),
        chargeback_duckdb_path=str(tmp_path / "c.duckdb"),
        deadletter_path=str(tmp_path / "dl"),
        rate_card_path=str(card),
        deployments_path=str(deployments),
    )
    wiring.build_writer.cache_clear()
    try:
        summary = ingest_files([path], settings, batch_size=10, progress=False)
    finally:
        wiring.build_writer.cache_clear()
    assert (summary.received, summary.written, summary.dead_lettered) == (2, 1, 1)
