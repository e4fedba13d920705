"""Ingest benchmark: a whole ``chargeback ingest`` process against a whole bare-loop process.

    .venv/bin/python bench/ingest.py [--events 200000] [--batch-size N] [--runs 3]
                                     [--profile | --profile-process | --stages]

The input is the demo month's traffic mix with usage reported (chat, Responses, embeddings,
reasoning, batch, data zone, cache hits, 429s, an unpriced model), generated once into
``bench/.data``. Both sides are whole processes of the same interpreter, start-up included, best of
``--runs``:

- the floor: ``python -c`` reading the file line by line and ``json.loads`` on each line;
- the subject: ``python -m chargeback ingest FILE --db <fresh> --deadletter <fresh> --rate-card ...
  --deployments ...`` with the demo config (``_common.config_files``), a fresh store each run.

Goal (issue #15): the ingest process at most 2x the floor process. Every subject run is checked
against an in-process run of the same loop (``read_messages`` -> ``ingest_batch`` -> ``DuckDBStore``):
the same rows in the store (compared whole, both ways), one row per RequestId, written == the
store's count, the same dead-letter count and the same total cost. That in-process run is also
printed against an in-process floor loop (no start-up), the measure of RESULTS.md §8, and the
start-up alone (``python -c pass``, ``import chargeback.cli``).

``--stages`` times each pipeline step alone, ``--profile`` cProfiles the in-process loop and
``--profile-process`` the ``chargeback ingest`` process itself (start-up included).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from _common import SRC, best_of, config_files, events_file, machine

# The floor process: the same interpreter reading the file and parsing each line, nothing else.
FLOOR = """\
import json, sys
loads = json.loads
count = 0
with open(sys.argv[1], "rb") as handle:
    for line in handle:
        loads(line)
        count += 1
print(count)
"""


def bare_loop(path: Path) -> int:
    """The in-process floor: read every line and parse it as JSON."""
    count = 0
    loads = json.loads
    with path.open("rb") as handle:
        for line in handle:
            loads(line)
            count += 1
    return count


def pipeline(path: Path, workdir: Path, batch_size: int) -> Any:
    """The CLI's ingest loop in this process into a DuckDB file and a dead-letter folder."""
    from chargeback.core.pricing import Pricer
    from chargeback.edges.deadletter import LocalDeadLetterStore
    from chargeback.edges.jsonl import read_messages
    from chargeback.edges.store import DuckDBStore
    from chargeback.jobs.ingest import IngestSummary, ingest_batch

    card, deployments = config_files()
    pricer = Pricer.from_files(card, deployments)
    total = IngestSummary()
    deadletter = LocalDeadLetterStore(workdir / "deadletter")
    with DuckDBStore(workdir / "usage.duckdb") as store:
        for batch, _ in read_messages(path, batch_size):
            total.add(ingest_batch(batch, pricer=pricer, writer=store, deadletter=deadletter))
        assert total.accounted, total
        assert store.count() == total.written
    return total


def _environment() -> dict[str, str]:
    """The child's environment: ``SRC``'s chargeback first (``BENCH_SRC``), no settings leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHARGEBACK_", "DEADLETTER_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def run_process(argv: list[str]) -> str:
    """Run one child process to its end; its stdout, or the benchmark stops with its stderr."""
    # In SRC: ``-m`` puts the working directory first on sys.path, ahead of PYTHONPATH.
    done = subprocess.run(argv, capture_output=True, env=_environment(), cwd=SRC, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{argv[:4]} exited {done.returncode}:\n{done.stderr.decode(errors='replace')}")
    return done.stdout.decode(errors="replace")


def ingest_argv(path: Path, run: Path, batch_size: int, profile: Path | None = None) -> list[str]:
    """``python -m chargeback ingest`` with the demo config into a fresh store and dead-letter folder."""
    card, deployments = config_files()
    prefix = [sys.executable, "-m", "cProfile", "-o", str(profile)] if profile else [sys.executable]
    return [
        *prefix,
        "-m",
        "chargeback",
        "ingest",
        str(path),
        "--db",
        str(run / "usage.duckdb"),
        "--deadletter",
        str(run / "deadletter"),
        "--rate-card",
        str(card),
        "--deployments",
        str(deployments),
        "--batch-size",
        str(batch_size),
    ]


def check_run(run: Path, reference: Path, summary: Any) -> None:
    """The process's store and dead-letters against the in-process run's: same rows, counts, total."""
    import duckdb

    records = sum(
        1
        for file in (run / "deadletter").rglob("deadletter-*.jsonl")
        for line in file.open("rb")
        if line.strip()
    )
    with duckdb.connect(str(run / "usage.duckdb"), read_only=True) as connection:
        connection.execute(f"ATTACH '{reference}' AS reference (READ_ONLY)")
        rows, keys, cost = connection.execute(
            'SELECT count(*), count(DISTINCT "RequestId"), sum("TotalCost") FROM "AOAIChargeback_CL"'
        ).fetchall()[0]
        differ = connection.execute(
            """SELECT (SELECT count(*) FROM (SELECT * FROM "AOAIChargeback_CL"
                                             EXCEPT ALL SELECT * FROM reference."AOAIChargeback_CL")),
                      (SELECT count(*) FROM (SELECT * FROM reference."AOAIChargeback_CL"
                                             EXCEPT ALL SELECT * FROM "AOAIChargeback_CL"))"""
        ).fetchall()[0]
    expected_cost = sum(summary.cost_by_subscription.values(), Decimal(0))
    problems = []
    if rows != keys:
        problems.append(f"{rows} rows for {keys} RequestIds")
    if rows != summary.written:
        problems.append(f"store holds {rows} rows, the in-process run wrote {summary.written}")
    if records != summary.dead_lettered:
        problems.append(f"{records} dead-letters, the in-process run {summary.dead_lettered}")
    if differ != (0, 0):
        problems.append(
            f"rows differ from the in-process run's: {differ[0]} only here, {differ[1]} only there"
        )
    if abs(Decimal(repr(cost or 0.0)) - expected_cost) > Decimal("0.000001"):
        problems.append(f"total cost {cost} against {expected_cost}")
    if problems:
        raise SystemExit("ingest process check failed: " + "; ".join(problems))


def startup(runs: int) -> tuple[float, float]:
    """Best wall time of ``python -c pass`` and of ``python -c 'import chargeback.cli'``."""
    bare, _ = best_of(runs, lambda: run_process([sys.executable, "-c", "pass"]))
    cli, _ = best_of(runs, lambda: run_process([sys.executable, "-c", "import chargeback.cli"]))
    return bare, cli


def stages(path: Path, workdir: Path, batch_size: int) -> None:
    """Wall time of each step of the pipeline alone, per event, over the whole file (GC paused)."""
    import time

    from chargeback.core.pipeline import build_row, collector_paused
    from chargeback.core.pricing import Pricer
    from chargeback.core.schema import decode_body, validate_event
    from chargeback.core.usage import resolve_usage
    from chargeback.edges.jsonl import read_messages
    from chargeback.edges.store import DuckDBStore
    from chargeback.errors import RejectedEvent

    pricer = Pricer.from_files(*config_files())
    timings: dict[str, float] = {}

    def timed(name: str, step: Any) -> Any:
        start = time.perf_counter()
        result = step()
        timings[name] = time.perf_counter() - start
        return result

    with collector_paused():
        batches = timed(
            "read_messages (Message per line)", lambda: [b for b, _ in read_messages(path, batch_size)]
        )
        bodies = [message.body for batch in batches for message in batch]
        docs = timed("decode_body (JSON)", lambda: [decode_body(body) for body in bodies])

        def validate() -> list[Any]:
            events = []
            for doc in docs:
                with contextlib.suppress(RejectedEvent):
                    events.append(validate_event(doc))
            return events

        events = timed("validate_event (incl. Event)", validate)
        usages = timed("resolve_usage", lambda: [resolve_usage(event) for event in events])
        pairs = list(zip(events, usages, strict=True))
        prices = timed("Pricer.price", lambda: [pricer.price(event, usage) for event, usage in pairs])
        triples = list(zip(events, usages, prices, strict=True))
        rows = timed("build_row", lambda: [build_row(event, usage, price) for event, usage, price in triples])
        with DuckDBStore(workdir / "stages.duckdb") as store:
            timed(
                "store.write (columns + keyed INSERT)",
                lambda: [store.write(rows[i : i + batch_size]) for i in range(0, len(rows), batch_size)],
            )
            timed("store close (checkpoint)", store.close)
    count = len(bodies)
    for name, seconds in timings.items():
        print(f"  {name:38s} {seconds / count * 1e6:6.2f} us per event")
    print(f"  {'sum':38s} {sum(timings.values()) / count * 1e6:6.2f} us per event ({count:,} events)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=None, help="default: the CLI's default")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile the in-process loop instead")
    parser.add_argument(
        "--profile-process", action="store_true", help="cProfile one chargeback ingest process instead"
    )
    parser.add_argument("--stages", action="store_true", help="time each pipeline step alone instead")
    args = parser.parse_args()

    from chargeback.cli import DEFAULT_BATCH

    batch_size = args.batch_size or DEFAULT_BATCH
    path = events_file("reported", args.events)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    run = workdir / "run"

    def fresh() -> None:
        shutil.rmtree(run, ignore_errors=True)
        run.mkdir(parents=True)

    load = os.getloadavg()
    try:
        if args.stages:
            fresh()
            stages(path, run, batch_size)
            return
        if args.profile or args.profile_process:
            import pstats

            fresh()
            out = workdir / "profile.out"
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.runcall(pipeline, path, run, batch_size)
                profiler.dump_stats(out)
            else:
                run_process(ingest_argv(path, run, batch_size, profile=out))
            pstats.Stats(str(out)).sort_stats("cumulative").print_stats(35)
            pstats.Stats(str(out)).sort_stats("tottime").print_stats(30)
            return
        reference = workdir / "reference"
        reference.mkdir()
        in_process, summary = best_of(
            args.runs,
            lambda: pipeline(path, reference, batch_size),
            setup=lambda: (shutil.rmtree(reference, ignore_errors=True), reference.mkdir()),
        )
        bare, count = best_of(args.runs, lambda: bare_loop(path))
        floors: list[float] = []
        timings: list[float] = []
        for _ in range(args.runs):  # interleaved, so that both sides see the same neighbours
            start = time.perf_counter()
            printed = run_process([sys.executable, "-c", FLOOR, str(path)])
            floors.append(time.perf_counter() - start)
            fresh()
            start = time.perf_counter()
            run_process(ingest_argv(path, run, batch_size))
            timings.append(time.perf_counter() - start)
            check_run(run, reference / "usage.duckdb", summary)
        floor, subject = min(floors), min(timings)
        python_start, cli_start = startup(args.runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert summary.received == count == int(printed), (summary.received, count, printed)
    size = path.stat().st_size / 1e6
    after = os.getloadavg()
    print(f"ingest: {count:,} events ({size:.0f} MB), batch {batch_size}, best of {args.runs}; {machine()}")
    print(f"  load average {load[0]:.2f} at start, {after[0]:.2f} at end")
    floor_label = "floor process (python -c: read + json.loads)"
    print(f"  {floor_label:46s} {floor:7.2f} s  {count / floor:>10,.0f} events/s")
    print(f"  {'chargeback ingest process':46s} {subject:7.2f} s  {count / subject:>10,.0f} events/s")
    ratio = subject / floor
    verdict = "met" if ratio <= 2 else "NOT met"
    print(f"  {'ratio process/floor':46s} {ratio:7.2f} x   (goal <= 2x: {verdict})")
    total = sum(summary.cost_by_subscription.values(), Decimal(0))
    print(
        f"  checked each run: {summary.written:,} rows as in-process, {summary.dead_lettered:,} "
        f"dead-letters, {summary.duplicates:,} duplicates, total cost {total:.4f}"
    )
    print(
        f"  in process (no start-up; RESULTS.md section 8): floor loop {bare:.2f} s, "
        f"pipeline {in_process:.2f} s, ratio {in_process / bare:.2f} x"
    )
    print(f"  start-up: python -c pass {python_start:.3f} s, import chargeback.cli {cli_start:.3f} s")


if __name__ == "__main__":
    main()
