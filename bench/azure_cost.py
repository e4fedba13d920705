"""The pipeline's own Azure cost per 1M calls, as a share of the Azure OpenAI spend it tracks.

    .venv/bin/python bench/azure_cost.py [--events 50000] [--calls-per-month 10000000] [--runs 3]

Traffic: the demo month's generator (``chargeback.demo.Generator``: its teams, deployments, token
sizes, streams with and without usage, 2 % throttled calls, ~1 % redeliveries, a few broken events),
priced by the pipeline with the shipped rate card (``process_batch``, the Function's own code). The
Azure OpenAI spend is the sum of ``TotalCost`` over distinct RequestIds; a "call" is one RequestId.

What the pipeline pays, per component, from the deployed configuration (host.json batch size,
``infra/main.bicep`` retention and ``infra/app/function.bicep`` instance memory are read, not
copied) and the list prices in ``bench/azure_prices.csv`` (each with its source; edit it for your
region or agreement):

- **Log Analytics**: billed bytes per row as Azure Monitor bills them (learn.microsoft.com
  azure-monitor/logs/cost-logs, "Data size calculation"): the size of a string representation of the
  columns stored for the record; ``_ResourceId``, ``_SubscriptionId``, ``_ItemId``, ``_IsBillable``,
  ``_BilledSize`` and ``Type`` are excluded; ``TimeGenerated`` is a stored column and counts. We
  render each value the way Kusto prints it (datetime with 7 fractional digits, ``true``/``false``,
  shortest round-trip reals, compact JSON for dynamic) and count an empty string as 0 bytes. The
  page also says billed size runs ~25 % below the incoming JSON; as an upper bound we also count each
  non-empty column's name as JSON would (``"Name":`` and a comma). Ingestion plus retention beyond
  the 31 days included, spread over the row's life.
- **Event Hubs** (Standard): ingress events (one per started 64 KB of a message) and the
  throughput units the month's peak needs (1 TU = 1 MB/s or 1,000 events/s; peak = 3x the mean rate,
  business hours), a fixed monthly cost that is then spread over ``--calls-per-month``.
- **Functions** (Flex Consumption, on demand): one execution per Event Hub batch (full batches of
  ``maxEventBatchSize``: the volume is high enough to fill them), and GB-s = instance memory x
  execution time, where execution time = this machine's ``process_batch`` time for the batch + one
  Logs Ingestion call per 1 MB gzip body at ``--upload-seconds`` each (not measurable here).
- **Storage**: one checkpoint write per batch (``batchCheckpointFrequency`` 1).
- **Application Insights** (workspace-based, billed as Analytics ingestion): the Function's own
  telemetry, ``--telemetry-bytes`` per execution (request, host traces, our summary line and the
  Logs Ingestion dependency; an assumption, 31 days included, no retention charge).

Free grants are not deducted (they are per subscription, not per workload). Then the same with
each alternative the issue asks about (table plan, retention, batch size, empty columns not sent),
and what each would cost in KQL uses. Goal: the pipeline's cost <= 0.5 % of the tracked spend.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import time
import zlib
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import MONTH, SRC, config_files, machine

PRICES = Path(__file__).resolve().parent / "azure_prices.csv"
# Columns every table has that Azure Monitor does not count in a record's billed size.
EXCLUDED = frozenset({"_ResourceId", "_SubscriptionId", "_ItemId", "_IsBillable", "_BilledSize", "Type"})
INGRESS_EVENT_BYTES = 64 * 1024
PEAK_TO_MEAN = 3.0
HOURS_PER_MONTH = 730
DAYS_PER_MONTH = 30.4
INCLUDED_RETENTION_DAYS = 31


def load_prices(path: Path) -> dict[str, float]:
    """``service/meter`` -> price, from the CSV (every row names its source)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    missing = [row["meter"] for row in rows if not row["source"].strip()]
    assert not missing, f"prices without a source: {missing}"
    return {f"{row['service']}/{row['meter']}": float(row["price"]) for row in rows}


def deployed() -> dict[str, int]:
    """The configuration as deployed: batch size, retention, instance memory (read from the repo)."""
    host = json.loads((SRC / "host.json").read_text(encoding="utf-8"))["extensions"]["eventHubs"]
    main = (SRC / "infra" / "main.bicep").read_text(encoding="utf-8")
    function = (SRC / "infra" / "app" / "function.bicep").read_text(encoding="utf-8")

    def param(text: str, name: str) -> int:
        match = re.search(rf"^param {name} int = (\d+)", text, re.M)
        assert match, name
        return int(match.group(1))

    return {
        "batch": int(host["maxEventBatchSize"]),
        "interactive_days": param(main, "tableRetentionDays"),
        "total_days": param(main, "tableTotalRetentionDays"),
        "memory_mb": param(function, "instanceMemoryMB"),
    }


def kusto_text(value: Any, kind: str) -> str:
    """A value as Kusto prints it: the string whose size Azure Monitor bills."""
    if value is None:
        return ""
    if kind == "dateTime":
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond:06d}0Z"
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "real":
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    if kind == "dynamic":
        parsed = json.loads(value) if isinstance(value, str) else value
        return json.dumps(parsed, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def billed_bytes(row: dict[str, Any], types: dict[str, str], *, names: str = "") -> int:
    """One record's billed size: its stored columns' values as text.

    ``names="sent"`` adds the JSON name of every column sent (``"Name":`` and a comma, empty strings
    included), ``names="non-empty"`` only of the columns with a value: the upper-bound model, as sent
    today and with empty strings left out.
    """
    size = 0
    for name, kind in types.items():
        if name in EXCLUDED:
            continue
        value = row.get(name)
        text = kusto_text(value, kind)
        size += len(text.encode("utf-8"))
        if (names == "sent" and value is not None) or (names == "non-empty" and text):
            size += len(name) + 4
    return size


@dataclass(frozen=True)
class Scenario:
    """One way to run the pipeline; the baseline is the deployed configuration."""

    name: str
    plan: str  # analytics, basic
    interactive_days: int
    total_days: int
    batch: int
    memory_mb: int
    drop_empty: bool = False
    loses: str = "nothing (as deployed)"


@dataclass
class Traffic:
    """What the generated month measured, per call."""

    calls: int
    rows: int  # rows written to Log Analytics (a redelivery in another batch is a second row)
    spend: float  # Azure OpenAI spend of the distinct calls, USD
    messages: int
    ingress_events: int
    message_bytes: int
    billed: dict[str, int]  # model ("" values only, "sent", "non-empty") -> billed bytes of all rows
    gzip_bytes: dict[bool, int]  # drop_empty -> gzip JSON bytes as the writer sends them
    batch_seconds: dict[int, float]  # batch size -> process_batch seconds per batch (best of N)
    by_kind: dict[str, tuple[int, float, int]]  # deployment -> calls, spend, billed bytes (values)


def measure(events: int, runs: int, batches: list[int]) -> Traffic:
    """Generate the month, price it with the pipeline and measure sizes and batch times."""
    from chargeback.core.pipeline import Message, Source, process_batch
    from chargeback.core.pricing import Pricer
    from chargeback.core.schema import table_columns
    from chargeback.demo import Generator
    from chargeback.edges.sinks import row_for_json

    types = {column.name: column.type for column in table_columns()}
    pricer = Pricer.from_files(*config_files())
    bodies = list(Generator(MONTH, 6).events(events))
    messages = [Message(body, Source("file")) for body in bodies]
    result = process_batch(messages, pricer)
    rows = [charge.row for charge in result.charges]

    spend_by_id: dict[str, float] = {}
    by_kind: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0])
    billed = {"": 0, "sent": 0, "non-empty": 0}
    for row in rows:
        values = billed_bytes(row, types)
        billed[""] += values
        billed["sent"] += billed_bytes(row, types, names="sent")
        billed["non-empty"] += billed_bytes(row, types, names="non-empty")
        cost = float(row["TotalCost"] or 0)
        if row["RequestId"] not in spend_by_id:
            spend_by_id[row["RequestId"]] = cost
            entry = by_kind[row["Deployment"]]
            entry[0] += 1
            entry[1] += cost
            entry[2] += values
    wire = [row_for_json(row) for row in rows]
    gzip_bytes = {}
    for drop in (False, True):
        compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
        size = 0
        for item in wire:
            sent = {k: v for k, v in item.items() if v != "" and v is not None} if drop else item
            text = json.dumps(sent, ensure_ascii=False, separators=(",", ":"))
            size += len(compressor.compress(text.encode("utf-8")))
        gzip_bytes[drop] = size + len(compressor.flush())

    # Seconds per batch: all messages in batches of that size, best of N, divided by the batches.
    batch_seconds = {}
    for size in batches:
        chunks = [messages[i : i + size] for i in range(0, len(messages), size)]
        best = math.inf
        for _ in range(runs):
            start = time.perf_counter()
            for chunk in chunks:
                process_batch(chunk, pricer)
            best = min(best, time.perf_counter() - start)
        batch_seconds[size] = best / len(chunks)

    return Traffic(
        calls=len(spend_by_id),
        rows=len(rows),
        spend=sum(spend_by_id.values()),
        messages=len(bodies),
        ingress_events=sum(-(-len(body) // INGRESS_EVENT_BYTES) for body in bodies),
        message_bytes=sum(len(body) for body in bodies),
        billed=billed,
        gzip_bytes=gzip_bytes,
        batch_seconds=batch_seconds,
        by_kind={k: (int(v[0]), float(v[1]), int(v[2])) for k, v in by_kind.items()},
    )


def cost_per_million(
    s: Scenario,
    t: Traffic,
    price: dict[str, float],
    calls_per_month: float,
    *,
    upload_seconds: float,
    telemetry_bytes: float,
) -> dict[str, float]:
    """USD per 1M calls by component for one scenario (fixed monthly costs spread over the volume)."""
    per_call = 1e6 / t.calls
    out: dict[str, float] = {}
    # Log Analytics: ingestion, then retention over the row's life (GB-months beyond what is included).
    gb = t.billed[""] / 1e9 * per_call
    if s.plan == "analytics":
        out["LA ingestion"] = gb * price["log-analytics/analytics-ingestion"]
        interactive_months = max(0, s.interactive_days - INCLUDED_RETENTION_DAYS) / DAYS_PER_MONTH
        out["LA interactive retention"] = (
            gb * interactive_months * price["log-analytics/interactive-retention"]
        )
    else:
        out["LA ingestion"] = gb * price[f"log-analytics/{s.plan}-ingestion"]
        out["LA interactive retention"] = 0.0  # 30 days, included
        s = replace(s, interactive_days=30)
    long_term_months = max(0, s.total_days - s.interactive_days) / DAYS_PER_MONTH
    out["LA long-term retention"] = gb * long_term_months * price["log-analytics/long-term-retention"]
    # Event Hubs: ingress events, and the TUs the peak needs, spread over the month's calls.
    out["Event Hubs ingress"] = t.ingress_events * per_call / 1e6 * price["event-hubs/standard-ingress"]
    seconds = DAYS_PER_MONTH * 86400
    peak_events = calls_per_month * (t.messages / t.calls) / seconds * PEAK_TO_MEAN
    peak_mb = calls_per_month * (t.message_bytes / t.calls) / seconds * PEAK_TO_MEAN / 1e6
    units = max(1, math.ceil(peak_events / 1000), math.ceil(peak_mb))
    tu_month = units * HOURS_PER_MONTH * price["event-hubs/standard-throughput-unit"]
    out["Event Hubs throughput units"] = tu_month * 1e6 / calls_per_month
    # Functions: executions and GB-s per batch; Logs Ingestion calls of <= 1 MB gzip each.
    executions = t.messages * per_call / s.batch
    gzip_per_row = t.gzip_bytes[s.drop_empty] / t.rows
    uploads_per_batch = max(1, math.ceil(gzip_per_row * s.batch / 1e6))
    batch_seconds = t.batch_seconds[s.batch] + uploads_per_batch * upload_seconds
    out["Functions executions"] = executions / 1e6 * price["functions/flex-on-demand-executions"]
    gb_seconds = executions * batch_seconds * s.memory_mb / 1024
    out["Functions GB-s"] = gb_seconds * price["functions/flex-on-demand-execution-time"]
    out["Storage checkpoints"] = executions / 1e4 * price["storage/blob-hot-write-operations"]
    telemetry_gb = executions * telemetry_bytes / 1e9
    out["App Insights telemetry"] = telemetry_gb * price["log-analytics/analytics-ingestion"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls-per-month", type=float, default=10_000_000)
    parser.add_argument(
        "--upload-seconds", type=float, default=0.25, help="assumed latency of one Logs Ingestion call"
    )
    parser.add_argument(
        "--telemetry-bytes", type=float, default=5_000, help="assumed App Insights bytes per execution"
    )
    parser.add_argument("--prices", type=Path, default=PRICES)
    args = parser.parse_args()

    price = load_prices(args.prices)
    costs = {"upload_seconds": args.upload_seconds, "telemetry_bytes": args.telemetry_bytes}
    conf = deployed()
    base = Scenario(
        "as deployed",
        "analytics",
        conf["interactive_days"],
        conf["total_days"],
        conf["batch"],
        conf["memory_mb"],
    )
    scenarios = [
        base,
        replace(
            base,
            name="empty strings not sent",
            drop_empty=True,
            loses="nothing; saves wire bytes only (an empty value is billed as 0 bytes either way)",
        ),
        replace(base, name="batch 100 (host default)", batch=100, loses="nothing; more executions and calls"),
        replace(
            base,
            name="interactive retention 400 d",
            interactive_days=400,
            loses="interactive queries older than 13 months (a search job or the monthly exports instead)",
        ),
        replace(
            base,
            name="Basic table plan",
            plan="basic",
            loses="month close (Basic+Analytics queries reach back 30 days; a month has 31), "
            "saved functions, Power BI, per-GB-scanned query charges on every workbook view",
        ),
    ]
    batches = sorted({s.batch for s in scenarios})
    started = time.perf_counter()
    traffic = measure(args.events, args.runs, batches)
    elapsed = time.perf_counter() - started
    from chargeback.core.schema import table_columns

    types = {column.name: column.type for column in table_columns()}

    t = traffic
    print(
        f"azure_cost: {t.messages:,} Event Hub messages ({t.calls:,} distinct calls, {t.rows:,} rows) of the "
        f"demo month {MONTH}, priced with the shipped rate card; {machine()}; {elapsed:.0f} s"
    )
    spend_m = t.spend / t.calls * 1e6
    print(
        f"  Azure OpenAI spend tracked        {spend_m:12,.2f} USD per 1M calls "
        f"({t.spend / t.calls:.6f} per call)"
    )
    print(
        f"  billed bytes per row (LA rule)    {t.billed[''] / t.rows:8.1f} values only; "
        f"{t.billed['sent'] / t.rows:.1f} upper bound with JSON names; {len(types)} columns"
    )
    print(
        f"  Event Hub message                 {t.message_bytes / t.messages:8.0f} bytes mean, "
        f"{t.ingress_events / t.messages:.3f} ingress events per message"
    )
    print(
        "  process_batch per batch           "
        + ", ".join(f"{size}: {seconds * 1e3:.1f} ms" for size, seconds in t.batch_seconds.items())
        + f" (+ {args.upload_seconds:.2f} s assumed per Logs Ingestion call)"
    )
    print(f"  configuration as deployed         {conf}")

    baseline = cost_per_million(base, t, price, args.calls_per_month, **costs)
    print(f"\n  per 1M calls at {args.calls_per_month:,.0f} calls/month, as deployed:")
    for name, usd in baseline.items():
        print(f"    {name:30s} {usd:10.4f} USD  {usd / spend_m:8.4%}")
    total = sum(baseline.values())
    verdict = "met" if total / spend_m <= 0.005 else "NOT met"
    print(f"    {'total':30s} {total:10.4f} USD  {total / spend_m:8.4%}   (goal <= 0.5 %: {verdict})")

    print("\n  share of the tracked spend by monthly volume (Event Hub TUs are a fixed cost):")
    for volume in (100_000, 1_000_000, 10_000_000, 100_000_000):
        usd = sum(cost_per_million(base, t, price, volume, **costs).values())
        print(f"    {volume:>13,} calls/month   {usd:9.4f} USD per 1M calls   {usd / spend_m:8.4%}")

    print("\n  share by deployment (its rows' Log Analytics cost + the rest per call, vs its own spend):")
    la_names = ("LA ingestion", "LA interactive retention", "LA long-term retention")
    la_total = sum(baseline[name] for name in la_names)
    la_per_gb = la_total / (t.billed[""] / t.calls * 1e6 / 1e9)  # USD per billed GB over the row's life
    other = total - la_total
    for deployment, (calls, spend, billed) in sorted(t.by_kind.items(), key=lambda kv: kv[1][1] / kv[1][0]):
        la = billed / calls * 1e6 / 1e9 * la_per_gb
        mean = spend / calls * 1e6
        share = f"{(la + other) / mean:8.3%}" if spend else "  (unpriced: no spend to compare)"
        print(f"    {deployment:20s} {calls:7,} calls  {mean:10,.2f} USD/1M  pipeline {share}")

    print("\n  alternatives (per 1M calls, same traffic):")
    print(f"    {'scenario':30s} {'USD/1M':>9s} {'share':>8s}  {'gzip B/row':>10s}  KQL uses lost")
    for s in scenarios:
        usd = sum(cost_per_million(s, t, price, args.calls_per_month, **costs).values())
        gz = t.gzip_bytes[s.drop_empty] / t.rows
        print(f"    {s.name:30s} {usd:9.4f} {usd / spend_m:8.4%}  {gz:10.1f}  {s.loses}")
    print(
        f"    (upper-bound billing model, names counted: {t.billed['sent'] / t.rows:.0f} B/row as sent, "
        f"{t.billed['non-empty'] / t.rows:.0f} B/row with empty strings not sent)"
    )


if __name__ == "__main__":
    main()
