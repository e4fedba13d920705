"""Against LiteLLM: the same events priced by our pipeline and by ``litellm.cost_per_token``.

    .venv/bin/python bench/litellm_compare.py [--events 200000] [--runs 3]

LiteLLM is installed only for this benchmark, in ``bench/.venv-litellm`` (created on first run,
gitignored; never in the main .venv or requirements); its side runs there as a subprocess
(``bench/_litellm_side.py``) with LiteLLM's packaged price map (no network).

Both sides start from the message body. Ours is what ``ingest_batch`` runs for a store that takes
columns (``chargeback ingest``), over batches of the CLI's size, up to the write: the columnar path
(``core.columnar.build_columns``: typed decode, checks, exact vectorised pricing, the usage table's
columns) and ``process_message`` for every message it leaves to the per-event path (non-text meters,
anything unusual); the shipped rate card and the demo's deployments map. Theirs is ``json.loads``
plus ``cost_per_token`` with the model named as LiteLLM's Azure catalog names it. Totals are compared
per deployment on the rows both price (ours exact Decimal sums, the columns' and the rows' alike).
Goal (issue #15): ours >= 10x theirs in events/s, end to end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from decimal import Decimal

from _common import BENCH, REPO, SRC, best_of, data_dir, events_file, machine

VENV = BENCH / ".venv-litellm"
PYTHON = VENV / "bin" / "python"


def ensure_venv() -> None:
    """Create bench/.venv-litellm with LiteLLM, once."""
    if PYTHON.exists():
        return
    print("creating bench/.venv-litellm (LiteLLM, benchmark only) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(PYTHON), "-m", "pip", "install", "-q", "litellm"], check=True)


def ours(lines: list[bytes]) -> tuple[float, float, dict[str, list[Decimal | int]], float]:
    """Best times of body → priced row, and of the pricing step alone; totals per deployment.

    Also the share of events that went the columnar way.
    """
    from chargeback.cli import DEFAULT_BATCH
    from chargeback.core.columnar import ColumnBatch, build_columns
    from chargeback.core.pipeline import Charge, Message, Source, collector_paused, process_message
    from chargeback.core.pricing import Pricer
    from chargeback.core.schema import parse_event
    from chargeback.core.usage import resolve_usage
    from chargeback.demo import write_config

    _, deployments = write_config(data_dir(), "2026-10", SRC / "chargeback" / "config" / "rate_card.csv")
    pricer = Pricer.from_files(REPO / "chargeback" / "config" / "rate_card.csv", deployments)
    messages = [Message(line, Source("file")) for line in lines]

    def run() -> tuple[list[ColumnBatch], list[Charge]]:
        batches: list[ColumnBatch] = []
        charges: list[Charge] = []
        with collector_paused():  # as ingest_batch runs
            for start in range(0, len(messages), DEFAULT_BATCH):
                batch = messages[start : start + DEFAULT_BATCH]
                columns = build_columns(batch, pricer, None)
                batches.append(columns)
                for index in columns.rest:
                    outcome = process_message(batch[index], pricer)
                    if isinstance(outcome, Charge):
                        charges.append(outcome)
        return batches, charges

    whole, (batches, charges) = best_of(3, run)
    resolved = [(e, resolve_usage(e)) for e in (parse_event(line) for line in lines)]
    price_only, _ = best_of(3, lambda: [pricer.price(e, u) for e, u in resolved])
    totals: dict[str, list[Decimal | int]] = defaultdict(lambda: [Decimal(0), 0])

    def add(key: str, cost: Decimal, count: int) -> None:
        entry = totals[key]
        entry[0] += cost
        entry[1] += count

    for columns in batches:
        keys = [
            f"{deployment}|{status}"
            for deployment, status in zip(
                columns.columns["Deployment"].tolist(), columns.columns["PricingStatus"].tolist(), strict=True
            )
        ]
        costs = columns.total_cost_by(keys)
        for key, count in Counter(keys).items():
            add(key, costs[key], count)
    for charge in charges:
        row = charge.row
        add(f"{row['Deployment']}|{row['PricingStatus']}", row["TotalCost"] or Decimal(0), 1)
    for key in [key for key in totals if key.endswith("|not-billable")]:
        del totals[key]
    columnar = sum(len(columns) for columns in batches) / len(lines)
    return whole, price_only, totals, columnar


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ensure_venv()
    path = events_file("reported", args.events)
    lines = path.read_bytes().splitlines()

    load_at_start = os.getloadavg()[0]
    started = time.perf_counter()
    out = subprocess.run(
        [str(PYTHON), str(BENCH / "_litellm_side.py"), str(path), str(args.runs)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    theirs = json.loads(out.strip().splitlines()[-1])
    litellm_wall = time.perf_counter() - started
    whole, price_only, totals, columnar = ours(lines)

    n = len(lines)
    print(f"litellm: {n:,} events (usage reported), best of {args.runs}; {machine()}")
    print(f"  load average {load_at_start:.2f} at start, {os.getloadavg()[0]:.2f} at end")
    print(
        f"  ours    body → priced row (as ingest_batch)  {whole:6.2f} s {n / whole:>10,.0f} events/s   "
        f"({columnar:.1%} columnar, the rest per event)"
    )
    print(
        f"  ours    Pricer.price alone                   {price_only:6.2f} s "
        f"{n / price_only:>10,.0f} events/s"
    )
    print(
        f"  LiteLLM json.loads + cost_per_token          {theirs['seconds']:6.2f} s "
        f"{n / theirs['seconds']:>10,.0f} events/s   (+{litellm_wall - theirs['seconds'] * args.runs:.1f} s "
        "import and load, not counted)"
    )
    ratio = theirs["seconds"] / whole
    verdict = "met" if ratio >= 10 else "NOT met"
    print(f"  ratio ours/LiteLLM (events/s, body → cost)   {ratio:6.1f} x   (goal >= 10x: {verdict})")
    print(f"  ratio pricing step alone                     {theirs['seconds'] / price_only:6.1f} x")
    print("  totals on the same events (USD; ours | LiteLLM | difference):")
    by_deployment: dict[str, dict[str, list[float]]] = defaultdict(dict)
    for key, (cost, count) in theirs["totals"].items():
        deployment, model, status = key.split("|")
        by_deployment[deployment][status] = [cost, count, model]  # type: ignore[list-item]
    for key in sorted(totals):
        deployment, status = key.split("|")
        cost, count = totals[key]
        side = by_deployment.get(deployment, {})
        if status == "priced":
            other = side.get("priced") or side.get("unpriced")
        else:
            other = side.get("cache-hit") if status == "cache-hit" else side.get("priced")
        if other is None:
            print(f"    {deployment:18s} {status:10s} {count:>7,} rows  {float(cost):12.4f} | (none)")
            continue
        diff = float(cost) - other[0]
        pct = f"{diff / other[0]:+.1%}" if other[0] else ""
        print(
            f"    {deployment:18s} {status:10s} {count:>7,} rows  {float(cost):12.4f} | "
            f"{other[0]:12.4f}  {diff:+12.4f} {pct:>7}  ({other[2]})"
        )


if __name__ == "__main__":
    main()
