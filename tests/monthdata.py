"""A small, deterministic month of usage for the rollup, export, budget and timer tests.

Three subscriptions over every case the rollup must handle: cached input, reasoning, embeddings,
a data-zone deployment, a provisioned (PTU) deployment, an unmapped model (unpriced), throttled
calls (not billable) and semantic-cache hits; in October 2026 the test rate card's gpt-4o price
change on the 15th splits gpt-4o rows by unit price.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tests.conftest import RATE_CARD, make_event, to_body

DEPLOYMENTS_WITH_PTU = """\
deployment,model,deployment_type,ptu_monthly_cost,currency
chat,gpt-4o,global,,
chat-eu,gpt-4o,datazone,,
mini,gpt-4o-mini,global,,
reason,o4-mini,global,,
embed,text-embedding-3-small,global,,
ptu-chat,gpt-4o,ptu,300.00,USD
"""

BUDGETS = """\
subscription_id,subscription_name,cost_center,owner,monthly_budget,currency,thresholds
team-a,Team A,CC-A,a@example.com,0.20,USD,
team-b,Team B,CC-B,b@example.com,1000.00,USD,50;80;100
team-c,Team C,CC-C,c@example.com,0.05,USD,50;100
team-z,Team Z,CC-Z,z@example.com,10.00,USD,
"""

SUBSCRIPTIONS = ("team-a", "team-b", "team-c")
DEPLOYMENT_CYCLE = ("chat", "mini", "reason", "embed", "chat-eu", "ptu-chat", "lab-x", "chat")


def month_events(start: datetime, count: int = 64, prefix: str = "r") -> list[dict[str, Any]]:
    """``count`` valid events spread over the 28 first days of the month starting at ``start``."""
    events = []
    for i in range(count):
        subscription = SUBSCRIPTIONS[i % 3]
        deployment = DEPLOYMENT_CYCLE[i % len(DEPLOYMENT_CYCLE)]
        moment = start + timedelta(days=(i * 7) % 28, hours=(i * 5) % 24, minutes=i)
        prompt, completion = 1000 + 37 * i, 100 + 11 * i
        cached = (prompt // 1024) * 1024 if i % 4 == 0 and deployment != "embed" else 0
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {
                "reasoning_tokens": completion // 2 if deployment == "reason" else 0
            },
        }
        model = {"mini": "gpt-4o-mini", "reason": "o4-mini-2025-04-16", "lab-x": "gpt-realtime-x"}.get(
            deployment, "gpt-4o-2024-11-20"
        )
        if deployment == "embed":
            model, usage = "text-embedding-3-small", {"prompt_tokens": prompt, "total_tokens": prompt}
        overrides: dict[str, Any] = {
            "requestId": f"{prefix}-{start:%Y%m}-{i:03d}",
            "timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.0000000Z"),
            "subscriptionId": subscription,
            "subscriptionName": f"Team {subscription[-1].upper()}",
            "deployment": deployment,
            "model": model,
            "usage": usage,
        }
        if i % 17 == 5:
            overrides.update(statusCode=429, usage=None)
        elif i % 13 == 7:
            overrides["servedFromCache"] = True
        events.append(make_event(**overrides))
    return events


def write_config(folder: Path) -> dict[str, Path]:
    """Rate card, deployments map (with a PTU deployment) and budgets files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        "rate_card": folder / "rate_card.csv",
        "deployments": folder / "deployments.csv",
        "budgets": folder / "budgets.csv",
    }
    paths["rate_card"].write_text(RATE_CARD, encoding="utf-8")
    paths["deployments"].write_text(DEPLOYMENTS_WITH_PTU, encoding="utf-8")
    paths["budgets"].write_text(BUDGETS, encoding="utf-8")
    return paths


def ingest(store: Any, config: dict[str, Path], events: list[dict[str, Any]], deadletter: Path) -> Any:
    """Run events through the real pipeline into ``store``."""
    from chargeback.core.pipeline import Message, Source
    from chargeback.core.pricing import Pricer
    from chargeback.edges.deadletter import LocalDeadLetterStore
    from chargeback.jobs.ingest import ingest_batch

    pricer = Pricer.from_files(config["rate_card"], config["deployments"])
    messages = [Message(to_body(event), Source("file", "test", str(n))) for n, event in enumerate(events)]
    return ingest_batch(messages, pricer=pricer, writer=store, deadletter=LocalDeadLetterStore(deadletter))


def duplicated_copy(store: Any) -> Any:
    """An in-memory DuckDB holding the store's usage rows plus redeliveries, like Log Analytics (no key)."""
    import duckdb

    from chargeback.core.schema import ALERTS_TABLE
    from chargeback.edges.store import create_table_sql

    frame = store.connection.execute('SELECT * FROM "AOAIChargeback_CL"').df()
    connection = duckdb.connect()
    connection.register("source_rows", frame)
    connection.execute('CREATE TABLE "AOAIChargeback_CL" AS SELECT * FROM source_rows')
    connection.execute(
        """INSERT INTO "AOAIChargeback_CL" SELECT * FROM source_rows
           WHERE RIGHT("RequestId", 1) IN ('1', '4', '7')"""
    )
    connection.unregister("source_rows")
    connection.execute(create_table_sql(ALERTS_TABLE))
    return connection
