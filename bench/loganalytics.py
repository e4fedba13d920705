"""Log Analytics writes: calls and bytes per 10,000 rows against the local ingestion server.

    .venv/bin/python bench/loganalytics.py [--events 100000] [--batch-size 10000]

Realistic rows (the demo month's traffic mix, usage reported, through ``process_batch``) go through
``LogAnalyticsWriter`` on the real ``azure-monitor-ingestion`` client to ``chargeback_dev.localserver``
(the Logs Ingestion API over DuckDB, on loopback), one ``write`` per batch as the Function does.
Goal: at most 4 calls per 10,000 rows (the DCR allows 12,000 requests per minute).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import config_files, events_file, machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=10_000)
    args = parser.parse_args()

    from azure.monitor.ingestion import LogsIngestionClient

    from chargeback.core.pipeline import Message, Source, process_batch
    from chargeback.core.pricing import Pricer
    from chargeback.edges.azure_clients import LocalStandInCredential
    from chargeback.edges.loganalytics import LogAnalyticsWriter
    from chargeback_dev.localserver import LocalLogAnalytics

    path = events_file("reported", args.events)
    pricer = Pricer.from_files(*config_files())
    messages = [Message(line, Source("file")) for line in path.read_bytes().splitlines()]
    rows = [charge.row for charge in process_batch(messages, pricer).charges]

    with tempfile.TemporaryDirectory(prefix="bench-la-") as workdir:
        server = LocalLogAnalytics(Path(workdir) / "loganalytics.duckdb").start()
        try:
            client = LogsIngestionClient(server.endpoint, LocalStandInCredential())
            writer = LogAnalyticsWriter(client, "dcr-local", "Custom-AOAIChargeback_CL")
            written = 0
            start = time.perf_counter()
            for i in range(0, len(rows), args.batch_size):
                written += writer.write(rows[i : i + args.batch_size]).written
            elapsed = time.perf_counter() - start
            stats = server.stats
            stored = server.sql('SELECT count(*) FROM "AOAIChargeback_CL"')[0][0]
        finally:
            server.stop()

    per10k = 10_000 / len(rows)
    sent = sum(stats.body_sizes)
    print(f"loganalytics: {len(rows):,} rows in writes of {args.batch_size:,}; {machine()}")
    print(f"  rows written / stored        {written:,} / {stored:,}")
    print(f"  upload calls                 {writer.calls:,}  ({writer.calls * per10k:.2f} per 10,000 rows)")
    print(
        f"  gzip bytes sent              {sent / 1e6:,.1f} MB  "
        f"({sent * per10k / 1e6:.2f} MB per 10,000 rows, largest call {max(stats.body_sizes) / 1e6:.2f} MB)"
    )
    print(f"  throughput (loopback)        {len(rows) / elapsed:,.0f} rows/s")
    verdict = "met" if writer.calls * per10k <= 4 else "NOT met"
    if len(rows) < 10_000:
        verdict = "fewer than 10,000 rows: no verdict (one call is the minimum)"
    print(f"  goal <= 4 calls per 10,000 rows: {verdict}")


if __name__ == "__main__":
    main()
