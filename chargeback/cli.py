"""Command line: ``chargeback ingest``, ``chargeback demo`` (and ``python -m chargeback``).

Only argument handling lives here: ``chargeback.wiring`` turns settings into the jobs' edges,
``chargeback.console`` prints, the jobs do the work (``chargeback.demo`` is a sibling entry point,
never imported the other way). Errors of the library become a one-line message and exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chargeback import __version__, wiring
from chargeback.console import (
    ingest_files,
    print_alerts,
    print_reconciliation,
    print_statement,
    print_summary,
    safe,
)
from chargeback.edges.jsonl import DEFAULT_BATCH
from chargeback.errors import ChargebackError, ConfigError, InputMissing, Reason
from chargeback.settings import Settings

DESCRIPTION = """Chargeback for a shared Azure OpenAI service: ingest usage events, publish
monthly FOCUS and finance statements, check budgets."""
EPILOG = """exit codes:
  0  the run worked (rejected events are dead-lettered, not errors)
  1  a fault the command did not foresee (run with -v for the traceback)
  2  a bad argument, setting or configuration file, or a missing file or store
  3  a statement refused: a month with no usage (use --allow-empty) or totals that do not agree

chargeback COMMAND --help shows each command's options."""

EXIT_OK, EXIT_FAULT, EXIT_USAGE, EXIT_REFUSED = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: what is wrong and where the help is (exit 2), no usage dump."""

    def error(self, message: str) -> Any:  # argparse's signature is NoReturn
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(EXIT_USAGE)


def month_arg(text: str) -> str:
    """``--month``: YYYY-MM."""
    from chargeback.jobs.rollup import month_window

    try:
        month_window(text)
    except ChargebackError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a month: use YYYY-MM, e.g. 2026-10") from None
    return text.strip()


def instant_arg(text: str) -> Any:
    """``--as-of``: an ISO 8601 date or instant (UTC when no offset is given)."""
    from datetime import UTC, datetime

    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date or instant: use e.g. 2026-10-31 or 2026-10-31T23:00:00Z"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def positive_int(text: str) -> int:
    """A whole number greater than 0 (``--events``, ``--batch-size``)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} must be greater than 0")
    return value


def _require_inputs(settings: Settings, *, budgets: bool = True) -> None:
    """Refuse to run on a store or budgets file that does not exist (never create one in its place).

    A mistyped ``--db`` would otherwise open a new, empty store and publish an all-zero statement
    that supersedes the real one; a missing budgets file would publish blank cost centers.
    """
    queries_store = settings.chargeback_sink == "duckdb" and not settings.log_analytics_workspace_id
    if queries_store and not Path(settings.chargeback_duckdb_path).is_file():
        raise InputMissing(
            f"no store at {settings.chargeback_duckdb_path}: check --db (or CHARGEBACK_DUCKDB_PATH); "
            "this command never creates a store"
        )
    if budgets and not settings.budgets.is_file():
        raise InputMissing(
            f"no budgets file at {settings.budgets}: check --budgets (or BUDGETS_PATH), "
            "or pass --allow-missing-budgets to publish without cost centers and budgets"
        )
    if settings.deployments_path and not settings.deployments.is_file():
        raise InputMissing(f"no deployments map at {settings.deployments}: check --deployments")


def _settings(args: argparse.Namespace) -> Settings:
    settings = Settings.from_env(os.environ)
    overrides = {
        "chargeback_duckdb_path": getattr(args, "db", None),
        "rate_card_path": getattr(args, "rate_card", None),
        "deployments_path": getattr(args, "deployments", None),
        "deadletter_path": getattr(args, "deadletter", None),
        "exports_path": getattr(args, "out", None),
        "budgets_path": getattr(args, "budgets", None),
    }
    chosen: dict[str, Any] = {key: str(value) for key, value in overrides.items() if value}
    return dataclasses.replace(settings, **chosen)


def cmd_ingest(args: argparse.Namespace, console: Any) -> int:
    settings = _settings(args)
    paths = [Path(p) for p in args.paths]
    missing = [str(p) for p in paths if str(p) != "-" and not p.is_file()]
    if missing:
        raise InputMissing(f"no such file (or not a file): {', '.join(missing)}: pass JSONL files or -")
    not_gzip = [str(p) for p in paths if p.suffix == ".gz" and not _is_gzip(p)]
    if not_gzip:  # checked before anything is written: a half-ingested file is worse than none
        raise InputMissing(
            f"not a gzip file: {', '.join(not_gzip)}: gunzip it or drop the .gz suffix for plain JSONL"
        )
    summary = ingest_files(paths, settings, batch_size=args.batch_size, progress=console.is_terminal)
    print_summary(summary, console)
    console.print(
        f"store: {safe(settings.chargeback_duckdb_path)}   dead-letters: {safe(settings.deadletter_path)}"
    )
    return 0


def _is_gzip(path: Path) -> bool:
    """Whether a file starts with the gzip magic number."""
    try:
        with path.open("rb") as handle:
            return handle.read(2) == b"\x1f\x8b"
    except OSError:
        return False


def cmd_demo(args: argparse.Namespace, console: Any) -> int:
    from chargeback import demo

    settings = _settings(args)
    return demo.run(settings, console, month=args.month, events=args.events, seed=args.seed)


def cmd_replay(args: argparse.Namespace, console: Any) -> int:
    """Replay dead-letters (the library's ``chargeback.jobs.replay``); prints what was replayed."""
    from chargeback.jobs import replay

    settings = _settings(args)
    if args.from_container:
        settings = dataclasses.replace(settings, deadletter_container=args.from_container)
    elif args.from_folder:
        if not args.from_folder.is_dir():
            raise InputMissing(f"no such dead-letter folder: {args.from_folder}: check the path")
        settings = dataclasses.replace(
            settings, deadletter_container="", deadletter_path=str(args.from_folder)
        )
    source = wiring.build_replay_source(settings)
    reasons = replay.parse_reasons(args.reason)
    if args.to == "eventhub":
        producer = wiring.build_event_hub_producer(settings)
        with producer:
            report = replay.replay_to_event_hub(source, producer, reasons=reasons, dry_run=args.dry_run)
    else:
        report = replay.replay_to_pipeline(
            source,
            pricer=wiring.build_pricer(settings),
            writer=wiring.build_writer(settings),
            reasons=reasons,
            dry_run=args.dry_run,
        )
    where = settings.deadletter_container or settings.deadletter_path
    console.print(
        f"dead-letters in {where}: {report.records_seen:,} records, {report.already_replayed:,} already "
        f"replayed, {report.other_reasons:,} with other reasons, {report.pending:,} to replay"
    )
    for reason, count in report.pending_reasons.most_common():
        console.print(f"  {reason}: {count:,}")
    if report.dry_run:
        console.print("dry run: nothing sent")
        return 0
    console.print(
        f"replayed to {report.target}: {report.replayed:,}; still failing: {report.still_failing:,}"
    )
    for reason, count in report.new_reasons.most_common():
        console.print(f"  now {reason}: {count:,}")
    if report.target == "pipeline" and report.ingest.received:
        print_summary(report.ingest, console)
    return 0


def cmd_rollup(args: argparse.Namespace, console: Any) -> int:
    """Monthly statement: KQL rollup, FOCUS + summary CSVs (a new version only if the data changed)."""
    settings = _settings(args)
    _require_inputs(settings, budgets=not args.allow_missing_budgets)
    publication = wiring.monthly_statement(settings, args.month, allow_empty=args.allow_empty)
    print_statement(settings, publication, console)
    return 0


def cmd_budgets_check(args: argparse.Namespace, console: Any) -> int:
    """Budget check of a month (default: this one) as of now or --as-of; raises new alerts."""
    from datetime import UTC, datetime

    from chargeback.jobs.rollup import month_of

    settings = _settings(args)
    _require_inputs(settings)
    now = args.as_of or datetime.now(UTC)
    month = args.month or month_of(now)
    if args.dry_run:
        return budgets_dry_run(settings, month, now, console)
    check, raised = wiring.budget_check(settings, month, now)
    print_spends(check, console)
    print_alerts(raised, console)
    if settings.enforcement_on and month == month_of(now):
        run = wiring.enforce_budgets(settings, check, now)
        for line in run.lines() or ["Budget enforcement: nothing to apply or lift."]:
            console.print(line, markup=False)
    return 0


def print_spends(check: Any, console: Any) -> None:
    """One line per subscription: month-to-date spend, forecast and budget use."""
    for spend in check.spends:
        used = f"{spend.used_pct:.1f} %" if spend.used_pct is not None else "no budget"
        console.print(
            f"{spend.subscription_id}: spent {spend.spend:.2f} {spend.currency}, "
            f"forecast {spend.forecast:.2f} ({used})"
        )


def budgets_dry_run(settings: Settings, month: str, now: Any, console: Any) -> int:
    """``budgets check --dry-run``: the alerts and budget actions a check would raise; writes nothing."""
    check, alerts, run = wiring.budget_dry_run(settings, month, now)
    print_spends(check, console)
    console.print(f"Dry run: {len(alerts)} alert(s) would be raised; nothing is written.")
    for candidate in alerts:
        console.print(f"  would alert {candidate.kind}: {candidate.message}", markup=False)
    if run is None:
        console.print("Budget actions apply to the current month only.")
        return 0
    state = "on" if settings.enforcement_on else "off (BUDGET_ENFORCEMENT=off: shown as if it were on)"
    console.print(f"Budget enforcement is {state}: {len(run.steps)} action(s) would be applied or lifted.")
    for line in run.lines():
        console.print(f"  {line}", markup=False)
    return 0


def cmd_reconcile(args: argparse.Namespace, console: Any) -> int:
    """Statement vs the Azure Cost Management export (FOCUS) of the same month, by meter."""
    settings = _settings(args)
    _require_inputs(settings)
    print_reconciliation(wiring.monthly_reconciliation(settings, args.month, args.cost_export), console)
    return 0


def cmd_report(args: argparse.Namespace, console: Any) -> int:
    """The month's statement as one self-contained HTML file beside the CSVs."""
    settings = _settings(args)
    _require_inputs(settings)
    run = wiring.monthly_report(settings, args.month)
    console.print(f"Report (statement version {run.version}): {run.location}", soft_wrap=True)
    return 0


def cmd_ratecard_import(args: argparse.Namespace, console: Any) -> int:
    """A saved Azure Retail Prices API response (one or more pages) to a v2 rate card."""
    from collections import Counter
    from datetime import UTC, datetime

    from chargeback.core.azure_import import import_retail_prices, load_items, rate_card_csv
    from chargeback.core.pricing import RateCard

    texts = [(str(path), _read_text(path)) for path in args.files]
    items, more = load_items(texts)
    result = import_retail_prices(items, region=args.region or "")
    if not result.rows:
        raise ChargebackError(
            f"no Azure OpenAI prices in {', '.join(map(str, args.files))}: "
            "save a response filtered on serviceName 'Foundry Models' (or 'Cognitive Services')"
        )
    version = args.version or f"retail-{datetime.now(UTC):%Y-%m-%d}"
    text = rate_card_csv(result, ", ".join(path.name for path in args.files), version)
    RateCard.parse(text.encode("utf-8"), source=str(args.out))  # what it writes, it can read
    args.out.write_text(text, encoding="utf-8")
    console.print(f"{len(result.rows)} prices from {len(items)} items written to {safe(str(args.out))}")
    if result.skipped:
        console.print(f"{len(result.skipped)} items not mapped:")
        for reason, count in Counter(reason for _, reason in result.skipped).most_common():
            names = sorted({safe(name) for name, why in result.skipped if why == reason})
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            console.print(f"  {count} x {safe(reason)}: {shown}", soft_wrap=True)
    if more:
        console.print("the last page names a NextPageLink: save the next pages and pass them too")
    return 0


def cmd_ratecard_check(args: argparse.Namespace, console: Any) -> int:
    """Models and meters in the usage table without a price; exit 1 when there are any."""
    from datetime import UTC, datetime

    from chargeback.jobs.ratecard import missing_prices

    settings = _settings(args)
    missing = missing_prices(wiring.build_runner(settings), wiring.build_pricer(settings), datetime.now(UTC))
    if not missing:
        console.print("every model and meter in the usage table has a price")
        return 0
    for entry in missing:
        name = f"{entry.model}-{entry.model_version}" if entry.model_version else entry.model
        console.print(
            f"{safe(name)} {safe(entry.deployment_type)}: no price for {', '.join(entry.meters)} "
            f"({entry.calls} calls, {entry.unpriced_calls} unpriced)",
            soft_wrap=True,
        )
    return 1


def cmd_deployments_import(args: argparse.Namespace, console: Any) -> int:
    """The JSON of `az cognitiveservices account deployment list` to a deployments map CSV."""
    from chargeback.core.azure_import import deployments_csv, import_deployments

    rows, skipped = import_deployments(_read_text(args.file), str(args.file))
    args.out.write_text(deployments_csv(rows, args.file.name), encoding="utf-8")
    console.print(f"{len(rows)} deployments written to {safe(str(args.out))}")
    for name, reason in skipped:
        console.print(f"  not mapped: {safe(name)}: {safe(reason)}", soft_wrap=True)
    ptu = [row.deployment for row in rows if row.deployment_type == "ptu"]
    if ptu:
        console.print(f"fill ptu_monthly_cost for the provisioned deployments: {safe(', '.join(ptu))}")
    return 0


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise InputMissing(f"no such file (or not a file): {path}: check the path")
    try:
        return path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputMissing(f"cannot read {path}: {exc.strerror}: check the path and permissions") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text ({exc.reason}): save it as UTF-8") from None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; every command and option is documented in the README."""
    parser = _Parser(
        prog="chargeback",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every batch (default: errors only)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def storage_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--db", type=Path, help="DuckDB store file (CHARGEBACK_DUCKDB_PATH)")
        sub.add_argument("--rate-card", type=Path, help="rate card CSV (RATE_CARD_PATH)")
        sub.add_argument("--deployments", type=Path, help="deployments map CSV (DEPLOYMENTS_PATH)")
        sub.add_argument("--deadletter", type=Path, help="dead-letter folder (DEADLETTER_PATH)")

    ingest = commands.add_parser("ingest", help="ingest JSONL files of Event Hub message bodies")
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="JSONL file, .jsonl.gz, or - for stdin")
    storage_options(ingest)
    ingest.add_argument(
        "--batch-size", type=positive_int, default=DEFAULT_BATCH, help="events per batch (memory bound)"
    )
    ingest.set_defaults(handler=cmd_ingest)

    demo = commands.add_parser("demo", help="generate a realistic month, ingest it and report it")
    storage_options(demo)
    demo.add_argument("--out", type=Path, help="exports folder (EXPORTS_PATH)")
    demo.add_argument("--month", type=month_arg, help="month to simulate, YYYY-MM (default: last month)")
    demo.add_argument("--events", type=positive_int, default=6000, help="number of calls to simulate")
    demo.add_argument("--seed", type=int, default=7, help="random seed (same seed, same month)")
    demo.set_defaults(handler=cmd_demo)

    replay = commands.add_parser("replay", help="take dead-lettered events back through the pipeline")
    source = replay.add_mutually_exclusive_group()
    source.add_argument(
        "--from-folder", type=Path, metavar="DIR", help="dead-letter folder (DEADLETTER_PATH)"
    )
    source.add_argument(
        "--from-container", metavar="NAME", help="dead-letter Blob container (DEADLETTER_CONTAINER)"
    )
    replay.add_argument(
        "--to",
        choices=("pipeline", "eventhub"),
        default="pipeline",
        help="pipeline: ingest here with the configured writer; eventhub: re-send to EVENTHUB_NAME",
    )
    replay.add_argument(
        "--reason",
        nargs="+",
        metavar="CODE",
        help="reasons to replay (default: the replayable ones: sink-unavailable, write-failed, ...; or all)",
    )
    replay.add_argument("--dry-run", action="store_true", help="count what would be replayed, send nothing")
    replay.add_argument("--db", type=Path, help="DuckDB store file (CHARGEBACK_DUCKDB_PATH)")
    replay.add_argument("--rate-card", type=Path, help="rate card CSV (RATE_CARD_PATH)")
    replay.add_argument("--deployments", type=Path, help="deployments map CSV (DEPLOYMENTS_PATH)")
    replay.set_defaults(handler=cmd_replay)

    rollup = commands.add_parser("rollup", help="monthly FOCUS and finance CSV exports of a month")
    rollup.add_argument("--month", type=month_arg, required=True, help="month to roll up, YYYY-MM")
    rollup.add_argument("--db", type=Path, help="DuckDB store file (CHARGEBACK_DUCKDB_PATH)")
    rollup.add_argument("--out", type=Path, help="exports folder (EXPORTS_PATH)")
    rollup.add_argument(
        "--deployments", type=Path, help="deployments map CSV with PTU costs (DEPLOYMENTS_PATH)"
    )
    rollup.add_argument("--budgets", type=Path, help="budgets CSV (BUDGETS_PATH)")
    rollup.add_argument(
        "--allow-empty", action="store_true", help="publish a month without usage (refused by default)"
    )
    rollup.add_argument(
        "--allow-missing-budgets",
        action="store_true",
        help="publish without a budgets file (no cost centers, no budgets; refused by default)",
    )
    rollup.set_defaults(handler=cmd_rollup)

    report = commands.add_parser("report", help="the month's statement as one self-contained HTML file")
    report.add_argument("--month", type=month_arg, required=True, help="month to report, YYYY-MM")
    report.add_argument("--db", type=Path, help="DuckDB store file (CHARGEBACK_DUCKDB_PATH)")
    report.add_argument("--out", type=Path, help="exports folder (EXPORTS_PATH)")
    report.add_argument("--deployments", type=Path, help="deployments map CSV (DEPLOYMENTS_PATH)")
    report.add_argument("--budgets", type=Path, help="budgets CSV (BUDGETS_PATH)")
    report.set_defaults(handler=cmd_report)

    reconcile = commands.add_parser(
        "reconcile", help="compare a month's statement with the Azure cost export (FOCUS) by meter"
    )
    reconcile.add_argument("--month", type=month_arg, required=True, help="month to reconcile, YYYY-MM")
    reconcile.add_argument(
        "--cost-export",
        type=Path,
        nargs="+",
        required=True,
        metavar="FILE",
        help="Cost Management FOCUS export: CSV, .csv.gz or Parquet files, or a folder of them",
    )
    reconcile.add_argument("--db", type=Path, help="DuckDB store file (CHARGEBACK_DUCKDB_PATH)")
    reconcile.add_argument("--out", type=Path, help="exports folder (EXPORTS_PATH)")
    reconcile.add_argument("--deployments", type=Path, help="deployments map CSV (DEPLOYMENTS_PATH)")
    reconcile.add_argument("--budgets", type=Path, help="budgets CSV (BUDGETS_PATH)")
    reconcile.set_defaults(handler=cmd_reconcile)

    ratecard = commands.add_parser("ratecard", help="import Azure list prices; find meters without a price")
    ratecard_commands = ratecard.add_subparsers(dest="ratecard_command", required=True, metavar="ACTION")
    card_import = ratecard_commands.add_parser(
        "import", help="saved Azure Retail Prices API responses to a v2 rate card"
    )
    card_import.add_argument("files", nargs="+", type=Path, metavar="FILE", help="saved API response pages")
    card_import.add_argument("--out", type=Path, default=Path("rate_card.csv"), help="card to write")
    card_import.add_argument("--region", help="armRegionName to keep (default: all, identical prices merged)")
    card_import.add_argument("--version", help="the card's '# version:' name (default: retail-DATE)")
    card_import.set_defaults(handler=cmd_ratecard_import)
    card_check = ratecard_commands.add_parser(
        "check", help="models and meters in the usage table without a price (exit 1 if any)"
    )
    card_check.add_argument("--db", type=Path, help="DuckDB store file (CHARGEBACK_DUCKDB_PATH)")
    card_check.add_argument("--rate-card", type=Path, help="rate card CSV (RATE_CARD_PATH)")
    card_check.add_argument("--deployments", type=Path, help="deployments map CSV (DEPLOYMENTS_PATH)")
    card_check.set_defaults(handler=cmd_ratecard_check)

    deployments = commands.add_parser("deployments", help="the deployments map from Azure")
    deployment_commands = deployments.add_subparsers(
        dest="deployments_command", required=True, metavar="ACTION"
    )
    deployments_import = deployment_commands.add_parser(
        "import", help="`az cognitiveservices account deployment list` JSON to a deployments map"
    )
    deployments_import.add_argument("file", type=Path, metavar="FILE", help="the saved JSON")
    deployments_import.add_argument(
        "--out", type=Path, default=Path("deployments.csv"), help="deployments map to write"
    )
    deployments_import.set_defaults(handler=cmd_deployments_import)

    budgets = commands.add_parser("budgets", help="budget checks and alerts")
    budget_commands = budgets.add_subparsers(dest="budgets_command", required=True, metavar="ACTION")
    check = budget_commands.add_parser("check", help="month-to-date spend, forecast and new alerts")
    check.add_argument("--month", type=month_arg, help="month to check, YYYY-MM (default: the current month)")
    check.add_argument(
        "--as-of", type=instant_arg, help="check as of this ISO date or instant, UTC (default: now)"
    )
    check.add_argument("--db", type=Path, help="DuckDB store file (CHARGEBACK_DUCKDB_PATH)")
    check.add_argument(
        "--deployments", type=Path, help="deployments map CSV with PTU costs (DEPLOYMENTS_PATH)"
    )
    check.add_argument("--budgets", type=Path, help="budgets CSV (BUDGETS_PATH)")
    check.add_argument(
        "--dry-run",
        action="store_true",
        help="print the alerts and budget actions (throttle, suspend, lift) it would raise; write nothing",
    )
    check.set_defaults(handler=cmd_budgets_check)
    return parser


def _lines(message: str) -> str:
    """A message made safe line by line: controls within a line shown, the message's own newlines kept."""
    return "\n".join(safe(line) for line in message.split("\n"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``chargeback`` console script."""
    from rich.console import Console

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, --version, or a bad argument (already said in one line)
        return done.code if isinstance(done.code, int) else EXIT_USAGE
    # The summary tables already report dead-letters; per-batch log lines are for -v.
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR, format="%(levelname)s %(message)s"
    )

    class _Console(Console):
        def on_broken_pipe(self) -> None:  # rich's default exits 1; a gone reader is not a failure
            self.quiet = True
            raise BrokenPipeError

    console = _Console()
    try:
        return _run(args, console)
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as the Python docs advise
        _silence_stdout()
        return EXIT_OK


def _silence_stdout() -> None:
    """Point stdout at devnull so that Python's flush at exit does not raise BrokenPipeError again.

    https://docs.python.org/3/library/signal.html#note-on-sigpipe
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout without a file descriptor (captured): nothing to flush
        pass


def _run(args: argparse.Namespace, console: Any) -> int:
    """Run the chosen command; a ChargebackError or an unforeseen fault becomes one line and an exit code."""
    try:
        code: int = args.handler(args, console)
    except ChargebackError as exc:
        console.print(f"[red]error[/red] ({exc.reason}): {_lines(exc.detail)}", soft_wrap=True)
        return EXIT_REFUSED if exc.reason == Reason.STATEMENT_REFUSED else EXIT_USAGE
    except (KeyboardInterrupt, SystemExit, BrokenPipeError):
        raise
    except Exception as exc:  # the one place an unforeseen fault becomes a line, not a traceback
        if args.verbose:
            raise
        console.print(
            f"[red]error[/red] (internal-error): {safe(type(exc).__name__)}: {_lines(str(exc))} "
            "(run with -v for the traceback)",
            soft_wrap=True,
        )
        return EXIT_FAULT
    return code


if __name__ == "__main__":
    sys.exit(main())
