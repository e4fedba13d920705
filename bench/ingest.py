"""Ingest benchmark: events/s through the whole pipeline against a bare read + JSON-parse loop.

    .venv/bin/python bench/ingest.py [--events 200000] [--batch-size N] [--runs 3] [--profile | --stages]

The input is the demo month's traffic mix with usage reported (chat, Responses, embeddings,
reasoning, batch, data zone, cache hits, 429s, an unpriced model), generated once into
``bench/.data``. The pipeline side is what ``chargeback ingest`` does: ``read_messages`` →
``ingest_batch`` → ``DuckDBStore`` (a file) + ``LocalDeadLetterStore``, on a fresh database each
run. The floor reads the same file line by line and ``json.loads`` each line, nothing else.
Goal: pipeline time at most 4x the floor.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from _common import best_of, config_files, events_file, machine


def bare_loop(path: Path) -> int:
    """The floor: read every line and parse it as JSON."""
    count = 0
    loads = json.loads
    with path.open("rb") as handle:
        for line in handle:
            loads(line)
            count += 1
    return count


def pipeline(path: Path, workdir: Path, batch_size: int) -> int:
    """The CLI's ingest loop into a DuckDB file and a dead-letter folder."""
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
    return total.received


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
    parser.add_argument("--profile", action="store_true", help="cProfile one pipeline run instead")
    parser.add_argument("--stages", action="store_true", help="time each pipeline step alone instead")
    args = parser.parse_args()

    from chargeback.cli import DEFAULT_BATCH

    batch_size = args.batch_size or DEFAULT_BATCH
    path = events_file("reported", args.events)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ingest-"))

    def fresh() -> None:
        shutil.rmtree(workdir, ignore_errors=True)
        workdir.mkdir()

    try:
        if args.stages:
            fresh()
            stages(path, workdir, batch_size)
            return
        if args.profile:
            import cProfile
            import pstats

            fresh()
            profiler = cProfile.Profile()
            profiler.runcall(pipeline, path, workdir, batch_size)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            return
        bare, count = best_of(args.runs, lambda: bare_loop(path))
        piped, received = best_of(args.runs, lambda: pipeline(path, workdir, batch_size), setup=fresh)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    assert received == count
    size = path.stat().st_size / 1e6
    print(f"ingest: {count:,} events ({size:.0f} MB), batch {batch_size}, best of {args.runs}; {machine()}")
    print(f"  floor (read + json.loads)   {bare:7.2f} s  {count / bare:>10,.0f} events/s")
    print(f"  pipeline (ingest → DuckDB)  {piped:7.2f} s  {count / piped:>10,.0f} events/s")
    ratio = piped / bare
    print(
        f"  ratio pipeline/floor        {ratio:7.2f} x   (goal <= 4x: {'met' if ratio <= 4 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
