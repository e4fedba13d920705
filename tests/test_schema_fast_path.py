"""The validator's fast path: for any document it gives the full validator's answer, or defers to it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargeback.core.schema import _fast_event, _validate_event, decode_body, validate_event
from chargeback.errors import RejectedEvent
from tests.conftest import make_event

NOW = datetime(2026, 11, 1, tzinfo=UTC)

leaves = (
    st.none()
    | st.booleans()
    | st.integers(-3, 10_000_003)
    | st.sampled_from(["", " ", "\u2003", "x", "1", "2026-10-20T10:15:30Z", "2019-12-31T23:59:59Z"])
    | st.sampled_from(["2026-10-20T10:15:30+02:00", "2030-01-01T00:00:00Z", "2026-02-30T00:00:00Z"])
    | st.text(max_size=6)
    | st.just("x" * 257)
)
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=5,
)
FIELDS = [
    "schemaVersion",
    "requestId",
    "timestamp",
    "subscriptionId",
    "subscriptionName",
    "deployment",
    "model",
    "statusCode",
    "stream",
    "truncated",
    "servedFromCache",
    "responseCaptured",
    "requestBody",
    "tags",
    "usage",
]
USAGE_FIELDS = [
    "prompt_tokens",
    "completion_tokens",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "input_tokens_details",
    "completion_tokens_details",
    "output_tokens_details",
]
counts = st.integers(-2, 10_000_002) | st.none() | st.just("7") | st.just(True)
details: st.SearchStrategy[Any] = (
    st.none() | st.just([]) | st.dictionaries(st.sampled_from(["cached_tokens", "reasoning_tokens"]), counts)
)


def outcome(validate: Any, doc: dict[str, Any]) -> Any:
    try:
        return validate(doc, NOW)
    except RejectedEvent as exc:
        return (exc.reason, exc.field, exc.detail)


def full(doc: dict[str, Any]) -> Any:
    return outcome(_validate_event, doc)


@settings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(st.sampled_from(FIELDS), json_values | st.just(...), max_size=3),
    st.dictionaries(st.sampled_from(USAGE_FIELDS), counts | details | st.just(...), max_size=4),
)
def test_fast_path_never_disagrees_with_the_full_validator(changes: dict[str, Any], usage: dict[str, Any]):
    """Whatever the document, the fast path returns the full validator's Event or defers (None)."""
    doc = make_event(**changes)
    if isinstance(doc.get("usage"), dict):
        for key, value in usage.items():
            if value is ...:
                doc["usage"].pop(key, None)
            else:
                doc["usage"][key] = value
    fast = _fast_event(doc, NOW)
    expected = full(doc)
    if fast is not None:
        assert fast == expected
    assert outcome(lambda d, now: validate_event(d, now=now), doc) == expected


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"usage": None, "tags": {"project": "alpha", "team": "b"}},
        {"usage": {"input_tokens": 10, "output_tokens": 3, "input_tokens_details": {"cached_tokens": 4}}},
        {"usage": {"prompt_tokens": 8, "total_tokens": 8}},
        {"timestamp": "2026-10-20T12:15:30+02:00", "stream": True, "servedFromCache": True},
        {"stream": True, "responseCaptured": False, "requestBody": "{}"},
    ],
)
def test_fast_path_takes_ordinary_valid_events(overrides: dict[str, Any]):
    """The usual shapes go through the fast path and equal the full validator's Event."""
    doc = make_event(**overrides)
    fast = _fast_event(doc, NOW)
    assert fast is not None
    assert fast == _validate_event(doc, NOW)


def test_decode_keeps_the_json_loads_answer_for_a_second_byte_order_mark():
    """A body with two BOMs is invalid JSON, with json.loads' own message."""
    with pytest.raises(RejectedEvent, match="Unexpected UTF-8 BOM"):
        decode_body("\ufeff\ufeff{}".encode())


def _utf8_sig_answer(raw: bytes) -> tuple[str, Any]:
    """What the "utf-8-sig" codec, then the whole JSON decoder (NaN refused), say about a body."""
    import json

    def refuse(name: str) -> Any:
        raise ValueError(f"{name} is not valid JSON")

    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return "invalid-encoding", f"body is not UTF-8: {exc.reason}"
    try:
        if text.startswith("\ufeff"):
            return "ok", json.loads(text)
        return "ok", json.JSONDecoder(parse_constant=refuse).decode(text)
    except (ValueError, RecursionError) as exc:
        return "invalid-json", f"body is not JSON: {exc}"


def _decode_answer(raw: bytes) -> tuple[str, Any]:
    try:
        return "ok", decode_body(raw)
    except RejectedEvent as exc:
        return exc.reason.value, exc.detail


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.sampled_from(
            [b"\xef\xbb\xbf", b"\xef", b"\xbb", b"\xbf", b"\xff", b"{", b"}", b'"a"', b":", b"1", b" "]
        ),
        max_size=8,
    )
)
def test_decode_reads_a_byte_order_mark_as_utf_8_sig_does(parts: list[bytes]):
    """decode_body drops one leading BOM after a plain UTF-8 decode: the "utf-8-sig" answer."""
    raw = b"".join(parts)
    reason, expected = _utf8_sig_answer(raw)
    got = _decode_answer(raw)
    if reason == "ok" and not isinstance(expected, dict):
        assert got[0] == "not-an-object"
    else:
        assert got == (reason, expected)


JSON_STRUCTURE = (" ", "\n", "{", "}", "[", "]", '"a"', ":", ",", "1", "-")
JSON_PIECES = (*JSON_STRUCTURE, "NaN", "Infinity", "x", "null", "\ufeff")


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(JSON_PIECES), max_size=10))
def test_decode_answers_as_the_whole_json_decoder(parts: list[str]):
    """Whitespace, trailing text, NaN, no value: the same value or the same message as before."""
    raw = "".join(parts).encode()
    reason, expected = _utf8_sig_answer(raw)
    got = _decode_answer(raw)
    if reason == "ok" and not isinstance(expected, dict):
        assert got[0] == "not-an-object"
    else:
        assert got == (reason, expected)
