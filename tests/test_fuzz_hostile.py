"""Hostile unicode in every string field: every event accounted for once, every stored output readable.

Each example is a batch of events whose string fields (ids, names, tags, bodies, the timestamp)
are drawn from lone surrogates, C0/C1 controls, bidi controls, markup, formulas, long runs of
whitespace and plain text. The batch goes through the Event Hub trigger's own handler into a real
DuckDB file and a real dead-letter folder, and then both are read back.

``CHARGEBACK_FUZZ_EXAMPLES`` raises the number of examples for a longer run (CI runs the default).
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargeback import wiring as runtime
from chargeback.edges.deadletter import LocalDeadLetterStore
from tests.conftest import DEPLOYMENTS, RATE_CARD, make_event

EXAMPLES = int(os.environ.get("CHARGEBACK_FUZZ_EXAMPLES", "60"))
STRING_FIELDS = (
    "requestId",
    "timestamp",
    "subscriptionId",
    "subscriptionName",
    "productId",
    "userId",
    "apiId",
    "operationId",
    "deployment",
    "model",
    "apiVersion",
    "region",
    "backendId",
    "requestBody",
    "responseBody",
)
NASTY = [
    "\ud800",
    "\udfff",
    "a\udbff\udc00b",  # a valid pair written as two escapes: fine, one character
    "\x00",
    "\x1b[2J",
    "\r\n",
    "\u2028",
    "\u202e",
    "\u2066x\u2069",
    "\u200f",
    "\ufeff",
    "\uffff",
    "[/bold]",
    "[red]x[/red]",
    '=HYPERLINK("http://x","y")',
    "+1+cmd|'/C calc'!A0",
    "@SUM(1)",
    "<!channel>",
    "\U0001f600",
    "e\u0301",
]
any_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
hostile_text = st.one_of(
    st.sampled_from(NASTY),
    st.text(any_char, max_size=40),
    st.lists(st.sampled_from(NASTY), min_size=1, max_size=6).map("".join),
    st.builds(lambda c, n: c * n, st.sampled_from([" ", "\t", "a", "\u3000", "\n"]), st.integers(1000, 5000)),
    st.builds(lambda c, n: c * n, st.sampled_from(["x", "\u00e9", "\ud800"]), st.integers(250, 300)),
)


@st.composite
def hostile_event(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with some string fields (and tags) replaced by hostile text."""
    event = make_event(requestId=str(uuid.uuid4()))
    if draw(st.booleans()):
        event["usage"] = None  # then the bodies are recounted
    for name in draw(st.lists(st.sampled_from(STRING_FIELDS), max_size=4, unique=True)):
        event[name] = draw(hostile_text)
    if draw(st.booleans()):
        event["tags"] = draw(st.dictionaries(hostile_text, hostile_text, max_size=3))
    return event


def _body(event: dict[str, Any]) -> bytes:
    # json.dumps escapes lone surrogates (\ud800): a valid JSON body, as an attacker could send.
    return json.dumps(event).encode("utf-8")


def _stored_rows(db: Path) -> list[tuple[Any, ...]]:
    runtime.build_writer.cache_clear()  # the handler's connection closes; the file is read anew
    with duckdb.connect(str(db), read_only=True) as connection:
        return connection.execute('SELECT * FROM "AOAIChargeback_CL"').fetchall()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(hostile_event(), min_size=1, max_size=6))
def test_every_hostile_event_is_accounted_for_once_and_every_output_reads_back(events: list[dict[str, Any]]):
    """Trigger handler → DuckDB + dead-letter folder: one outcome per event, all of it readable."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "rate_card.csv").write_text(RATE_CARD, encoding="utf-8")
        (root / "deployments.csv").write_text(DEPLOYMENTS, encoding="utf-8")
        environ = {
            "CHARGEBACK_SINK": "duckdb",
            "CHARGEBACK_DUCKDB_PATH": str(root / "store.duckdb"),
            "DEADLETTER_PATH": str(root / "deadletter"),
            "RATE_CARD_PATH": str(root / "rate_card.csv"),
            "DEPLOYMENTS_PATH": str(root / "deployments.csv"),
        }
        bodies = [_body(event) for event in events]
        hub = [
            func.EventHubEvent(
                body=body, enqueued_time=datetime(2026, 10, 31, tzinfo=UTC), sequence_number=i, offset=str(i)
            )
            for i, body in enumerate(bodies)
        ]
        runtime.build_writer.cache_clear()
        runtime.build_deadletter.cache_clear()
        summary = runtime.handle_event_hub_batch(hub, environ=environ)

        assert summary.received == len(events)
        assert summary.accounted
        rows = _stored_rows(root / "store.duckdb")
        dead = list(LocalDeadLetterStore(root / "deadletter").records())
        assert len(rows) == summary.written
        assert len(dead) == summary.dead_lettered
        # Every stored string is text a file, a CSV or a terminal can hold (no lone surrogate).
        for row in rows:
            for value in row:
                if isinstance(value, str):
                    value.encode("utf-8")
        # Each body is in exactly one place: a row (by RequestId) or a dead-letter (byte for byte);
        # only a repeated RequestId in the batch may be a duplicate instead.
        stored_ids = [row[1] for row in rows]
        assert len(stored_ids) == len(set(stored_ids))
        dead_bodies = [record.message.body for record in dead]
        assert len(dead_bodies) == len(set(dead_bodies)) or len(set(bodies)) < len(bodies)
        for body in bodies:
            # The id as the body says it: "\\udbff\\udc00" escapes one astral character (a pair),
            # not the two lone surrogates the generated dict held.
            charged = json.loads(body).get("requestId") in stored_ids
            assert charged or body in dead_bodies or summary.duplicates > 0
