"""The columnar path: the same rows, rejections and totals as the per-event path, on the same events."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargeback.core.columnar import ColumnBatch, build_columns
from chargeback.core.pipeline import Charge, Message, Row, Source, process_message
from chargeback.core.pricing import DeploymentMap, Pricer, RateCard
from chargeback.core.schema import NO_UNITS, USAGE_TABLE, _fast_event, decode_body, table_columns
from chargeback.edges.sinks import DeadLetter, WriteResult
from chargeback.edges.store import DuckDBStore, _column_arrays
from chargeback.jobs.ingest import IngestSummary, ingest_batch

NOW = datetime(2026, 11, 1, tzinfo=UTC)
SRC = Source("file", "events.jsonl")

# A v2 card with what the text pricer must get right: a price change mid-month, a version priced on
# its own from a later date, a blank cached price (the input's), a zero price, another currency, a
# model priced only from the future, and a deployment type the map sends to PTU.
CARD = """\
# version: columnar-card
model,deployment_type,effective_from,meter,unit,price,currency
gpt-4o,global,2024-01-01,input,1M tokens,5.00,USD
gpt-4o,global,2024-01-01,cached-input,1M tokens,2.50,USD
gpt-4o,global,2024-01-01,output,1M tokens,15.00,USD
gpt-4o,global,2026-10-15T12:00:00Z,input,1M tokens,2.50,USD
gpt-4o,global,2026-10-15T12:00:00Z,cached-input,1M tokens,1.25,USD
gpt-4o,global,2026-10-15T12:00:00Z,output,1M tokens,10.00,USD
gpt-4o-2024-05-13,global,2026-10-10,input,1M tokens,5.00,USD
gpt-4o-2024-05-13,global,2026-10-10,output,1M tokens,15.00,USD
gpt-4o,datazone,2024-01-01,input,1M tokens,2.75,USD
gpt-4o,datazone,2024-01-01,cached-input,1M tokens,1.375,USD
gpt-4o,datazone,2024-01-01,output,1M tokens,11.00,USD
gpt-4o-mini,global,2024-01-01,input,1K tokens,0.00015,USD
gpt-4o-mini,global,2024-01-01,cached-input,1M tokens,,USD
gpt-4o-mini,global,2024-01-01,output,1M tokens,0.60,USD
gpt-4o-mini,global-batch,2024-01-01,input,1M tokens,0.075,USD
gpt-4o-mini,global-batch,2024-01-01,output,1M tokens,0.30,USD
o4-mini,global,2024-01-01,input,1M tokens,1.10,USD
o4-mini,global,2024-01-01,cached-input,1M tokens,0.275,USD
o4-mini,global,2024-01-01,output,1M tokens,4.40,USD
text-embedding-3-small,global,2024-01-01,input,1M tokens,0.02,USD
text-embedding-3-small,global,2024-01-01,output,1M tokens,0,USD
mistral-large,global,2024-01-01,input,1M tokens,1.80,EUR
mistral-large,global,2024-01-01,output,1M tokens,5.40,EUR
future-model,global,2026-10-25,input,1M tokens,1.00,USD
future-model,global,2026-10-25,output,1M tokens,2.00,USD
"""
MAP = """\
deployment,model,deployment_type,ptu_monthly_cost,currency
chat,gpt-4o,global,,
chat-eu,gpt-4o,datazone,,
mini,gpt-4o-mini,global,,
mini-batch,gpt-4o-mini,GlobalBatch,,
reason,o4-mini,global,,
embed,text-embedding-3-small,global,,
ptu-chat,gpt-4o,ptu,1000,USD
"""
PRICER = Pricer(RateCard.parse(CARD.encode()), DeploymentMap.parse(MAP.encode()))
COLUMNS = table_columns(USAGE_TABLE)


def mostly(good: st.SearchStrategy[Any], odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``good`` eleven times in twelve, else ``odd``: batches mostly of valid events, with near misses."""
    return st.integers(0, 11).flatmap(lambda roll: good if roll < 11 else odd)


odd_names = st.sampled_from(
    ["", " ", "   ", "x" * 256, "x" * 257, "é" * 256, "é" * 257, "a\u2028", "\x7f"]
) | st.text(max_size=6)
ids = mostly(st.sampled_from(["r1", "r2", "r3"]) | st.uuids().map(str), odd_names)
names = mostly(st.sampled_from(["Team A", "Team B", "ünïcode team", None]), odd_names | st.integers())
deployments = mostly(
    st.sampled_from(
        ["chat", "chat-eu", "mini", "mini-batch", "reason", "embed", "ptu-chat", "gpt-4o", "CHAT"]
    ),
    st.sampled_from(["nowhere"]) | odd_names,
)
models = st.sampled_from(
    [
        None,
        "",
        "gpt-4o-2024-11-20",
        "gpt-4o-2024-05-13",
        "GPT-4o",
        "gpt-4o-mini",
        "o4-mini-2025-04-16",
        "mistral-large",
        "future-model",
        "text-embedding-3-small",
        "mystery-1",
    ]
)
odd_stamps = st.sampled_from(
    [
        "2026-10-15T11:59:59.9999999Z",
        "2026-10-15T12:00:00.0000000Z",
        "2026-10-09T23:59:59.9999999Z",
        "2026-10-10T00:00:00.0000000Z",
        "2026-10-25T00:00:00.0000001Z",
        "2026-11-02T00:00:00.0000009Z",
        "2026-11-02T00:00:01.0000000Z",
        "2019-12-31T23:59:59.9999999Z",
        "2020-01-01T00:00:00.0000000Z",
        "2024-02-29T12:00:00.0000000Z",
        "2026-02-29T12:00:00.0000000Z",
        "2026-13-01T00:00:00.0000000Z",
        "2026-10-20T24:00:00.0000000Z",
        "2026-10-20T23:60:00.0000000Z",
        "2026-10-20T23:59:60.0000000Z",
        "2026-10-20T10:15:30Z",
        "2026-10-20T10:15:30.5Z",
        "2026-10-20T10:15:30.123456+02:00",
        "2026-10-15T14:00:00.0000000+02:00",
        "2026-10-20T10:15:30.1234567z",
        "2026-10-20 10:15:30.1234567Z",
        "２０２６-10-20T10:15:30.1234567Z",
        "2026-10-20T10:15:3x.1234567Z",
        "0000-10-20T10:15:30.1234567Z",
        "9999-12-31T23:59:59.9999999Z",
        "9999-12-31T23:59:59.9999999-01:00",  # past datetime's range once in UTC
        "0001-01-01T00:00:00.0000000+01:00",
        "2026-10-20T10:15:30.1234567+00:60",
        "",
    ]
)
stamps = mostly(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2026, 11, 1)).map(
        lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}7Z"
    ),
    odd_stamps,
)
counts = mostly(
    st.integers(0, 3000) | st.just(0),
    st.sampled_from([10_000_000, 10_000_001, -1, 2**63, 2**64, None, 1.0, True, "5"]),
)
small = mostly(st.integers(0, 50) | st.just(0) | st.none(), st.sampled_from([-1, 1.5, False, 10**30]))
zero = mostly(st.sampled_from([0, None]), st.sampled_from([1, 0.0, False]))


@st.composite
def usages(draw: st.DrawFn) -> Any:
    """Chat, Responses and embeddings usage, and near misses: other types, details, shapes."""
    shape = draw(st.sampled_from(["chat", "chat", "responses", "embeddings", "null", "odd"]))
    if shape == "null":
        return draw(st.sampled_from([None, ...]))
    if shape == "odd":
        return draw(
            st.sampled_from(
                [
                    {"type": "duration", "seconds": 3},
                    {"prompt_tokens": 5, "input_token_details": {"audio_tokens": 0}},
                    {"total_tokens": 5},
                    [],
                    "usage",
                    {},
                ]
            )
        )
    prompt, completion = draw(counts), draw(counts)
    names = {
        "chat": ("prompt_tokens", "completion_tokens", "prompt_tokens_details", "completion_tokens_details"),
        "responses": ("input_tokens", "output_tokens", "input_tokens_details", "output_tokens_details"),
        "embeddings": ("prompt_tokens", None, None, None),
    }[shape]
    usage: dict[str, Any] = {names[0]: prompt}
    if names[1] is not None and draw(st.booleans()):
        usage[names[1]] = completion
    if draw(st.booleans()):
        usage["total_tokens"] = draw(counts)
    if names[2] is not None and draw(st.booleans()):
        usage[names[2]] = draw(
            st.sampled_from([None, {}])
            | st.fixed_dictionaries(
                {"cached_tokens": small},
                optional={"audio_tokens": zero, "image_tokens": zero, "text_tokens": zero},
            )
        )
    if names[3] is not None and draw(st.booleans()):
        usage[names[3]] = draw(
            st.sampled_from([None, {}])
            | st.fixed_dictionaries(
                {"reasoning_tokens": small},
                optional={"audio_tokens": zero, "accepted_prediction_tokens": zero, "other": zero},
            )
        )
    return usage


@st.composite
def events(draw: st.DrawFn) -> bytes:
    """One message body in and around the common shape, sometimes with a fault in its bytes."""
    event: dict[str, Any] = {
        "schemaVersion": draw(mostly(st.just("1"), st.sampled_from(["2", 1, ...]))),
        "requestId": draw(ids),
        "timestamp": draw(stamps),
        "subscriptionId": draw(mostly(st.sampled_from(["team-a", "team-b"]), odd_names)),
        "subscriptionName": draw(names),
        "deployment": draw(deployments),
        "model": draw(models),
        "statusCode": draw(
            mostly(
                st.sampled_from([200, 200, 201, 299, 429, 500, 404]),
                st.sampled_from([100, 199, 300, 599, 600, 200.0, "200"]),
            )
        ),
        "stream": draw(mostly(st.sampled_from([True, False, None]), st.just(1))),
        "servedFromCache": draw(st.sampled_from([False, False, True, None, ...])),
        "usage": draw(usages()),
        "tags": draw(
            mostly(
                st.sampled_from(
                    [None, {}, {"project": "alpha"}, {"b": "2", "a": "1"}, {"a": "1", "b": "2"}, ...]
                ),
                st.dictionaries(st.text(max_size=3), st.text(max_size=3) | st.integers(), max_size=3)
                | st.just({str(i): "x" for i in range(51)})
                | st.just({"k" * 129: "v"}),
            )
        ),
    }
    for name in ("productId", "userId", "apiId", "operationId", "apiVersion", "region", "backendId"):
        if draw(st.integers(0, 3)) == 0:
            event[name] = draw(names)
    extra = draw(st.integers(0, 16))
    if extra == 0:
        event["billableUnits"] = draw(st.sampled_from([None, {"images": 1}]))
    elif extra == 1:
        event["responseBody"] = draw(
            st.sampled_from([None, "", " ", '{"usage": {"prompt_tokens": 3}}', "data: x"])
        )
    elif extra == 2:
        event["requestBody"] = draw(st.sampled_from([None, "", "{}", "\ud800"]))
    elif extra == 3:
        event["somethingNew"] = 1
    elif extra == 4:
        event["responseCaptured"] = draw(st.sampled_from([False, True, None, 0]))
    elif extra == 5:
        event["truncated"] = draw(st.sampled_from([False, True, None]))
    event = {key: value for key, value in event.items() if value is not ...}
    body = json.dumps(event, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")
    fault = draw(st.integers(0, 40))
    if fault == 0:
        body = b"\xef\xbb\xbf" + body
    elif fault == 1:
        body = b" " + body + b" "
    elif fault == 2:
        body = body[:-1] + b', "statusCode": 500}'  # a duplicate key: the last one counts
    elif fault == 3:
        body = body.replace(b'"statusCode": 200', b'"statusCode": NaN')
    elif fault == 4:
        body = body + b"{}"
    elif fault == 5:
        body = body.replace(b"team-a", b"team-\\u0000a")
    elif fault == 6:
        body = body.replace(b"Team A", b"Team \xff")
    return body


def per_event(messages: Sequence[Message], positions: Sequence[int]) -> list[Row]:
    """The per-event path's rows of the messages at ``positions`` (each must be a charge)."""
    rows = []
    for position in positions:
        outcome = process_message(messages[position], PRICER, NOW)
        assert isinstance(outcome, Charge), (messages[position].body, outcome)
        rows.append(outcome.row)
    return rows


def assert_same_columns(columns: dict[str, Any], rows: list[Row]) -> None:
    assert list(columns) == [column.name for column in COLUMNS]
    if not rows:  # (``_column_arrays`` needs a row to transpose)
        assert all(len(array) == 0 for array in columns.values())
        return
    expected = _column_arrays(COLUMNS, rows)
    for column in COLUMNS:
        mine, theirs = columns[column.name], expected[column.name]
        assert mine.dtype == theirs.dtype, column.name
        if mine.dtype.kind == "f":
            assert np.array_equal(mine, theirs, equal_nan=True), (column.name, mine, theirs)
            assert np.array_equal(np.signbit(mine), np.signbit(theirs)), column.name
        else:
            assert mine.tolist() == theirs.tolist(), column.name
            assert [type(value) for value in mine.tolist()] == [type(v) for v in theirs.tolist()], column.name


def tallies_of(rows: list[Row], positions: Sequence[int]) -> Any:
    """The per-event path's summary lines of these rows, in its order, as ``Tallies`` holds them."""
    sources: dict[str, list[int]] = {}
    statuses: dict[str, list[int]] = {}
    costs: dict[tuple[str, str, str], list[Any]] = {}
    for position, row in zip(positions, rows, strict=True):
        sources.setdefault(row["UsageSource"], [position, 0])[1] += 1
        statuses.setdefault(row["PricingStatus"], [position, 0])[1] += 1
        key = (row["SubscriptionId"], row["SubscriptionName"], row["Currency"])
        entry = costs.setdefault(key, [position, 0, Decimal(0)])
        entry[1] += 1
        entry[2] += row["TotalCost"] or Decimal(0)
    return (
        [(first, value, count) for value, (first, count) in sources.items()],
        [(first, value, count) for value, (first, count) in statuses.items()],
        [(first, key, count, cost) for key, (first, count, cost) in costs.items()],
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(events(), min_size=1, max_size=8))
def test_columns_equal_the_per_event_rows_on_any_batch(bodies: list[bytes]):
    """What the columnar path takes, the per-event path charges: the same columns and totals."""
    messages = [Message(body, SRC) for body in bodies]
    batch = build_columns(messages, PRICER, NOW)
    positions = batch.positions.tolist()
    assert sorted(positions + batch.rest) == list(range(len(messages)))
    rows = per_event(messages, positions)
    assert_same_columns(batch.columns, rows)
    tallies = batch.tallies()
    sources, statuses, subscriptions = tallies_of(rows, positions)
    assert tallies.sources == sources
    assert tallies.statuses == statuses
    assert tallies.subscriptions == subscriptions
    assert [str(cost) for *_, cost in tallies.subscriptions] == [str(cost) for *_, cost in subscriptions]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"usage": {"input_tokens": 10, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 4}}},
        {"usage": {"prompt_tokens": 8, "total_tokens": 8}, "deployment": "embed", "model": None},
        {
            "deployment": "reason",
            "usage": {
                "prompt_tokens": 9,
                "completion_tokens": 7,
                "completion_tokens_details": {"reasoning_tokens": 5},
            },
        },
        {"deployment": "mini-batch", "model": "gpt-4o-mini"},
        {"deployment": "chat-eu", "servedFromCache": True},
        {"deployment": "ptu-chat"},
        {"deployment": "nowhere", "model": "mystery-1"},
        {"statusCode": 429, "usage": None},
        {"statusCode": 500},
        {"timestamp": "2026-10-20T12:15:30+02:00", "stream": True},
    ],
)
def test_the_common_shapes_go_the_columnar_way(overrides: dict[str, Any]):
    """Chat, Responses, embeddings, reasoning, batch, data zone, cache hits, PTU, unpriced, non-2xx: taken."""
    from tests.conftest import make_event

    message = Message(json.dumps(make_event(**overrides)).encode(), SRC)
    batch = build_columns([message], PRICER, NOW)
    assert batch.positions.tolist() == [0]
    assert_same_columns(batch.columns, per_event([message], [0]))


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (b'{"schemaVersion": "1"}', "required fields missing"),
        (b"[]", "not an object"),
        (b'\xef\xbb\xbf{"schemaVersion": "1"}', "a byte-order mark"),
    ],
)
def test_what_it_cannot_prove_is_left_to_the_per_event_path(body: bytes, why: str):
    """A message outside the common shape is in ``rest``, never a row."""
    batch = build_columns([Message(body, SRC)], PRICER, NOW)
    assert batch.rest == [0], why
    assert len(batch) == 0


def test_a_replayed_row_and_a_naive_clock_go_the_per_event_way():
    """Dead-lettered rows (replay-row) are not events; a naive ``now`` is the per-event path's to name."""
    from tests.conftest import make_event

    body = json.dumps(make_event()).encode()
    assert build_columns([Message(body, Source("replay-row"))], PRICER, NOW).rest == [0]
    assert build_columns([Message(body, SRC)], PRICER, datetime(2026, 11, 1)).rest == [0]


def test_the_demo_mix_goes_the_columnar_way():
    """Of the demo month's calls the per-event fast path takes with text meters, at least 99 % go columnar."""
    from chargeback.demo import TEAMS, Generator

    gen = Generator("2026-10", 7)
    weights = [team.weight for team in TEAMS]
    messages = []
    for _ in range(3000):
        body = gen.event(gen.rng.choices(TEAMS, weights)[0])
        if body["usage"] is None and body["statusCode"] < 400:
            body = {k: v for k, v in body.items() if k not in ("requestBody", "responseBody", "truncated")}
            body["usage"] = gen.chat_usage(reasoning=False)
        messages.append(Message(json.dumps(body).encode(), SRC))
    common = []
    for index, message in enumerate(messages):
        event = _fast_event(decode_body(message.body), NOW)
        if (  # text meters only: what _fast_event takes without billableUnits or a duration
            event is not None
            and event.units == NO_UNITS
            and event.usage is not None
            and event.usage.audio_seconds is None
        ):
            outcome = process_message(message, PRICER, NOW)
            assert isinstance(outcome, Charge)
            if all(
                outcome.row[name] == 0
                for name in ("AudioInputTokens", "AudioOutputTokens", "ImageOutputTokens")
            ):
                common.append(index)
    batch = build_columns(messages, PRICER, NOW)
    taken = set(batch.positions.tolist())
    assert len(common) > 2500
    assert len(taken & set(common)) >= 0.99 * len(common)
    assert len(taken) >= 0.9 * len(messages)


class _Letters:
    """A dead-letter store that keeps what it is given, in order."""

    def __init__(self) -> None:
        self.records: list[DeadLetter] = []

    def put(self, records: Sequence[DeadLetter]) -> None:
        self.records += records


class _RowsOnly:
    """A writer of rows only (as Log Analytics is) over a DuckDB store: the per-event path throughout."""

    def __init__(self, store: DuckDBStore) -> None:
        self.store = store

    def write(self, rows: Sequence[Row]) -> WriteResult:
        return self.store.write(rows)


def _table(store: DuckDBStore) -> list[tuple[Any, ...]]:
    return store.connection.execute(f'SELECT * FROM "{USAGE_TABLE}" ORDER BY "RequestId"').fetchall()


def _letters(letters: _Letters) -> list[tuple[Any, ...]]:
    return [(r.reason, r.detail, r.field, r.request_id, r.kind, r.message.body) for r in letters.records]


def _summary(summary: IngestSummary) -> tuple[Any, ...]:
    return (
        summary.received,
        summary.written,
        summary.duplicates,
        summary.dead_lettered,
        summary.displaced,
        list(summary.reasons.items()),
        list(summary.usage_sources.items()),
        list(summary.pricing_statuses.items()),
        [(key, str(cost)) for key, cost in summary.cost_by_subscription.items()],
        list(summary.requests_by_subscription.items()),
    )


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(events(), min_size=1, max_size=6), min_size=1, max_size=3))
def test_ingest_gives_the_same_table_letters_and_summary_either_way(batches: list[list[bytes]]):
    """Batch after batch (redeliveries, conflicts, poison): the row path's rows, dead letters and counts."""
    outcomes = []
    for columnar in (False, True):
        store = DuckDBStore(":memory:")
        writer = store if columnar else _RowsOnly(store)
        letters = _Letters()
        summaries = [
            _summary(
                ingest_batch(
                    [Message(body, SRC) for body in bodies],
                    pricer=PRICER,
                    writer=writer,
                    deadletter=letters,
                    now=NOW,
                    clock=lambda: NOW,
                )
            )
            for bodies in batches
        ]
        outcomes.append((summaries, _table(store), _letters(letters)))
        store.close()
    assert outcomes[0] == outcomes[1]


def test_a_redelivered_batch_is_all_duplicates_and_a_shared_id_goes_the_row_way(tmp_path: Path):
    """A key the store holds sends the batch down the row path: duplicates counted, nothing charged twice."""
    from tests.conftest import make_event

    bodies = [json.dumps(make_event(requestId=str(uuid.uuid4()))).encode() for _ in range(5)]
    twice = json.dumps(make_event(requestId="same", usage={"prompt_tokens": 3})).encode()
    store = DuckDBStore(tmp_path / "usage.duckdb")
    writer, letters = store, _Letters()
    first = ingest_batch(
        [Message(b, SRC) for b in [*bodies, twice, twice]],
        pricer=PRICER,
        writer=writer,
        deadletter=letters,
        now=NOW,
    )
    again = ingest_batch(
        [Message(b, SRC) for b in bodies], pricer=PRICER, writer=writer, deadletter=letters, now=NOW
    )
    assert (first.written, first.duplicates) == (6, 1)
    assert (again.written, again.duplicates) == (0, 5)
    assert again.cost_by_subscription == {}
    assert first.cost_by_subscription[("team-a", "Team A", "USD")] == Decimal(
        "0.0225075"
    )  # 5 x (1000 x 2.50 + 200 x 10.00) + 3 x 2.50, per 1M
    assert store.count() == 6
    store.close()


def test_a_batch_with_only_the_rest_or_nothing_is_accounted():
    """Empty batches and batches the columnar path takes nothing of are counted as before."""
    store = DuckDBStore(":memory:")
    writer, letters = store, _Letters()
    empty = ingest_batch([], pricer=PRICER, writer=writer, deadletter=letters, now=NOW)
    bad = ingest_batch([Message(b"{", SRC)], pricer=PRICER, writer=writer, deadletter=letters, now=NOW)
    assert (empty.received, empty.accounted) == (0, True)
    assert (bad.received, bad.dead_lettered, bad.reasons) == (1, 1, Counter({"invalid-json": 1}))
    store.close()


def test_column_batch_keep_moves_rows_to_the_rest():
    """Dropping rows keeps the columns aligned and hands their positions to the per-event path."""
    from tests.conftest import make_event

    messages = [Message(json.dumps(make_event()).encode(), SRC) for _ in range(3)]
    batch: ColumnBatch = build_columns(messages, PRICER, NOW)
    kept = batch.keep(np.array([True, False, True]))
    assert kept.positions.tolist() == [0, 2]
    assert kept.rest == [1]
    assert all(len(array) == 2 for array in kept.columns.values())


def test_tallies_of_many_subscriptions_keep_the_per_event_order_and_totals():
    """With more distinct keys than a scan suits, the summary lines are still the per-event path's."""
    from tests.conftest import make_event

    messages = [
        Message(
            json.dumps(
                make_event(subscriptionId=f"team-{i % 23}", statusCode=200 if i % 5 else 429)
            ).encode(),
            SRC,
        )
        for i in range(60)
    ]
    batch = build_columns(messages, PRICER, NOW)
    positions = batch.positions.tolist()
    assert positions == list(range(60))
    sources, statuses, subscriptions = tallies_of(per_event(messages, positions), positions)
    tallies = batch.tallies()
    assert (tallies.sources, tallies.statuses, tallies.subscriptions) == (sources, statuses, subscriptions)


class _CountingStore(DuckDBStore):
    """The real store, counting which of its two inserts ingest calls."""

    calls: Counter[str]

    def write(self, rows: Sequence[Row]) -> WriteResult:
        self.calls["write"] += 1
        return super().write(rows)

    def write_columns(self, columns: Any) -> WriteResult | None:
        self.calls["write_columns"] += 1
        return super().write_columns(columns)


def test_the_rest_rows_go_in_the_same_insert_as_the_columns():
    """A batch of common and unusual events is one insert: the per-event rows ride with the columns."""
    from tests.conftest import make_event

    usual = make_event()
    unusual = make_event(somethingNew=1, requestId="other")  # an unknown field: the per-event path
    store = _CountingStore(":memory:")
    store.calls = Counter()
    summary = ingest_batch(
        [Message(json.dumps(event).encode(), SRC) for event in (usual, unusual)],
        pricer=PRICER,
        writer=store,
        deadletter=_Letters(),
        now=NOW,
    )
    assert store.calls == Counter({"write_columns": 1})
    assert (summary.written, store.count()) == (2, 2)
    assert summary.requests_by_subscription == Counter({("team-a", "Team A", "USD"): 2})
    store.close()
