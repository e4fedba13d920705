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


# Modality details, durations and billableUnits: small counts so that parts often add up exactly.
small = st.integers(-1, 12) | st.none() | st.just(10_000_001) | st.just(True) | st.just("3")
durations = (
    st.integers(-1, 86_401)
    | st.floats()
    | st.sampled_from([0, 86_400, 86_400.0, 86_400.00000000001, -0.0, 5e-324, 0.1, 2.5])
    | st.none()
    | st.just(True)
    | st.just("3")
)
IN_KEYS = ["cached_tokens", "text_tokens", "audio_tokens", "image_tokens", "cached_tokens_details", "x"]
OUT_KEYS = [
    "reasoning_tokens",
    "text_tokens",
    "audio_tokens",
    "image_tokens",
    "accepted_prediction_tokens",
    "rejected_prediction_tokens",
    "x",
]
details_in: st.SearchStrategy[Any] = (
    st.dictionaries(st.sampled_from(IN_KEYS), small, max_size=4) | st.none() | st.just([])
)
details_out: st.SearchStrategy[Any] = (
    st.dictionaries(st.sampled_from(OUT_KEYS), small, max_size=4) | st.none() | st.just([])
)
modal_usage = st.fixed_dictionaries(
    {},
    optional={
        "prompt_tokens": small,
        "input_tokens": small,
        "completion_tokens": small,
        "output_tokens": small,
        "total_tokens": small,
        "prompt_tokens_details": details_in,
        "input_tokens_details": details_in,
        "input_token_details": details_in,
        "completion_tokens_details": details_out,
        "output_tokens_details": details_out,
        "type": st.sampled_from(["duration", "tokens"]) | st.none(),
        "seconds": durations,
    },
)
labels = (
    st.sampled_from(["1024x1024", " HD ", "Standard", "", " ", "x" * 64, "x" * 65, "a\x00", "b\u2028"])
    | st.sampled_from(["\u00a0hd", "\ud800", "\u202eq", "\x85"])
    | st.text(max_size=4)
    | st.none()
    | st.just(3)
)
units: st.SearchStrategy[Any] = (
    st.fixed_dictionaries(
        {},
        optional={
            "images": st.integers(-1, 1001) | st.none() | st.just(True) | st.just(1.0),
            "imageSize": labels,
            "imageQuality": labels,
            "characters": st.integers(-1, 10_000_001) | st.none() | st.just(False),
            "audioSeconds": durations,
            "voice": st.just("alloy"),
        },
    )
    | st.none()
    | st.just([])
)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(modal_usage | st.none(), units | st.just(...))
def test_fast_path_agrees_on_modalities_durations_and_billable_units(usage: Any, billable: Any):
    """Audio, image, prediction and duration usages and billableUnits: the full answer, or deferred."""
    doc = make_event(usage=usage, billableUnits=billable)
    fast = _fast_event(doc, NOW)
    expected = full(doc)
    if fast is not None:
        assert fast == expected
    assert outcome(lambda d, now: validate_event(d, now=now), doc) == expected


@st.composite
def consistent_usage(draw: st.DrawFn) -> dict[str, Any]:
    """A usage whose parts add up, in the names the fast path reads, maybe nudged by one somewhere."""
    text_in, audio_in, image_in = (draw(st.integers(0, 9)) for _ in range(3))
    text_out, audio_out, image_out = (draw(st.integers(0, 9)) for _ in range(3))
    prompt, completion = text_in + audio_in + image_in, text_out + audio_out + image_out
    inputs: dict[str, Any] = {
        "cached_tokens": draw(st.integers(0, prompt)),
        "text_tokens": text_in,
        "audio_tokens": audio_in,
        "image_tokens": image_in,
    }
    outputs: dict[str, Any] = {
        "reasoning_tokens": draw(st.integers(0, text_out)),
        "text_tokens": text_out,
        "audio_tokens": audio_out,
        "image_tokens": image_out,
        "accepted_prediction_tokens": draw(st.integers(0, completion)),
        "rejected_prediction_tokens": 0,
    }
    outputs["rejected_prediction_tokens"] = draw(
        st.integers(0, completion - outputs["accepted_prediction_tokens"])
    )
    names = draw(st.sampled_from([("prompt", "completion"), ("input", "output")]))
    usage: dict[str, Any] = {f"{names[0]}_tokens": prompt, f"{names[1]}_tokens": completion}
    usage["total_tokens"] = prompt + completion
    kept_in = draw(st.lists(st.sampled_from(sorted(inputs)), unique=True))
    kept_out = draw(st.lists(st.sampled_from(sorted(outputs)), unique=True))
    empty_in, empty_out = draw(st.booleans()), draw(st.booleans())
    if kept_in or empty_in:
        usage[f"{names[0]}_tokens_details"] = {key: inputs[key] for key in kept_in}
    if kept_out or empty_out:
        usage[f"{'completion' if names[1] == 'completion' else 'output'}_tokens_details"] = {
            key: outputs[key] for key in kept_out
        }
    nudge = draw(st.sampled_from([None, "in", "out", "top"]))
    if nudge == "top":
        usage[f"{names[0]}_tokens"] += draw(st.sampled_from([-1, 1]))
    elif nudge is not None:
        where = usage.get(f"{names[0]}_tokens_details" if nudge == "in" else f"{names[1]}_tokens_details")
        if where:
            key = draw(st.sampled_from(sorted(where)))
            where[key] += 1
    return usage


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(consistent_usage())
def test_fast_path_takes_every_valid_usage_of_known_details(usage: dict[str, Any]):
    """Parts that add up (edge-valid) are taken with the full answer; one nudged off by one is deferred."""
    doc = make_event(usage=usage)
    fast = _fast_event(doc, NOW)
    expected = full(doc)
    if isinstance(expected, tuple):
        assert fast is None
    else:
        assert fast == expected


@pytest.mark.parametrize(
    "overrides",
    [
        # audio chat (gpt-4o-audio): audio parts of prompt and completion
        {
            "usage": {
                "prompt_tokens": 508,
                "completion_tokens": 377,
                "total_tokens": 885,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 120},
                "completion_tokens_details": {"audio_tokens": 300, "reasoning_tokens": 0},
            }
        },
        # image generation (gpt-image-1): every output token is an image, with the image size and count
        {
            "usage": {
                "total_tokens": 4201,
                "input_tokens": 41,
                "output_tokens": 4160,
                "input_tokens_details": {"text_tokens": 41, "image_tokens": 0},
            },
            "billableUnits": {"images": 1, "imageSize": "1024x1024", "imageQuality": "HD "},
        },
        {"billableUnits": {"characters": 5579}},
        {"billableUnits": {"audioSeconds": 12.7}},
        {"billableUnits": {"audioSeconds": 86_400, "images": 1000, "characters": 10_000_000}},
        {"billableUnits": {"imageSize": "x" * 64, "imageQuality": None}},
        {"billableUnits": {}},
        {"usage": {"type": "duration", "seconds": 11}},
        {"usage": {"type": "duration", "seconds": 0.5}},
        {"usage": {"type": "duration", "seconds": 86_400.0}},
        # cached tokens beyond the text part overflow into audio, then image
        {
            "usage": {
                "prompt_tokens": 10,
                "completion_tokens": 0,
                "prompt_tokens_details": {
                    "cached_tokens": 9,
                    "text_tokens": 4,
                    "audio_tokens": 3,
                    "image_tokens": 3,
                },
            }
        },
        {
            "usage": {
                "prompt_tokens": 10,
                "completion_tokens": 6,
                "completion_tokens_details": {
                    "accepted_prediction_tokens": 4,
                    "rejected_prediction_tokens": 2,
                    "text_tokens": 6,
                },
            }
        },
    ],
)
def test_fast_path_takes_well_formed_non_text_meters(overrides: dict[str, Any]):
    """Audio and image details, durations and billableUnits that are valid go through the fast path."""
    doc = make_event(**overrides)
    fast = _fast_event(doc, NOW)
    assert fast is not None
    assert fast == _validate_event(doc, NOW)


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"usage": {"type": "duration", "seconds": 86_400.00000000001}}, "invalid-value"),
        ({"usage": {"type": "duration", "seconds": float("nan")}}, "invalid-value"),
        ({"usage": {"type": "duration"}}, "missing-field"),
        ({"usage": {"type": "duration", "seconds": True}}, "wrong-type"),
        ({"billableUnits": {"audioSeconds": float("inf")}}, "invalid-value"),
        ({"billableUnits": {"images": 1001}}, "invalid-value"),
        ({"billableUnits": {"images": True}}, "wrong-type"),
        ({"billableUnits": {"characters": -1}}, "invalid-value"),
        ({"billableUnits": {"imageSize": "x" * 65}}, "invalid-value"),
        ({"billableUnits": {"imageQuality": "hd\u202e"}}, "invalid-value"),
        ({"billableUnits": []}, "wrong-type"),
        (
            {
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": 0,
                    "prompt_tokens_details": {"text_tokens": 4, "audio_tokens": 3, "image_tokens": 4},
                }
            },
            "modality-mismatch",
        ),
        (
            {
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": 5,
                    "completion_tokens_details": {"reasoning_tokens": 3, "audio_tokens": 3},
                }
            },
            "modality-mismatch",
        ),
        (
            {
                "usage": {
                    "prompt_tokens": 10,
                    "completion_tokens": 5,
                    "completion_tokens_details": {
                        "accepted_prediction_tokens": 3,
                        "rejected_prediction_tokens": 3,
                    },
                }
            },
            "modality-mismatch",
        ),
    ],
)
def test_fast_path_defers_near_misses_to_the_full_validator(overrides: dict[str, Any], reason: str):
    """A value just out of range or parts that do not add up: deferred, and the full path names it."""
    doc = make_event(**overrides)
    assert _fast_event(doc, NOW) is None
    with pytest.raises(RejectedEvent) as caught:
        validate_event(doc, now=NOW)
    assert caught.value.reason.value == reason


@pytest.mark.parametrize(
    "overrides",
    [
        {"billableUnits": {"imageSize": "\u00a0hd"}},  # printable to the full path's check, not isprintable()
        {"billableUnits": {"voice": "alloy"}},  # a field the contract does not read
        {
            "usage": {
                "prompt_tokens": 3,
                "prompt_tokens_details": {"cached_tokens_details": {"text_tokens": 0}},
            }
        },
    ],
)
def test_fast_path_defers_shapes_it_does_not_read(overrides: dict[str, Any]):
    """Valid shapes outside the fast path's checks go the full way and are accepted there."""
    doc = make_event(**overrides)
    assert _fast_event(doc, NOW) is None
    assert validate_event(doc, now=NOW) == _validate_event(doc, NOW)
