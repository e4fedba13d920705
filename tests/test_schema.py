"""Event contract v1: every reject reason, the normalised usage shapes, and agreement with the JSON Schema."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chargeback.core.schema import (
    MAX_BODY_BYTES,
    MAX_ID_LENGTH,
    MAX_TAG_KEY_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    MAX_TAGS,
    ReportedUsage,
    event_json_schema,
    parse_event,
    parse_usage,
    table_columns,
    validate_event,
)
from chargeback.errors import Reason, RejectedEvent
from tests.conftest import make_event, to_body

NOW = datetime(2026, 11, 1, tzinfo=UTC)


def reason_of(body: bytes | str) -> Reason:
    with pytest.raises(RejectedEvent) as caught:
        parse_event(body, now=NOW)
    return caught.value.reason


def test_valid_event_parses_with_defaults_for_absent_optionals():
    """A minimal valid event parses; absent optional strings are empty and flags false."""
    event = parse_event(to_body(make_event(subscriptionName=..., stream=...)), now=NOW)
    assert event.subscription_id == "team-a"
    assert event.subscription_name == ""
    assert event.stream is False
    assert event.timestamp == datetime(2026, 10, 20, 10, 15, 30, 123456, tzinfo=UTC)
    assert event.usage == ReportedUsage(1000, 200, 0, 0)


def test_unknown_fields_are_ignored():
    """Forward compatibility: extra fields do not reject the event."""
    event = parse_event(to_body(make_event(somethingNew={"a": 1}, another=3)), now=NOW)
    assert event.request_id


def test_offset_timestamps_are_converted_to_utc():
    """A timestamp with a +02:00 offset becomes the same instant in UTC."""
    event = parse_event(to_body(make_event(timestamp="2026-10-20T12:00:00+02:00")), now=NOW)
    assert event.timestamp == datetime(2026, 10, 20, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", Reason.INVALID_JSON),
        (b'{"a": NaN}', Reason.INVALID_JSON),
        (b"", Reason.INVALID_JSON),
        (b"\xff\xfe\x00", Reason.INVALID_ENCODING),
        (b"[1,2]", Reason.NOT_AN_OBJECT),
        (b'"text"', Reason.NOT_AN_OBJECT),
        (b"null", Reason.NOT_AN_OBJECT),
    ],
)
def test_bodies_that_are_not_json_objects_are_rejected(body: bytes, reason: Reason):
    """Non-JSON, non-UTF-8 and non-object bodies each get their own reason code."""
    assert reason_of(body) == reason


def test_body_over_one_megabyte_is_rejected():
    """A body over 1 MB is rejected before parsing."""
    big = to_body(make_event(requestBody="x" * MAX_BODY_BYTES))
    assert reason_of(big) == Reason.BODY_TOO_LARGE


@pytest.mark.parametrize(
    "name", ["schemaVersion", "requestId", "timestamp", "subscriptionId", "deployment", "statusCode"]
)
@pytest.mark.parametrize("value", [..., None])
def test_missing_or_null_required_fields_are_rejected(name: str, value: Any):
    """Each required field, absent or null, is a missing-field rejection naming the field."""
    with pytest.raises(RejectedEvent) as caught:
        parse_event(to_body(make_event(**{name: value})), now=NOW)
    assert caught.value.reason == Reason.MISSING_FIELD
    assert caught.value.field == name


def test_empty_required_string_is_missing():
    """A blank subscriptionId is as good as absent."""
    assert reason_of(to_body(make_event(subscriptionId="  "))) == Reason.MISSING_FIELD


@pytest.mark.parametrize(
    "overrides",
    [
        {"requestId": 42},
        {"statusCode": "200"},
        {"statusCode": 200.0},
        {"statusCode": True},
        {"stream": "yes"},
        {"servedFromCache": 1},
        {"model": 4},
        {"usage": [1, 2]},
        {"usage": {"prompt_tokens": "10"}},
        {"usage": {"prompt_tokens": 10.5}},
        {"usage": {"prompt_tokens": 10, "prompt_tokens_details": 3}},
        {"tags": ["a"]},
        {"tags": {"project": 1}},
        {"timestamp": 1700000000},
        {"requestBody": {"messages": []}},
    ],
)
def test_wrong_types_are_rejected(overrides: dict[str, Any]):
    """Every typed field refuses a value of another JSON type."""
    assert reason_of(to_body(make_event(**overrides))) == Reason.WRONG_TYPE


@pytest.mark.parametrize(
    "timestamp",
    [
        "2026-10-20",
        "2026-10-20 10:00:00Z",
        "2026-10-20T10:00:00",
        "20/10/2026",
        "2026-02-30T00:00:00Z",
        "2019-12-31T23:59:59Z",
        "2026-11-03T00:00:00Z",
        "9999-12-31T23:59:59-01:00",  # past datetime's range once in UTC (OverflowError)
        "0001-01-01T00:00:00+01:00",
        "2026-10-20T10:15:30+00:60",  # no such offset (fromisoformat reads it as +01:00)
        "2026-10-20T10:15:30.1234567-01:99",
    ],
)
def test_bad_timestamps_are_rejected(timestamp: str):
    """Timestamps must be ISO-8601 with an offset, real dates, after 2020 and not in the future."""
    assert reason_of(to_body(make_event(timestamp=timestamp))) == Reason.BAD_TIMESTAMP


def test_unknown_schema_version_is_rejected():
    """A schemaVersion other than "1" is refused with its own code."""
    assert reason_of(to_body(make_event(schemaVersion="2"))) == Reason.UNKNOWN_SCHEMA_VERSION


def test_status_outside_http_range_is_invalid():
    """statusCode must be an HTTP status."""
    assert reason_of(to_body(make_event(statusCode=99))) == Reason.INVALID_VALUE


@pytest.mark.parametrize(
    ("usage", "reason"),
    [
        ({"prompt_tokens": -1, "completion_tokens": 0}, Reason.NEGATIVE_TOKENS),
        ({"prompt_tokens": 1, "completion_tokens": -5}, Reason.NEGATIVE_TOKENS),
        ({"prompt_tokens": 10_000_001, "completion_tokens": 0}, Reason.TOKENS_TOO_LARGE),
        ({"input_tokens": 5, "output_tokens": 10_000_001}, Reason.TOKENS_TOO_LARGE),
        (
            {"prompt_tokens": 10, "completion_tokens": 1, "prompt_tokens_details": {"cached_tokens": 11}},
            Reason.CACHED_EXCEEDS_PROMPT,
        ),
        (
            {
                "prompt_tokens": 10,
                "completion_tokens": 1,
                "completion_tokens_details": {"reasoning_tokens": 2},
            },
            Reason.REASONING_EXCEEDS_COMPLETION,
        ),
        (
            {"input_tokens": 10, "output_tokens": 1, "output_tokens_details": {"reasoning_tokens": 2}},
            Reason.REASONING_EXCEEDS_COMPLETION,
        ),
    ],
)
def test_token_arithmetic_violations_are_rejected(usage: dict[str, Any], reason: Reason):
    """Negative, oversized and inconsistent token counts each have a reason code."""
    assert reason_of(to_body(make_event(usage=usage))) == reason


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        ({"prompt_tokens": 12, "total_tokens": 12}, ReportedUsage(12, 0, 0, 0)),
        (
            {
                "input_tokens": 30,
                "output_tokens": 20,
                "input_tokens_details": {"cached_tokens": 10},
                "output_tokens_details": {"reasoning_tokens": 5},
            },
            ReportedUsage(30, 20, 10, 5),
        ),
        (
            {
                "prompt_tokens": 100,
                "completion_tokens": 50,
                "prompt_tokens_details": {"cached_tokens": 64},
                "completion_tokens_details": {"reasoning_tokens": 20},
            },
            ReportedUsage(100, 50, 64, 20),
        ),
        (
            {"prompt_tokens": 5, "completion_tokens": 7, "prompt_tokens_details": None},
            ReportedUsage(5, 7, 0, 0),
        ),
        ({}, None),
        ({"total_tokens": 9}, None),
        (None, None),
    ],
)
def test_usage_shapes_are_normalised(usage: Any, expected: ReportedUsage | None):
    """Chat, Responses API and embeddings usage become one shape; no prompt count means no usage."""
    assert parse_event(to_body(make_event(usage=usage)), now=NOW).usage == expected


def test_too_many_tags_are_rejected():
    """More than 50 tags is too-many-tags (tags are allocation dimensions, not payloads)."""
    tags = {f"k{i}": "v" for i in range(51)}
    assert reason_of(to_body(make_event(tags=tags))) == Reason.TOO_MANY_TAGS


def test_table_columns_match_design():
    """The usage table has DESIGN's 32 columns in order, then the additive ones (UsageRevision, ...)."""
    names = [c.name for c in table_columns()]
    assert names[:3] == ["TimeGenerated", "RequestId", "SubscriptionId"]
    assert names[30:32] == ["Tags", "EventSchemaVersion"]
    assert {"UsageRevision", "UsageUnknown"} <= set(names[32:])
    assert {c.name: c.type for c in table_columns()}["UsageRevision"] == "int"
    assert {c.type for c in table_columns()} <= {
        "string",
        "int",
        "long",
        "real",
        "boolean",
        "dateTime",
        "dynamic",
    }


VALIDATOR = jsonschema.Draft202012Validator(event_json_schema(), format_checker=jsonschema.FormatChecker())


def test_sample_event_is_valid_against_the_published_schema():
    """The fixture event satisfies the JSON Schema the policy tests use."""
    VALIDATOR.validate(make_event())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 20_000_000) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
mutations = st.dictionaries(
    st.sampled_from(
        [
            "schemaVersion",
            "requestId",
            "timestamp",
            "subscriptionId",
            "deployment",
            "statusCode",
            "stream",
            "model",
            "tags",
            "usage",
            "truncated",
        ]
    ),
    json_values | st.just(...),
    max_size=3,
)
usage_mutations = st.dictionaries(
    st.sampled_from(["prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "total_tokens"]),
    st.integers(-3, 10_000_003) | st.just("7") | st.none(),
    max_size=4,
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(mutations, usage_mutations)
def test_validator_accepts_exactly_what_the_json_schema_accepts(
    changes: dict[str, Any], usage: dict[str, Any]
):
    """Where the JSON Schema can judge (single fields), the hand validator agrees with it."""
    event = make_event(**changes)
    if isinstance(event.get("usage"), dict) and usage:
        event["usage"] = {**event["usage"], **usage}
    try:
        VALIDATOR.validate(event)
        schema_ok = True
    except jsonschema.ValidationError:
        schema_ok = False
    try:
        parse_event(json.dumps(event), now=NOW)
        python_ok = True
    except RejectedEvent as exc:
        python_ok = False
        cross_field = exc.reason in (Reason.CACHED_EXCEEDS_PROMPT, Reason.REASONING_EXCEEDS_COMPLETION)
        if cross_field or (exc.reason == Reason.BAD_TIMESTAMP and schema_ok):
            return  # rules the JSON Schema cannot express (cross-field, calendar, clock)
        if exc.reason == Reason.MISSING_FIELD and schema_ok:
            return  # blank strings: the schema only says minLength 1
        if exc.reason in (Reason.CONTROL_CHARACTERS, Reason.UNENCODABLE_TEXT) and schema_ok:
            return  # text rules the schema states in its description, not as a pattern
    assert python_ok == schema_ok, (event, python_ok, schema_ok)


# --- Usage breakdowns by modality (documented payload shapes) ----------------------------------

# Chat completions with audio output (gpt-4o-audio-preview): completion_tokens_details.audio_tokens.
CHAT_AUDIO = {
    "prompt_tokens": 28,
    "completion_tokens": 653,
    "total_tokens": 681,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 589,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
# Predicted outputs: accepted and rejected prediction tokens are inside completion_tokens.
CHAT_PREDICTION = {
    "prompt_tokens": 124,
    "completion_tokens": 77,
    "total_tokens": 201,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 0,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 18,
        "rejected_prediction_tokens": 10,
    },
}
# Realtime response.done usage: input_token_details (singular "token") with a cached split.
REALTIME = {
    "total_tokens": 253,
    "input_tokens": 132,
    "output_tokens": 121,
    "input_token_details": {
        "text_tokens": 119,
        "audio_tokens": 13,
        "cached_tokens": 64,
        "cached_tokens_details": {"text_tokens": 64, "audio_tokens": 0},
    },
    "output_token_details": {"text_tokens": 30, "audio_tokens": 91},
}
# Images API (gpt-image-1): input text/image tokens; output_tokens are the output image's tokens.
IMAGE_GENERATION = {
    "total_tokens": 4210,
    "input_tokens": 50,
    "output_tokens": 4160,
    "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
}
# Transcription (gpt-4o-transcribe): usage.type "tokens", audio input; whisper: "duration".
TRANSCRIPTION_TOKENS = {
    "type": "tokens",
    "input_tokens": 14,
    "input_token_details": {"text_tokens": 0, "audio_tokens": 14},
    "output_tokens": 45,
    "total_tokens": 59,
}
TRANSCRIPTION_DURATION = {"type": "duration", "seconds": 3}


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (
            CHAT_AUDIO,
            ReportedUsage(28, 653, audio_completion_tokens=589),
        ),
        (
            CHAT_PREDICTION,
            ReportedUsage(124, 77, accepted_prediction_tokens=18, rejected_prediction_tokens=10),
        ),
        (
            REALTIME,
            ReportedUsage(132, 121, 64, audio_prompt_tokens=13, audio_completion_tokens=91),
        ),
        (
            IMAGE_GENERATION,
            ReportedUsage(50, 4160, image_prompt_tokens=40, image_completion_tokens=4160),
        ),
        (
            TRANSCRIPTION_TOKENS,
            ReportedUsage(14, 45, audio_prompt_tokens=14),
        ),
        (
            TRANSCRIPTION_DURATION,
            ReportedUsage(0, 0, audio_seconds=Decimal(3)),
        ),
        (
            {"prompt_tokens": 8, "total_tokens": 8},
            ReportedUsage(8, 0),
        ),
        (
            # Responses API with image input reported by the service.
            {
                "input_tokens": 900,
                "input_tokens_details": {"cached_tokens": 100, "image_tokens": 765},
                "output_tokens": 40,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 940,
            },
            # cached tokens are text first: 135 text tokens hold all 100 cached ones.
            ReportedUsage(900, 40, 100, image_prompt_tokens=765),
        ),
        (
            # Realtime with a cached audio part.
            {
                "input_tokens": 500,
                "output_tokens": 10,
                "input_token_details": {
                    "text_tokens": 100,
                    "audio_tokens": 400,
                    "cached_tokens": 300,
                    "cached_tokens_details": {"text_tokens": 80, "audio_tokens": 220},
                },
                "output_token_details": {"text_tokens": 10, "audio_tokens": 0},
            },
            ReportedUsage(500, 10, 300, audio_prompt_tokens=400, cached_audio_tokens=220),
        ),
    ],
    ids=[
        "chat-audio",
        "chat-prediction",
        "realtime",
        "image-generation",
        "transcription-tokens",
        "transcription-duration",
        "embeddings",
        "responses-image-input",
        "realtime-cached-audio",
    ],
)
def test_usage_breakdowns_are_kept_by_modality(usage: dict[str, Any], expected: ReportedUsage):
    """Every breakdown the service reports is kept: audio, image, cached split, predictions, seconds."""
    assert parse_usage(usage) == expected
    # The same event through the fast path and the full validator gives the same usage.
    assert validate_event(json.loads(to_body(make_event(usage=usage)))).usage == expected


@pytest.mark.parametrize(
    "usage",
    [
        # text + audio named and not adding up to the total
        {**REALTIME, "input_tokens": 133},
        {**REALTIME, "output_token_details": {"text_tokens": 30, "audio_tokens": 92}},
        # audio larger than the whole prompt
        {"prompt_tokens": 10, "completion_tokens": 1, "prompt_tokens_details": {"audio_tokens": 11}},
        # cached split that does not add up to cached_tokens
        {
            "input_tokens": 50,
            "output_tokens": 1,
            "input_token_details": {
                "text_tokens": 40,
                "audio_tokens": 10,
                "cached_tokens": 20,
                "cached_tokens_details": {"text_tokens": 15, "audio_tokens": 6},
            },
        },
        # prediction tokens beyond the completion
        {
            "prompt_tokens": 5,
            "completion_tokens": 4,
            "completion_tokens_details": {"rejected_prediction_tokens": 5},
        },
        # reasoning beyond the text part of the completion
        {
            "prompt_tokens": 5,
            "completion_tokens": 10,
            "completion_tokens_details": {"reasoning_tokens": 8, "audio_tokens": 5},
        },
    ],
    ids=[
        "input-parts",
        "output-parts",
        "audio-over-prompt",
        "cached-split",
        "prediction",
        "reasoning-vs-audio",
    ],
)
def test_inconsistent_modality_totals_are_rejected(usage: dict[str, Any]):
    """Parts that do not add up to what the service reported are a modality-mismatch, never priced."""
    assert reason_of(to_body(make_event(usage=usage))) == Reason.MODALITY_MISMATCH


def test_billable_units_of_non_token_calls_are_read():
    """billableUnits carry images, size, quality, characters, seconds; v1 events without them stay valid."""
    doc = json.loads(
        to_body(
            make_event(
                billableUnits={
                    "images": 2,
                    "imageSize": "1024x1792",
                    "imageQuality": "HD",
                    "audioSeconds": 12.5,
                }
            )
        )
    )
    units = validate_event(doc).units
    assert (units.images, units.image_size, units.image_quality) == (2, "1024x1792", "hd")
    assert units.audio_seconds == Decimal("12.5")
    assert validate_event(json.loads(to_body(make_event()))).units.images == 0


@pytest.mark.parametrize(
    ("units", "reason"),
    [
        ({"images": -1}, Reason.INVALID_VALUE),
        ({"images": "2"}, Reason.WRONG_TYPE),
        ({"characters": 1.5}, Reason.WRONG_TYPE),
        ({"audioSeconds": True}, Reason.WRONG_TYPE),
        ({"audioSeconds": 1e9}, Reason.INVALID_VALUE),
        ({"imageSize": "x" * 65}, Reason.INVALID_VALUE),
        ([], Reason.WRONG_TYPE),
    ],
)
def test_bad_billable_units_are_rejected(units: Any, reason: Reason):
    """A billableUnits field of the wrong type or out of range is rejected with its reason."""
    assert reason_of(to_body(make_event(billableUnits=units))) == reason


def test_the_published_contract_states_the_validators_string_bounds():
    """event.v1.schema.json says what parse_event enforces: 256 for names, 128/256 for tag keys/values."""
    properties = event_json_schema()["properties"]
    for name in ("subscriptionName", "productId", "userId", "apiId", "operationId", "model", "region"):
        assert properties[name]["maxLength"] == MAX_ID_LENGTH
    tags = properties["tags"]
    assert tags["maxProperties"] == MAX_TAGS
    assert tags["propertyNames"]["maxLength"] == MAX_TAG_KEY_LENGTH
    assert tags["additionalProperties"]["maxLength"] == MAX_TAG_VALUE_LENGTH
