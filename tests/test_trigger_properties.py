"""Property tests: whatever bytes or JSON reach the Event Hub trigger, nothing escapes and nothing is lost."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import function_app
from chargeback import wiring as runtime
from chargeback.edges.deadletter import LocalDeadLetterStore
from chargeback.edges.store import DuckDBStore
from chargeback.settings import Settings
from tests.conftest import make_event, to_body

TRIGGER = function_app.on_usage_events.build().get_user_function()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=12,
)
FIELDS = [
    "schemaVersion",
    "requestId",
    "timestamp",
    "subscriptionId",
    "deployment",
    "statusCode",
    "usage",
    "tags",
]


@st.composite
def mutated_events(draw: Any) -> bytes:
    """A valid event with one contract field replaced by arbitrary JSON, or removed."""
    event = make_event(requestId=str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)))))
    field = draw(st.sampled_from(FIELDS))
    if draw(st.booleans()):
        event.pop(field, None)
    else:
        event[field] = draw(json_values)
    return json.dumps(event).encode()


bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda value: json.dumps(value).encode()),
    mutated_events(),
    st.just(b""),
    st.builds(lambda: to_body(make_event())),
)


@pytest.fixture
def trigger_env(tmp_path: Path, config_files, monkeypatch) -> Iterator[Path]:
    """Environment for the trigger: in-memory DuckDB sink, local dead-letter folder, test rate card."""
    card, deployments = config_files
    monkeypatch.setenv("CHARGEBACK_SINK", "duckdb")
    monkeypatch.setenv("CHARGEBACK_DUCKDB_PATH", ":memory:")
    monkeypatch.setenv("RATE_CARD_PATH", str(card))
    monkeypatch.setenv("DEPLOYMENTS_PATH", str(deployments))
    for name in ("STORAGE_CONNECTION_STRING", "STORAGE_BLOB_ENDPOINT", "DEADLETTER_CONTAINER"):
        monkeypatch.delenv(name, raising=False)
    yield tmp_path
    runtime.build_writer.cache_clear()
    runtime.build_deadletter.cache_clear()


def run_trigger(
    root: Path, batch: list[bytes], monkeypatch: pytest.MonkeyPatch
) -> tuple[set[str], list[bytes]]:
    """Run the trigger on a fresh store and folder; the table's RequestIds and the dead-lettered bodies."""
    folder = root / uuid.uuid4().hex
    monkeypatch.setenv("DEADLETTER_PATH", str(folder))
    runtime.build_writer.cache_clear()
    runtime.build_deadletter.cache_clear()
    TRIGGER([func.EventHubEvent(body=body, sequence_number=i) for i, body in enumerate(batch)])
    store = runtime.build_writer(Settings.from_env(os.environ))
    assert isinstance(store, DuckDBStore)
    table = {
        rid for (rid,) in store.connection.execute('SELECT "RequestId" FROM "AOAIChargeback_CL"').fetchall()
    }
    dead = [record.message.body for record in LocalDeadLetterStore(folder).records()]
    return table, dead


def accounted(body: bytes, table: set[str], dead: list[bytes]) -> bool:
    """An input is accounted for when its body is dead-lettered or its RequestId is in the table."""
    if body in dead:
        return True
    try:
        event = json.loads(body)
    except ValueError:
        return False
    return isinstance(event, dict) and event.get("requestId") in table


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(bodies, min_size=1, max_size=25))
def test_arbitrary_batches_are_fully_accounted_for(trigger_env, monkeypatch, batch):
    """No exception escapes the trigger; every input is in the table or the dead-letter."""
    table, dead = run_trigger(trigger_env, batch, monkeypatch)
    assert all(accounted(body, table, dead) for body in batch)
    assert len(table) + len(dead) <= len(batch)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(batch=st.lists(st.binary(min_size=1, max_size=2000), min_size=1, max_size=40))
def test_arbitrary_bytes_are_all_dead_lettered(trigger_env, monkeypatch, batch):
    """Random bytes are never charged: table + dead-letter == inputs, all of them dead-lettered."""
    table, dead = run_trigger(trigger_env, batch, monkeypatch)
    assert len(table) + len(dead) == len(batch)
    assert sorted(dead) == sorted(batch)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(copies=st.lists(st.integers(1, 4), min_size=1, max_size=10))
def test_redelivered_events_are_charged_once(trigger_env, monkeypatch, copies):
    """Valid events delivered several times in a batch: one row each, nothing dead-lettered."""
    events = [to_body(make_event()) for _ in copies]
    batch = [body for body, n in zip(events, copies, strict=True) for _ in range(n)]
    table, dead = run_trigger(trigger_env, batch, monkeypatch)
    assert (len(table), dead) == (len(events), [])
