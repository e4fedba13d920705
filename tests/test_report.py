"""The HTML report: its numbers equal the statement CSVs, it is self-contained, deterministic and lazy."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chargeback.cli import main
from chargeback.core.pricing import DeploymentMap
from chargeback.edges.exportstore import FolderExportStore
from chargeback.edges.kqlrun import LocalKqlRunner
from chargeback.jobs.budgets import load_budgets
from chargeback.jobs.report import build_view, run_report, usage_source_costs
from chargeback.jobs.rollup import run_rollup
from tests import reportcheck
from tests.test_statement import statement

CLOSED = datetime(2026, 11, 2, tzinfo=UTC)


def write_report(store: Any, out: Path, now: datetime = CLOSED) -> Any:
    """Publish October's statement and its report into ``out``."""
    return run_report(
        LocalKqlRunner(store.connection),
        FolderExportStore(out),
        "2026-10",
        budgets=load_budgets(store.config["budgets"]),
        ptu_deployments=DeploymentMap.load(store.config["deployments"]).ptu_deployments(),
        output_weight=Decimal(4),
        now=now,
    )


def test_every_checked_number_equals_the_statement_csvs(october_store: Any, tmp_path: Path):
    """Month total, each team's figures, cost centers, models and types match the CSVs to the cent."""
    run = write_report(october_store, tmp_path)
    html = Path(run.location).read_text(encoding="utf-8")
    shown = reportcheck.parse(html).values
    expected = reportcheck.expected_values(
        (tmp_path / "chargeback-2026-10.summary.csv").read_bytes(),
        (tmp_path / "chargeback-2026-10.focus.csv").read_bytes(),
    )
    assert set(expected) <= set(shown), sorted(set(expected) - set(shown))
    for key, value in expected.items():
        assert reportcheck.number(shown[key]) == value, key
    for team in ("team-a", "team-b", "team-c"):
        assert f'data-team="{team}"' in html


def test_the_page_fetches_nothing_and_says_so_to_the_browser(october_store: Any, tmp_path: Path):
    """No script, link, image or URL to fetch; a CSP of default-src 'none' stops anything else."""
    html = Path(write_report(october_store, tmp_path).location).read_text(encoding="utf-8")
    checks = reportcheck.parse(html)
    assert checks.fetching == []
    assert "default-src 'none'" in checks.csp
    assert reportcheck.external_urls(html) == []
    assert "@import" not in html
    assert "url(" not in html.replace("url(#", "")
    assert html.count("<svg") >= 5  # teams, models, daily, burn, quality (history from two months on)


def test_same_data_renders_the_same_bytes_and_is_not_rewritten(october_store: Any, tmp_path: Path):
    """Rendering twice gives identical bytes (no timestamps, stable SVG ids): the file stays as is."""
    first = write_report(october_store, tmp_path)
    before = Path(first.location).read_bytes()
    second = write_report(october_store, tmp_path)
    assert Path(second.location).read_bytes() == before
    assert second.name == "chargeback-2026-10.report.html"


def test_daily_trend_and_usage_sources_add_up_to_the_statement(october_store: Any):
    """The days sum to the per-token cost, and the usage sources to the FOCUS usage rows."""
    rollup = run_rollup(LocalKqlRunner(october_store.connection), "2026-10")
    sources = usage_source_costs(rollup)
    focus = list(csv.DictReader(io.StringIO(statement(october_store).focus.decode("utf-8"))))
    usage = sum((Decimal(r["BilledCost"]) for r in focus if r["x_Meter"] != "ptu-allocation"), Decimal(0))
    assert abs(sum((b["cost"] for b in sources.values()), Decimal(0)) - usage) < Decimal("0.0001")
    assert {key.split("|")[1] for key in sources} >= {"reported"}
    start, end = datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC)
    days = LocalKqlRunner(october_store.connection).records(
        "daily_cost", {"MonthStart": start, "MonthEnd": end}, window=(start, end)
    )
    assert abs(sum(Decimal(repr(d["Spend"])) for d in days) - usage) < Decimal("0.01")


def test_an_open_month_forecasts_by_run_rate(october_store: Any):
    """Mid-month, the forecast extrapolates the spend; once closed it equals the charge."""
    data = _data(october_store, datetime(2026, 10, 16, tzinfo=UTC))
    view = build_view(data)
    team = next(t for t in view["teams"] if t["budget"])
    assert not view["closed"]
    assert Decimal(team["forecast"].replace(",", "")) > Decimal(team["charged"])
    closed = build_view(_data(october_store, CLOSED))
    team = next(t for t in closed["teams"] if t["budget"])
    assert Decimal(team["forecast"].replace(",", "")) == Decimal(team["charged"])


def _data(store: Any, as_of: datetime) -> Any:
    from chargeback.jobs.report import ReportData

    built = statement(store)
    return ReportData(
        month="2026-10",
        version=1,
        focus=built.focus,
        summary=built.summary,
        rate_card_versions=built.rate_card_versions,
        files={"focus.csv": "f", "summary.csv": "s", "manifest.json": "m"},
        as_of=as_of,
    )


def test_previous_months_come_from_their_published_summaries(october_store: Any, tmp_path: Path):
    """A September statement published before shows in October's month-against-months table."""
    from tests import monthdata

    september = monthdata.month_events(datetime(2026, 9, 1, tzinfo=UTC), count=20, prefix="s")
    monthdata.ingest(october_store, october_store.config, september, tmp_path / "dl2")
    runner = LocalKqlRunner(october_store.connection)
    store = FolderExportStore(tmp_path / "out")
    kwargs: dict[str, Any] = {
        "budgets": load_budgets(october_store.config["budgets"]),
        "ptu_deployments": [],
        "output_weight": Decimal(4),
        "now": CLOSED,
    }
    run_report(runner, store, "2026-09", **kwargs)
    run = run_report(runner, store, "2026-10", **kwargs)
    html = Path(run.location).read_text(encoding="utf-8")
    september_total = sum(
        Decimal(r["ChargedCost"])
        for r in csv.DictReader(
            io.StringIO((tmp_path / "out" / "chargeback-2026-09.summary.csv").read_text())
        )
    )
    history = html[html.index('id="history"') : html.index('id="budgets"')]
    assert "2026-09" in history
    assert f"{september_total:,.2f}" in history


def test_a_reconciliation_that_ran_is_in_the_report(october_store: Any, tmp_path: Path):
    """After `reconcile`, the report shows the invoice total, the variance, coverage and causes."""
    from chargeback.jobs.reconcile import reconcile_files
    from tests import costexports
    from tests.test_reconcile import invoice_rows

    out = tmp_path / "out"
    write_report(october_store, out)
    focus = (out / "chargeback-2026-10.focus.csv").read_bytes()
    rows, _ = invoice_rows(focus)
    export = costexports.write_csv(tmp_path / "export.csv", rows)
    run = reconcile_files(
        "2026-10",
        [export],
        focus_csv=focus,
        statement="chargeback-2026-10.manifest.json",
        store=FolderExportStore(out),
        version=1,
    )
    html = Path(write_report(october_store, out).location).read_text(encoding="utf-8")
    shown = reportcheck.parse(html).values
    totals = run.summary["totals"]["USD"]
    assert reportcheck.number(shown["reconcile|billedCost|USD"]) == Decimal(totals["billedCost"])
    assert reportcheck.number(shown["reconcile|variance|USD"]) == Decimal(totals["variance"])
    assert reportcheck.number(shown["reconcile|coveragePct|USD"]) == Decimal(totals["coveragePct"])
    assert "bypassed-apim" in html


def test_cli_report_writes_the_file_beside_the_csvs(october_store: Any, tmp_path: Path, capsys):
    """`chargeback report --month` prints where the report is; exit 0; a bad month is exit 2."""
    config = october_store.config
    october_store.close()
    args = ["--db", str(tmp_path / "store.duckdb"), "--out", str(tmp_path / "exports")]
    args += ["--deployments", str(config["deployments"]), "--budgets", str(config["budgets"])]
    assert main(["report", "--month", "2026-10", *args]) == 0
    assert "chargeback-2026-10.report.html" in capsys.readouterr().out
    assert (tmp_path / "exports" / "chargeback-2026-10.report.html").exists()
    assert main(["report", "--month", "2026-13", *args]) == 2


def test_matplotlib_and_jinja2_are_imported_only_to_render():
    """Importing the CLI, the report job and the Function app does not load matplotlib or jinja2."""
    code = (
        "import sys, chargeback.cli, chargeback.jobs.report, chargeback.jobs.reconcile;"
        "print(sorted(m for m in ('matplotlib', 'jinja2', 'pyarrow') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("month", ["2026-10"])
def test_view_totals_are_the_summary_sums(october_store: Any, month: str):
    """The month total is the sum of the summary's ChargedCost (no other arithmetic)."""
    view = build_view(_data(october_store, CLOSED))
    summary = statement(october_store).summary
    charged = sum(Decimal(r["ChargedCost"]) for r in csv.DictReader(io.StringIO(summary.decode("utf-8"))))
    assert view["totals"]["USD"]["ChargedCost"] == f"{charged:,.2f}"
