"""End to end through the Event Hub trigger: EventHubEvent batches in, rows and dead-letters out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import azure.functions as func
import duckdb
import pytest

import function_app
from chargeback import wiring as runtime
from chargeback.core.tokens import encoding_for_model
from chargeback.edges.deadletter import LocalDeadLetterStore
from tests.conftest import make_event, to_body

M = Decimal(1_000_000)


@pytest.fixture
def trigger(config_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The Event Hub trigger as the Functions host would call it, on a fresh local store."""
    card, deployments = config_files
    for name, value in {
        "CHARGEBACK_SINK": "duckdb",
        "CHARGEBACK_DUCKDB_PATH": str(tmp_path / "store.duckdb"),
        "DEADLETTER_PATH": str(tmp_path / "deadletter"),
        "RATE_CARD_PATH": str(card),
        "DEPLOYMENTS_PATH": str(deployments),
    }.items():
        monkeypatch.setenv(name, value)
    runtime.build_writer.cache_clear()
    runtime.build_deadletter.cache_clear()
    user_function = function_app.on_usage_events.build().get_user_function()
    yield user_function
    runtime.build_writer.cache_clear()


def hub_events(*bodies: bytes) -> list[func.EventHubEvent]:
    return [
        func.EventHubEvent(
            body=body,
            enqueued_time=datetime(2026, 10, 31, 23, 0, tzinfo=UTC),
            sequence_number=100 + i,
            offset=str(4096 * i),
            partition_key="team-a",
        )
        for i, body in enumerate(bodies)
    ]


def rows(tmp_path: Path) -> dict[str, dict[str, Any]]:
    runtime.build_writer.cache_clear()  # close the trigger's connection before reading the file
    with duckdb.connect(str(tmp_path / "store.duckdb"), read_only=True) as connection:
        cursor = connection.execute('SELECT * FROM "AOAIChargeback_CL"')
        names = [d[0] for d in cursor.description]
        return {row[1]: dict(zip(names, row, strict=True)) for row in cursor.fetchall()}


def dead_letters(tmp_path: Path) -> dict[str, str]:
    return {
        r.message.body.decode("utf-8", "replace"): r.reason.value
        for r in LocalDeadLetterStore(tmp_path / "deadletter").records()
    }


def test_trigger_is_an_event_hub_batch_trigger_with_identity_connection():
    """The function binds Event Hub with cardinality many, the EVENTHUB connection and a retry policy."""
    function = function_app.on_usage_events.build()
    built = json.loads(function.get_function_json())
    [binding] = built["bindings"]
    assert binding["type"] == "eventHubTrigger"
    assert binding["cardinality"].lower() == "many"
    assert binding["connection"] == "EVENTHUB"
    assert binding["eventHubName"] == "%EVENTHUB_NAME%"
    assert function.get_settings_dict("retry_policy")["strategy"] == "exponential_backoff"


def test_every_reject_reason_is_dead_lettered_and_good_events_are_stored(trigger, tmp_path: Path):
    """A mixed batch: good events become rows, each bad one a dead-letter with its own reason."""
    good = make_event()
    bad = {
        b"{not json": "invalid-json",
        b"\xff\xfe": "invalid-encoding",
        b"[]": "not-an-object",
        to_body(make_event(requestBody="x" * 1_100_000)): "body-too-large",
        to_body(make_event(schemaVersion="3")): "unknown-schema-version",
        to_body(make_event(subscriptionId=...)): "missing-field",
        to_body(make_event(statusCode="200")): "wrong-type",
        to_body(make_event(timestamp="yesterday")): "bad-timestamp",
        to_body(make_event(usage={"prompt_tokens": -1})): "negative-tokens",
        to_body(make_event(usage={"prompt_tokens": 10_000_001})): "tokens-too-large",
        to_body(
            make_event(usage={"prompt_tokens": 1, "prompt_tokens_details": {"cached_tokens": 2}})
        ): "cached-exceeds-prompt",
        to_body(
            make_event(
                usage={
                    "prompt_tokens": 1,
                    "completion_tokens": 1,
                    "completion_tokens_details": {"reasoning_tokens": 2},
                }
            )
        ): "reasoning-exceeds-completion",
    }
    trigger(hub_events(to_body(good), *bad))
    assert set(rows(tmp_path)) == {good["requestId"]}
    letters = dead_letters(tmp_path)
    expected = {body.decode("utf-8", "replace"): reason for body, reason in bad.items()}
    assert letters == expected


def test_dead_letter_records_where_the_event_came_from(trigger, tmp_path: Path):
    """A dead-letter keeps the partition, sequence number, offset and enqueued time for replay."""
    trigger(hub_events(to_body(make_event()), b"oops"))
    [record] = LocalDeadLetterStore(tmp_path / "deadletter").records()
    assert record.message.source.kind == "eventhub"
    assert record.message.source.name == "team-a"
    assert record.message.source.position == "seq=101;offset=4096"
    assert record.message.source.enqueued_time == "2026-10-31T23:00:00Z"


def test_duplicates_across_and_within_batches_are_charged_once(trigger, tmp_path: Path):
    """Event Hub redelivery (same RequestId) never adds a second row."""
    event = to_body(make_event())
    trigger(hub_events(event, event))
    trigger(hub_events(event))
    assert len(rows(tmp_path)) == 1


def test_usage_shapes_resolve_to_their_sources(trigger, tmp_path: Path):
    """Reported chat, Responses API, embeddings, stream usage chunk and recount land with their source."""
    enc = encoding_for_model("gpt-4o")
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name three rivers."}]
    deltas = ["Nile", ", Amazon", " and Danube."]
    sse_no_usage = (
        "".join(
            "data: " + json.dumps({"choices": [{"index": 0, "delta": {"content": d}}]}) + "\n\n"
            for d in deltas
        )
        + "data: [DONE]\n\n"
    )
    usage_chunk = {
        "choices": [],
        "usage": {"prompt_tokens": 21, "completion_tokens": 7, "prompt_tokens_details": {"cached_tokens": 0}},
    }
    sse_with_usage = sse_no_usage.replace(
        "data: [DONE]", "data: " + json.dumps(usage_chunk) + "\n\ndata: [DONE]"
    )
    events = {
        "chat": make_event(),
        "responses": make_event(
            usage={
                "input_tokens": 50,
                "output_tokens": 20,
                "input_tokens_details": {"cached_tokens": 10},
                "output_tokens_details": {"reasoning_tokens": 5},
            }
        ),
        "embeddings": make_event(
            deployment="embed",
            model="text-embedding-3-small",
            usage={"prompt_tokens": 12, "total_tokens": 12},
        ),
        "stream-usage": make_event(stream=True, usage=None, responseBody=sse_with_usage),
        "recount": make_event(
            stream=True,
            usage=None,
            responseBody=sse_no_usage,
            requestBody=json.dumps({"messages": messages, "stream": True}),
        ),
        "cut": make_event(
            stream=True,
            usage=None,
            truncated=True,
            responseBody=sse_no_usage[:30],
            requestBody=json.dumps({"messages": messages})[:40],
        ),
    }
    trigger(hub_events(*(to_body(e) for e in events.values())))
    got = rows(tmp_path)
    by = {name: got[e["requestId"]] for name, e in events.items()}
    assert {n: r["UsageSource"] for n, r in by.items()} == {
        "chat": "reported",
        "responses": "reported",
        "embeddings": "reported",
        "stream-usage": "stream-usage",
        "recount": "recounted",
        "cut": "estimated",
    }
    assert (
        by["responses"]["PromptTokens"],
        by["responses"]["CachedTokens"],
        by["responses"]["CompletionTokens"],
        by["responses"]["ReasoningTokens"],
    ) == (50, 10, 20, 5)
    assert (by["embeddings"]["CompletionTokens"], by["embeddings"]["TotalTokens"]) == (0, 12)
    assert (by["stream-usage"]["PromptTokens"], by["stream-usage"]["CompletionTokens"]) == (21, 7)
    # Hand count, cookbook formula: 3 per message + each string value + 3 reply priming.
    prompt = sum(3 + len(enc.encode(m["role"])) + len(enc.encode(m["content"])) for m in messages) + 3
    assert by["recount"]["PromptTokens"] == prompt
    assert by["recount"]["CompletionTokens"] == len(enc.encode("".join(deltas)))


def test_pricing_edges_land_on_the_rows(trigger, tmp_path: Path):
    """Price change mid-month, batch, data zone, blank cached price, unknown model and 429, per DESIGN."""
    usage = {
        "prompt_tokens": 2000,
        "completion_tokens": 500,
        "prompt_tokens_details": {"cached_tokens": 1000},
    }
    events = {
        "before-change": make_event(timestamp="2026-10-14T23:59:59Z", usage=usage),
        "after-change": make_event(timestamp="2026-10-15T00:00:00Z", usage=usage),
        "batch": make_event(deployment="mini-batch", model="gpt-4o-mini-2024-07-18", usage=usage),
        "datazone": make_event(deployment="chat-eu", usage=usage),
        "blank-cached": make_event(deployment="mini", model="gpt-4o-mini-2024-07-18", usage=usage),
        "unknown": make_event(deployment="lab", model="mystery-model-2026-01-01", usage=usage),
        "throttled": make_event(statusCode=429, usage=None, model=None),
    }
    trigger(hub_events(*(to_body(e) for e in events.values())))
    got = rows(tmp_path)
    by = {name: got[e["requestId"]] for name, e in events.items()}

    def cost(input_: str, cached: str, output: str) -> float:
        return float((1000 * Decimal(input_) + 1000 * Decimal(cached) + 500 * Decimal(output)) / M)

    assert by["before-change"]["TotalCost"] == pytest.approx(cost("5.00", "2.50", "15.00"), abs=1e-12)
    assert by["after-change"]["TotalCost"] == pytest.approx(cost("2.50", "1.25", "10.00"), abs=1e-12)
    assert by["batch"]["DeploymentType"] == "global-batch"
    assert by["batch"]["TotalCost"] == pytest.approx(cost("0.075", "0.075", "0.30"), abs=1e-12)
    assert by["datazone"]["TotalCost"] == pytest.approx(cost("2.75", "1.375", "11.00"), abs=1e-12)
    assert by["blank-cached"]["CachedInputCost"] == pytest.approx(1000 * 0.15 / 1e6, abs=1e-12)
    assert (by["unknown"]["PricingStatus"], by["unknown"]["TotalCost"], by["unknown"]["Model"]) == (
        "unpriced",
        None,
        "mystery-model",
    )
    assert (
        by["throttled"]["PricingStatus"],
        by["throttled"]["TotalCost"],
        by["throttled"]["TotalTokens"],
    ) == ("not-billable", 0.0, 0)
    assert all(r["RateCardVersion"].startswith("test-card+") for r in by.values())
