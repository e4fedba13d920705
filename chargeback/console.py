"""What the command line and the demo print, and the terminal's ingest loop; shared by both.

``cli`` and ``demo`` are entry points side by side: neither imports the other, both import this.
Rendering uses ``rich`` (imported lazily); the work itself is the jobs', built by ``wiring``.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from chargeback.core.textsafe import printable
from chargeback.edges.jsonl import read_messages
from chargeback.jobs.ingest import IngestSummary, ingest_batch
from chargeback.settings import Settings
from chargeback.wiring import build_deadletter, build_export_store, build_pricer, build_writer


def ingest_files(
    paths: Sequence[Path], settings: Settings, *, batch_size: int, progress: bool
) -> IngestSummary:
    """Ingest JSONL files with the same pipeline as the Function, showing progress on a terminal."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

    pricer, writer, deadletter = build_pricer(settings), build_writer(settings), build_deadletter(settings)
    total = IngestSummary()
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=not progress, transient=True) as bar:
        for path in paths:
            size = path.stat().st_size if str(path) != "-" and path.suffix != ".gz" else None
            task = bar.add_task(f"ingest {path.name}", total=size)
            for batch, consumed in read_messages(path, batch_size):
                total.add(ingest_batch(batch, pricer=pricer, writer=writer, deadletter=deadletter))
                bar.advance(task, consumed)
    return total


def safe(value: Any) -> str:
    """A value for a rich table or line: controls made visible, markup (``[/bold]``) shown, not run."""
    from rich.markup import escape

    return escape(printable(value))


def _money(value: Decimal) -> str:
    return f"{value:,.4f}"


def print_summary(summary: IngestSummary, console: Any) -> None:
    """Readable tables: outcomes, reasons, usage sources, pricing statuses, cost per subscription."""
    from rich.table import Table

    outcomes = Table(title="Outcome", title_justify="left")
    outcomes.add_column("outcome")
    outcomes.add_column("events", justify="right")
    for label, count in (
        ("received", summary.received),
        ("written", summary.written),
        ("duplicate (already charged)", summary.duplicates),
        ("dead-lettered", summary.dead_lettered),
        *((("earlier rows replaced (conflict)", summary.displaced),) if summary.displaced else ()),
    ):
        outcomes.add_row(label, f"{count:,}")
    console.print(outcomes)
    for title, counter in (
        ("Dead-letter reasons", summary.reasons),
        ("Usage source (rows written)", summary.usage_sources),
        ("Pricing status (rows written)", summary.pricing_statuses),
    ):
        if not counter:
            continue
        table = Table(title=title, title_justify="left")
        table.add_column("value")
        table.add_column("events", justify="right")
        for key, count in counter.most_common():
            table.add_row(safe(key), f"{count:,}")
        console.print(table)
    if summary.cost_by_subscription:
        costs = Table(title="Cost per subscription (rows written this run)", title_justify="left")
        for name, justify in (
            ("subscription", "left"),
            ("name", "left"),
            ("requests", "right"),
            ("cost", "right"),
        ):
            costs.add_column(name, justify=justify)  # type: ignore[arg-type]
        costs.add_column("currency")
        ranked = sorted(summary.cost_by_subscription.items(), key=lambda item: item[1], reverse=True)
        for (sub_id, sub_name, currency), cost in ranked:
            requests = summary.requests_by_subscription[(sub_id, sub_name, currency)]
            costs.add_row(safe(sub_id), safe(sub_name), f"{requests:,}", _money(cost), safe(currency))
        console.print(costs)


def print_statement(settings: Settings, publication: Any, console: Any) -> None:
    """The month's finance summary (from the published CSV) and where both CSVs are."""
    import csv
    import io

    from rich.table import Table

    from chargeback.jobs.statement import file_name

    data = build_export_store(settings).read(file_name(publication.month, publication.version, "summary.csv"))
    rows = list(csv.DictReader(io.StringIO((data or b"").decode("utf-8"))))
    from rich import box

    table = Table(
        title=f"Chargeback {publication.month} (version {publication.version})",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    # Short headings so the table stays whole at 80 columns; the CSV keeps the full column names.
    columns = (
        ("SubscriptionId", "Subscription"),
        ("CostCenter", "Cost ctr"),
        ("Requests", "Calls"),
        ("TotalCost", "Token cost"),
        ("AllocatedCost", "PTU"),
        ("ChargedCost", "Charged"),
        ("Budget", "Budget"),
        ("BudgetUsedPct", "Used %"),
    )
    for name, heading in columns:
        left = name in ("SubscriptionId", "CostCenter")
        table.add_column(
            heading,
            justify="left" if left else "right",
            overflow="fold",
            no_wrap=not left,
            min_width=13 if name == "SubscriptionId" else len(heading),
        )
    for row in rows:
        table.add_row(*(safe(row.get(name, "")) for name, _ in columns))
    console.print(table)
    print_stream_estimates(settings, publication.month, console)
    state = "published" if publication.created else "unchanged, already published"
    console.print(f"FOCUS CSV:   {safe(publication.focus)} ({state})")
    console.print(f"Summary CSV: {safe(publication.summary)}")
    console.print(f"Manifest:    {safe(publication.manifest)}")


def print_stream_estimates(settings: Settings, month: str, console: Any) -> None:
    """How much of the month's cost rests on streams whose APIM LLM log never arrived."""
    from chargeback.wiring import stream_estimates

    rows = stream_estimates(settings, month)
    if not rows:
        console.print(
            "Streams: no cost rests on an estimate "
            "(unbuffered streams, if any, were charged from APIM's LLM log)."
        )
        return
    console.print(
        "Streams still on their estimate (APIM's LLM log never arrived: prompt charged, completion unknown):"
    )
    for row in rows:
        cost = Decimal(str(row["TotalCost"] or 0)).quantize(Decimal("0.0001"))
        console.print(
            f"  {printable(str(row['SubscriptionId']))}: {row['Requests']} call(s), "
            f"{cost} {printable(str(row['Currency'] or ''))} rests on estimates",
            markup=False,
        )


def print_alerts(rows: Sequence[Any], console: Any) -> None:
    """The alerts a budget check raised."""
    if not rows:
        console.print("No new budget alerts.")
        return
    console.print(f"[bold]{len(rows)} new alert(s)[/bold] (AOAIChargebackAlerts_CL):")
    for row in rows:
        console.print(f"  {printable(row['AlertKind'])}: {printable(row['Message'])}", markup=False)


def _cents(value: Decimal) -> str:
    """Money to the cent, never "-0.00"."""
    rounded = value.quantize(Decimal("0.01"))
    return f"{rounded if rounded else abs(rounded):,.2f}"


def print_reconciliation(run: Any, console: Any) -> None:
    """The reconciliation by meter, its totals and coverage, and where its files are."""
    from rich.table import Table

    table = Table(
        title=f"Reconciliation {run.result.month}: Azure cost export vs chargeback", title_justify="left"
    )
    for name in ("model", "type", "meter", "billed", "ours", "variance", "token gap", "cause"):
        table.add_column(name, justify="left" if name in ("model", "type", "meter", "cause") else "right")
    for line in run.result.lines:
        table.add_row(
            safe(line.model),
            safe(line.deployment_type),
            safe(line.meter),
            _cents(line.billed_cost),
            _cents(line.our_cost),
            _cents(line.variance),
            f"{line.token_gap:,.0f}",
            ", ".join(line.causes),
        )
    console.print(table)
    for currency, t in sorted(run.summary["totals"].items()):
        console.print(
            f"{safe(currency)}: invoice {t['billedCost']}, chargeback {t['ourCost']}, variance "
            f"{t['variance']} = quantity {t['quantityGap']} + price {t['priceGap']} + discount "
            f"{t['discount']} + unpriced {t['unpriced']}; coverage {t['coveragePct']} %",
            soft_wrap=True,
        )
    for cause, amount in run.summary["causes"].items():
        console.print(f"  {cause}: {amount}")
    console.print(f"Reconciliation CSV: {run.csv}", soft_wrap=True)
    console.print(f"Reconciliation manifest: {run.manifest}", soft_wrap=True)
