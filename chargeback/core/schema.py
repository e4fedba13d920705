"""Event contract v1 and the custom tables' columns.

``parse_event`` turns one Event Hub message body into an ``Event`` or raises ``RejectedEvent``
with a reason code. It is hand-written rather than driven by ``jsonschema`` because it runs on
every event on the hot path; ``schemas/event.v1.schema.json`` is the published contract (the
APIM policy tests validate against it) and ``tests/test_schema.py`` holds the two in agreement.

The tables' columns live in ``schemas/tables.json``, the one file that Bicep loads too; the Azure
tables read but not owned (APIM's LLM and gateway logs) in ``schemas/azure_tables.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

from chargeback.errors import Reason, RejectedEvent

SCHEMA_VERSION = "1"
MAX_BODY_BYTES = 1_048_576
MAX_TOKENS_PER_REQUEST = 10_000_000
MAX_TAGS = 50
MAX_ID_LENGTH = 256  # ids, names and other short strings
MAX_TAG_KEY_LENGTH = 128
MAX_TAG_VALUE_LENGTH = 256
MAX_IMAGES_PER_REQUEST = 1000
MAX_CHARACTERS_PER_REQUEST = 10_000_000
MAX_AUDIO_SECONDS = 86_400  # one day of audio in one call is already far beyond any service limit
# Events stamped further ahead than this are clock errors or forgeries, not usage.
MAX_CLOCK_SKEW = timedelta(hours=24)
EARLIEST_TIMESTAMP = datetime(2020, 1, 1, tzinfo=UTC)

USAGE_TABLE = "AOAIChargeback_CL"
ALERTS_TABLE = "AOAIChargebackAlerts_CL"

# An offset's minutes are 00-59 (fromisoformat would read +00:60 as +01:00 and +00:99 as 1h39m).
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?(Z|[+-]\d{2}:[0-5]\d)")
_REQUIRED_STRINGS = ("requestId", "subscriptionId", "deployment")
_OPTIONAL_STRINGS = (
    "subscriptionName",
    "productId",
    "userId",
    "apiId",
    "operationId",
    "model",
    "apiVersion",
    "region",
    "backendId",
    "requestBody",
    "responseBody",
)
_BODIES = ("requestBody", "responseBody")
_OPTIONAL_BOOLS = ("stream", "truncated", "servedFromCache")
# Absent means true: only a policy that let a stream through unread says ``responseCaptured: false``.
_RESPONSE_CAPTURED = "responseCaptured"
# Text that cannot be stored or shown as it is. A lone surrogate (a valid JSON escape) is not
# encodable as UTF-8: DuckDB, Blob and every file writer refuse it. C0/C1 controls and line or
# paragraph separators make no sense in an id, a name or a tag and break CSV rows and terminal
# lines; the bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069) make a name
# read differently from what it is ("Trojan Source"). Bodies are exempt: they are JSON text.
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# Usage detail objects, by the names each API uses: chat, Responses/images, realtime/transcription.
_INPUT_DETAILS = ("prompt_tokens_details", "input_tokens_details", "input_token_details")
_OUTPUT_DETAILS = ("completion_tokens_details", "output_tokens_details", "output_token_details")
# Detail counts the fast path reads itself (any other key, e.g. ``cached_tokens_details``, goes the full way).
_FAST_IN = frozenset({"cached_tokens", "text_tokens", "audio_tokens", "image_tokens"})
_FAST_OUT = frozenset(
    {
        "reasoning_tokens",
        "text_tokens",
        "audio_tokens",
        "image_tokens",
        "accepted_prediction_tokens",
        "rejected_prediction_tokens",
    }
)
_FAST_UNITS = frozenset({"images", "imageSize", "imageQuality", "characters", "audioSeconds"})


@dataclass(slots=True)
class ReportedUsage:
    """Token counts as the service reported them, normalised across API shapes.

    Treat it as immutable; not ``frozen`` because one is built per event (see ``Event``).
    """

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    # Modality parts of the totals above (DESIGN: each is priced by its own meter, never as text).
    # Audio/image prompt counts include their cached part; cached_* are parts of cached_tokens.
    audio_prompt_tokens: int = 0
    image_prompt_tokens: int = 0
    cached_audio_tokens: int = 0
    cached_image_tokens: int = 0
    audio_completion_tokens: int = 0
    image_completion_tokens: int = 0
    # Predicted outputs: both are already inside completion_tokens (rejected ones are billed too).
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0
    # Transcription billed by duration (``usage.type == "duration"``): seconds of audio.
    audio_seconds: Decimal | None = None


@dataclass(frozen=True, slots=True)
class BillableUnits:
    """The event's ``billableUnits``: what a non-token call is billed by, sent as small fields.

    Image generation: ``images`` (n, or the images returned), ``imageSize``, ``imageQuality``;
    text-to-speech: ``characters`` (the input's length, never its text); transcription and
    translation: ``audioSeconds`` (the duration the response reports).
    """

    images: int = 0
    image_size: str = ""
    image_quality: str = ""
    characters: int = 0
    audio_seconds: Decimal | None = None


NO_UNITS: BillableUnits = BillableUnits()


@dataclass(slots=True)
class Event:
    """A validated v1 event. Optional strings are ``""`` when absent, never ``None``.

    Treat it as immutable. It is not ``frozen`` only because one is built per event on the hot
    path, and a frozen dataclass sets each of the 22 fields through ``object.__setattr__``:
    2.0 us per event against 0.5 us.
    """

    request_id: str
    timestamp: datetime
    subscription_id: str
    deployment: str
    status_code: int
    schema_version: str = SCHEMA_VERSION
    subscription_name: str = ""
    product_id: str = ""
    user_id: str = ""
    api_id: str = ""
    operation_id: str = ""
    model: str = ""
    api_version: str = ""
    region: str = ""
    backend_id: str = ""
    stream: bool = False
    usage: ReportedUsage | None = None
    request_body: str = ""
    response_body: str = ""
    truncated: bool = False
    served_from_cache: bool = False
    response_captured: bool = True
    tags: dict[str, str] = field(default_factory=dict)
    units: BillableUnits = NO_UNITS


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# One decoder for the process: ``json.loads(text, parse_constant=...)`` builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# Not in the stubs: the C scanner, (text, index) -> (value, end), StopIteration when no value.
_SCAN: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def decode_body(body: bytes | str) -> dict[str, Any]:
    """Bytes of one message to a JSON object, or RejectedEvent (size, encoding, JSON, shape)."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if len(raw) > MAX_BODY_BYTES:
        raise RejectedEvent(Reason.BODY_TOO_LARGE, f"body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        # "utf-8-sig" is a codec written in Python (~0.5 us a call); "utf-8" is C, and dropping a
        # leading byte-order mark after it is what "utf-8-sig" does.
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RejectedEvent(Reason.INVALID_ENCODING, f"body is not UTF-8: {exc.reason}") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        # The decoder's scanner reads one JSON value from position 0: a body that is exactly one
        # value (the usual case) needs nothing more. Anything else (whitespace around it, trailing
        # text, no value at all) goes through the whole decoder for its own answer and message;
        # json.loads(text) is _DECODER.decode(text) after a check for a (second) byte-order mark.
        try:
            value, end = _SCAN(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            value = _DECODER.decode(text) if not text.startswith("\ufeff") else json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise RejectedEvent(Reason.INVALID_JSON, f"body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise RejectedEvent(Reason.NOT_AN_OBJECT, f"body is a JSON {type(value).__name__}, not an object")
    return value


def parse_event(body: bytes | str, *, now: datetime | None = None) -> Event:
    """Validate one message body against contract v1; raise RejectedEvent naming the first fault."""
    return validate_event(decode_body(body), now=now)


def validate_event(doc: dict[str, Any], *, now: datetime | None = None) -> Event:
    """Validate an already-decoded JSON object against contract v1."""
    event = _fast_event(doc, now)
    return event if event is not None else _validate_event(doc, now)


def _fast_event(doc: dict[str, Any], now: datetime | None) -> Event | None:
    """The hot path: the same ``Event`` as ``_validate_event`` for a valid event, else None.

    Only checks; it never decides a rejection. Anything unusual (a missing, mistyped or
    out-of-range field, a str subclass, a shape it does not know) returns None and the full
    validator names the fault, so reason codes come from one place. ``tests/test_schema.py`` holds
    the two paths to the same answers.
    """
    get = doc.get
    if get("schemaVersion") != SCHEMA_VERSION:
        return None
    request_id: Any = get("requestId")
    subscription_id: Any = get("subscriptionId")
    deployment: Any = get("deployment")
    for value in (request_id, subscription_id, deployment):
        if (
            type(value) is not str
            or not value
            or value.isspace()
            or len(value) > MAX_ID_LENGTH
            or not value.isprintable()  # controls, surrogates, separators: the full path decides
        ):
            return None
    status: Any = get("statusCode")
    if type(status) is not int or not 100 <= status <= 599:
        return None
    stamp = get("timestamp")
    if type(stamp) is not str or _TIMESTAMP.fullmatch(stamp) is None:
        return None
    try:
        timestamp = datetime.fromisoformat(stamp).astimezone(UTC)
    except (ValueError, OverflowError):  # not a real date, or past datetime's range in UTC
        return None
    if timestamp < EARLIEST_TIMESTAMP or (now is not None and timestamp > now + MAX_CLOCK_SKEW):
        return None
    strings = [get(name) for name in _OPTIONAL_STRINGS]
    for value in strings[:-2]:  # ids and names
        if value is not None and (
            type(value) is not str or len(value) > MAX_ID_LENGTH or not value.isprintable()
        ):
            return None
    for value in strings[-2:]:  # bodies
        if value is not None and type(value) is not str:
            return None
    flags = [get(name) for name in _OPTIONAL_BOOLS]
    for value in flags:
        if value is not None and type(value) is not bool:
            return None
    captured = get(_RESPONSE_CAPTURED)
    if captured is not None and type(captured) is not bool:
        return None
    raw_units = get("billableUnits")
    units = NO_UNITS
    if raw_units is not None:
        read_units = _fast_units(raw_units)
        if read_units is None:
            return None
        units = read_units
    raw_usage = get("usage")
    usage: ReportedUsage | None = None
    if raw_usage is not None:
        usage = _fast_usage(raw_usage)
        if usage is None:
            return None
    raw_tags = get("tags")
    tags: dict[str, str] = {}
    if raw_tags is not None:
        if type(raw_tags) is not dict or len(raw_tags) > MAX_TAGS:
            return None
        for key, tag in raw_tags.items():
            if (
                type(tag) is not str
                or len(tag) > MAX_TAG_VALUE_LENGTH
                or len(key) > MAX_TAG_KEY_LENGTH
                or not tag.isprintable()
                or not key.isprintable()
            ):
                return None
        tags = dict(raw_tags)
    # Each optional string is now None or a str, and each flag None or a bool: ``or ""`` and
    # ``is True`` turn an absent one into the default without another type check.
    name, product, user, api, operation, model, api_version, region, backend, request, response = strings
    stream, truncated, cached = flags
    return Event(
        request_id=request_id,
        timestamp=timestamp,
        subscription_id=subscription_id,
        deployment=deployment,
        status_code=status,
        subscription_name=name or "",
        product_id=product or "",
        user_id=user or "",
        api_id=api or "",
        operation_id=operation or "",
        model=model or "",
        api_version=api_version or "",
        region=region or "",
        backend_id=backend or "",
        request_body=request or "",
        response_body=response or "",
        stream=stream is True,
        truncated=truncated is True,
        served_from_cache=cached is True,
        response_captured=captured is not False,
        usage=usage,
        tags=tags,
        units=units,
    )


def _fast_usage(usage: Any) -> ReportedUsage | None:
    """``parse_usage`` for a well-formed usage object with a prompt count; None for anything else.

    It takes every shape ``parse_usage`` accepts from its known detail counts (cached, reasoning,
    text, audio, image, prediction), with the same parts and checks, and transcription billed by
    duration; a cached split (``cached_tokens_details``), realtime names, an unknown detail key or
    any check that fails defers to the full parser, which names the fault.
    """
    if type(usage) is not dict:
        return None
    get = usage.get
    if "type" in usage:
        if get("type") != "duration":
            return None
        seconds = _fast_seconds(get("seconds"))
        return None if seconds is None else ReportedUsage(0, 0, audio_seconds=seconds)
    if "input_token_details" in usage or "output_token_details" in usage:
        return None  # realtime shapes: the full parser
    prompt, inputs = get("prompt_tokens"), get("input_tokens")
    completion, output = get("completion_tokens"), get("output_tokens")
    for value in (prompt, inputs, completion, output, get("total_tokens")):
        if value is not None and (type(value) is not int or not 0 <= value <= MAX_TOKENS_PER_REQUEST):
            return None
    details_in = get("prompt_tokens_details")
    if details_in is None:
        details_in = get("input_tokens_details")
    details_out = get("completion_tokens_details")
    if details_out is None:
        details_out = get("output_tokens_details")
    if details_in is None:
        details_in = {}
    elif type(details_in) is not dict or not _fast_counts(details_in, _FAST_IN):
        return None
    if details_out is None:
        details_out = {}
    elif type(details_out) is not dict or not _fast_counts(details_out, _FAST_OUT):
        return None
    if prompt is None:
        prompt = inputs
        if prompt is None:
            return None  # no usable usage: the full path says so (and resolution falls through)
    if completion is None:
        completion = output or 0
    if not details_in and not details_out:
        return ReportedUsage(prompt, completion)
    get_in, get_out = details_in.get, details_out.get
    cached = get_in("cached_tokens") or 0
    reasoning = get_out("reasoning_tokens") or 0
    if cached > prompt or reasoning > completion:
        return None
    audio_in = get_in("audio_tokens") or 0
    image_in = get_in("image_tokens") or 0
    text_in = get_in("text_tokens")
    if audio_in + image_in > prompt or (text_in is not None and text_in + audio_in + image_in != prompt):
        return None
    # Cached tokens are text first; only what the text part cannot hold is audio, then image.
    overflow = max(0, cached - (prompt - audio_in - image_in))
    cached_audio = min(overflow, audio_in)
    cached_image = overflow - cached_audio
    if cached_image > image_in:
        return None
    if "image_tokens" in details_in and "text_tokens" in details_in and not details_out:
        audio_out, image_out = 0, completion  # image generation: every output token is an image
    else:
        audio_out = get_out("audio_tokens") or 0
        image_out = get_out("image_tokens") or 0
        text_out = get_out("text_tokens")
        if audio_out + image_out > completion or (
            text_out is not None and text_out + audio_out + image_out != completion
        ):
            return None
    accepted = get_out("accepted_prediction_tokens") or 0
    rejected = get_out("rejected_prediction_tokens") or 0
    if reasoning > completion - audio_out - image_out or accepted + rejected > completion:
        return None
    return ReportedUsage(
        prompt,
        completion,
        cached,
        reasoning,
        audio_in,
        image_in,
        cached_audio,
        cached_image,
        audio_out,
        image_out,
        accepted,
        rejected,
    )


def _fast_counts(details: dict[str, Any], allowed: frozenset[str]) -> bool:
    """True when every key is one of ``allowed`` and every count is null or within the token limit."""
    for key, value in details.items():
        if key not in allowed or (
            value is not None and (type(value) is not int or not 0 <= value <= MAX_TOKENS_PER_REQUEST)
        ):
            return False
    return True


def _fast_seconds(value: Any) -> Decimal | None:
    """``_seconds`` for a present, valid duration (an int or a finite float in range); else None."""
    if type(value) is int:
        return Decimal(value) if 0 <= value <= MAX_AUDIO_SECONDS else None
    # A float's shortest repr rounds back to it, so it is in range exactly when the float is
    # (NaN and the infinities fail the comparison).
    if type(value) is float and 0 <= value <= MAX_AUDIO_SECONDS:
        return Decimal(repr(value))
    return None


def _fast_units(units: Any) -> BillableUnits | None:
    """``parse_units`` for a well-formed ``billableUnits`` of known fields; None for anything else."""
    if type(units) is not dict:
        return None
    get = units.get
    for key in units:
        if key not in _FAST_UNITS:
            return None
    images, characters = get("images"), get("characters")
    if images is None:
        images = 0
    elif type(images) is not int or not 0 <= images <= MAX_IMAGES_PER_REQUEST:
        return None
    if characters is None:
        characters = 0
    elif type(characters) is not int or not 0 <= characters <= MAX_CHARACTERS_PER_REQUEST:
        return None
    size, quality = get("imageSize"), get("imageQuality")
    for value in (size, quality):
        # isprintable() is false for every control, separator, bidi control and surrogate.
        if value is not None and (type(value) is not str or len(value) > 64 or not value.isprintable()):
            return None
    seconds = get("audioSeconds")
    if seconds is not None:
        seconds = _fast_seconds(seconds)
        if seconds is None:
            return None
    return BillableUnits(
        images=images,
        image_size=size.strip().lower() if size is not None else "",
        image_quality=quality.strip().lower() if quality is not None else "",
        characters=characters,
        audio_seconds=seconds,
    )


def _validate_event(doc: dict[str, Any], now: datetime | None) -> Event:
    """The full validator: raises RejectedEvent naming the first fault, in contract order."""
    version = doc.get("schemaVersion")
    if version is None:
        raise RejectedEvent(Reason.MISSING_FIELD, "schemaVersion is missing", field="schemaVersion")
    if version != SCHEMA_VERSION:
        raise RejectedEvent(
            Reason.UNKNOWN_SCHEMA_VERSION,
            f"schemaVersion {version!r} is not supported (expected {SCHEMA_VERSION!r})",
            field="schemaVersion",
        )
    required = {name: _required_string(doc, name) for name in _REQUIRED_STRINGS}
    timestamp = _timestamp(doc, now)
    status = doc.get("statusCode")
    if status is None:
        raise RejectedEvent(Reason.MISSING_FIELD, "statusCode is missing", field="statusCode")
    if type(status) is not int:
        raise RejectedEvent(Reason.WRONG_TYPE, "statusCode must be an integer", field="statusCode")
    if not 100 <= status <= 599:
        raise RejectedEvent(
            Reason.INVALID_VALUE, f"statusCode {status} is not an HTTP status", field="statusCode"
        )
    optional = {name: _optional_string(doc, name) for name in _OPTIONAL_STRINGS}
    flags = {name: _optional_bool(doc, name) for name in _OPTIONAL_BOOLS}
    return Event(
        request_id=required["requestId"],
        timestamp=timestamp,
        subscription_id=required["subscriptionId"],
        deployment=required["deployment"],
        status_code=status,
        subscription_name=optional["subscriptionName"],
        product_id=optional["productId"],
        user_id=optional["userId"],
        api_id=optional["apiId"],
        operation_id=optional["operationId"],
        model=optional["model"],
        api_version=optional["apiVersion"],
        region=optional["region"],
        backend_id=optional["backendId"],
        request_body=optional["requestBody"],
        response_body=optional["responseBody"],
        stream=flags["stream"],
        truncated=flags["truncated"],
        served_from_cache=flags["servedFromCache"],
        response_captured=doc.get(_RESPONSE_CAPTURED) is None or _optional_bool(doc, _RESPONSE_CAPTURED),
        usage=parse_usage(doc.get("usage")),
        tags=_tags(doc.get("tags")),
        units=parse_units(doc.get("billableUnits")),
    )


def _seconds(container: dict[str, Any], name: str, where: str) -> Decimal | None:
    """A duration in seconds: a finite non-negative JSON number, as an exact Decimal."""
    value = container.get(name)
    if value is None:
        return None
    if type(value) not in (int, float):
        raise RejectedEvent(Reason.WRONG_TYPE, f"{where}.{name} must be a number", field=f"{where}.{name}")
    seconds = Decimal(value) if type(value) is int else Decimal(repr(value))
    if not seconds.is_finite() or not 0 <= seconds <= MAX_AUDIO_SECONDS:
        raise RejectedEvent(
            Reason.INVALID_VALUE,
            f"{where}.{name} {value!r} is not between 0 and {MAX_AUDIO_SECONDS} seconds",
            field=f"{where}.{name}",
        )
    return seconds


def _bounded_count(container: dict[str, Any], name: str, where: str, limit: int) -> int:
    value = container.get(name)
    if value is None:
        return 0
    if type(value) is not int:
        raise RejectedEvent(Reason.WRONG_TYPE, f"{where}.{name} must be an integer", field=f"{where}.{name}")
    if not 0 <= value <= limit:
        raise RejectedEvent(
            Reason.INVALID_VALUE,
            f"{where}.{name} {value} is not between 0 and {limit}",
            field=f"{where}.{name}",
        )
    return value


def _short_string(container: dict[str, Any], name: str, where: str) -> str:
    value = container.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RejectedEvent(Reason.WRONG_TYPE, f"{where}.{name} must be a string", field=f"{where}.{name}")
    if len(value) > 64 or (not value.isprintable() and (_CONTROL.search(value) or _SURROGATE.search(value))):
        raise RejectedEvent(
            Reason.INVALID_VALUE,
            f"{where}.{name} is longer than 64 or holds control characters",
            field=f"{where}.{name}",
        )
    return value.strip().lower()


def parse_units(value: Any) -> BillableUnits:
    """The optional ``billableUnits`` object of a non-token call (image, speech, transcription)."""
    if value is None:
        return NO_UNITS
    if not isinstance(value, dict):
        raise RejectedEvent(
            Reason.WRONG_TYPE, "billableUnits must be an object or null", field="billableUnits"
        )
    where = "billableUnits"
    return BillableUnits(
        images=_bounded_count(value, "images", where, MAX_IMAGES_PER_REQUEST),
        image_size=_short_string(value, "imageSize", where),
        image_quality=_short_string(value, "imageQuality", where),
        characters=_bounded_count(value, "characters", where, MAX_CHARACTERS_PER_REQUEST),
        audio_seconds=_seconds(value, "audioSeconds", where),
    )


def _required_string(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if value is None:
        raise RejectedEvent(Reason.MISSING_FIELD, f"{name} is missing", field=name)
    if not isinstance(value, str):
        raise RejectedEvent(Reason.WRONG_TYPE, f"{name} must be a string", field=name)
    if not value.strip():
        raise RejectedEvent(Reason.MISSING_FIELD, f"{name} is empty", field=name)
    return check_text(value, name, MAX_ID_LENGTH)


def _optional_string(doc: dict[str, Any], name: str) -> str:
    value = doc.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RejectedEvent(Reason.WRONG_TYPE, f"{name} must be a string or null", field=name)
    return value if name in _BODIES else check_text(value, name, MAX_ID_LENGTH)


def check_text(value: str, name: str, limit: int) -> str:
    """An id, name or tag as it is, or RejectedEvent: too long, not UTF-8, or with control characters."""
    if len(value) > limit:
        raise RejectedEvent(
            Reason.VALUE_TOO_LONG, f"{name} is {len(value)} characters; at most {limit}", field=name
        )
    if value.isprintable():  # false for every surrogate and control below: most text stops here
        return value
    if (found := _SURROGATE.search(value)) is not None:
        raise RejectedEvent(
            Reason.UNENCODABLE_TEXT,
            f"{name} holds a lone surrogate U+{ord(found.group()):04X} at {found.start()}: not UTF-8 text",
            field=name,
        )
    if (found := _CONTROL.search(value)) is not None:
        raise RejectedEvent(
            Reason.CONTROL_CHARACTERS,
            f"{name} holds the control character U+{ord(found.group()):04X} at {found.start()}",
            field=name,
        )
    return value


def _optional_bool(doc: dict[str, Any], name: str) -> bool:
    value = doc.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RejectedEvent(Reason.WRONG_TYPE, f"{name} must be a boolean or null", field=name)
    return value


def _timestamp(doc: dict[str, Any], now: datetime | None) -> datetime:
    value = doc.get("timestamp")
    if value is None:
        raise RejectedEvent(Reason.MISSING_FIELD, "timestamp is missing", field="timestamp")
    if not isinstance(value, str):
        raise RejectedEvent(Reason.WRONG_TYPE, "timestamp must be an ISO-8601 string", field="timestamp")
    if not _TIMESTAMP.fullmatch(value):
        raise RejectedEvent(
            Reason.BAD_TIMESTAMP,
            f"timestamp {value[:40]!r} is not ISO-8601 with a UTC offset",
            field="timestamp",
        )
    try:
        parsed = datetime.fromisoformat(value).astimezone(UTC)
    except (ValueError, OverflowError):  # year 9999 west of UTC, year 1 east of it: not a real date
        raise RejectedEvent(
            Reason.BAD_TIMESTAMP, f"timestamp {value!r} is not a real date", field="timestamp"
        ) from None
    if parsed < EARLIEST_TIMESTAMP:
        raise RejectedEvent(Reason.BAD_TIMESTAMP, f"timestamp {value} is before 2020", field="timestamp")
    if now is not None and parsed > now + MAX_CLOCK_SKEW:
        raise RejectedEvent(Reason.BAD_TIMESTAMP, f"timestamp {value} is in the future", field="timestamp")
    return parsed


def _count(container: dict[str, Any], name: str, where: str) -> int | None:
    value = container.get(name)
    if value is None:
        return None
    if type(value) is not int:
        raise RejectedEvent(Reason.WRONG_TYPE, f"{where}.{name} must be an integer", field=f"{where}.{name}")
    if value < 0:
        raise RejectedEvent(
            Reason.NEGATIVE_TOKENS, f"{where}.{name} is negative ({value})", field=f"{where}.{name}"
        )
    if value > MAX_TOKENS_PER_REQUEST:
        raise RejectedEvent(
            Reason.TOKENS_TOO_LARGE,
            f"{where}.{name} is {value}, over {MAX_TOKENS_PER_REQUEST} per request",
            field=f"{where}.{name}",
        )
    return value


def _details(
    usage: dict[str, Any], names: tuple[str, ...], where: str = "usage"
) -> tuple[str, dict[str, Any]]:
    for name in names:
        value = usage.get(name)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise RejectedEvent(
                Reason.WRONG_TYPE, f"{where}.{name} must be an object", field=f"{where}.{name}"
            )
        return f"{where}.{name}", value
    return where, {}


def parse_usage(usage: Any) -> ReportedUsage | None:
    """Normalise a chat, Responses API, realtime, image, transcription, embeddings or completions ``usage``.

    Every breakdown the service reports is kept: cached, audio and image parts of the prompt (and
    the cached part of each modality), reasoning, audio, image and prediction parts of the
    completion, and the duration of a transcription billed by the second. When the service names
    the text part too, the parts must add up to the total it reported; otherwise the parts must
    fit inside it. Anything else is rejected (``modality-mismatch``): a usage whose parts do not add
    up cannot be priced meter by meter.

    Returns None when there is no usable usage (absent, null, or no prompt/input count), so that
    resolution falls through to the stream chunk or a recount.
    """
    if usage is None:
        return None
    if not isinstance(usage, dict):
        raise RejectedEvent(Reason.WRONG_TYPE, "usage must be an object or null", field="usage")
    if usage.get("type") == "duration":
        # Transcription billed by duration: {"type": "duration", "seconds": 3}
        seconds = _seconds(usage, "seconds", "usage")
        if seconds is None:
            raise RejectedEvent(Reason.MISSING_FIELD, "usage.seconds is missing", field="usage.seconds")
        return ReportedUsage(0, 0, audio_seconds=seconds)
    counts = {
        name: _count(usage, name, "usage")
        for name in ("prompt_tokens", "input_tokens", "completion_tokens", "output_tokens", "total_tokens")
    }
    where_in, details_in = _details(usage, _INPUT_DETAILS)
    where_out, details_out = _details(usage, _OUTPUT_DETAILS)
    prompt = counts["prompt_tokens"] if counts["prompt_tokens"] is not None else counts["input_tokens"]
    if prompt is None:
        return None
    completion = (
        counts["completion_tokens"] if counts["completion_tokens"] is not None else counts["output_tokens"]
    )
    completion = completion or 0
    cached = _count(details_in, "cached_tokens", where_in) or 0
    reasoning = _count(details_out, "reasoning_tokens", where_out) or 0
    if cached > prompt:
        raise RejectedEvent(
            Reason.CACHED_EXCEEDS_PROMPT,
            f"cached tokens {cached} exceed prompt tokens {prompt}",
            field=where_in,
        )
    if reasoning > completion:
        raise RejectedEvent(
            Reason.REASONING_EXCEEDS_COMPLETION,
            f"reasoning tokens {reasoning} exceed completion tokens {completion}",
            field=where_out,
        )
    audio_in, image_in = _parts(details_in, where_in, prompt, "prompt")
    cached_audio, cached_image = _cached_parts(
        details_in, where_in, cached, audio=audio_in, image=image_in, prompt=prompt
    )
    # Image generation (gpt-image-1) reports text and image input but no output details: every
    # output token is an image token.
    generated_images = (
        "image_tokens" in details_in
        and "text_tokens" in details_in
        and not details_out
        and "type" not in usage
    )
    if generated_images:
        audio_out, image_out = 0, completion
    else:
        audio_out, image_out = _parts(details_out, where_out, completion, "completion")
    if reasoning > completion - audio_out - image_out:
        raise RejectedEvent(
            Reason.MODALITY_MISMATCH,
            f"reasoning tokens {reasoning} exceed the text part of completion tokens "
            f"({completion} - {audio_out} audio - {image_out} image)",
            field=where_out,
        )
    accepted = _count(details_out, "accepted_prediction_tokens", where_out) or 0
    rejected = _count(details_out, "rejected_prediction_tokens", where_out) or 0
    if accepted + rejected > completion:
        raise RejectedEvent(
            Reason.MODALITY_MISMATCH,
            f"prediction tokens {accepted} accepted + {rejected} rejected exceed "
            f"completion tokens {completion}",
            field=where_out,
        )
    return ReportedUsage(
        prompt,
        completion,
        cached,
        reasoning,
        audio_in,
        image_in,
        cached_audio,
        cached_image,
        audio_out,
        image_out,
        accepted,
        rejected,
    )


def _parts(details: dict[str, Any], where: str, total: int, side: str) -> tuple[int, int]:
    """(audio, image) parts of a prompt or completion total, checked against it."""
    text = _count(details, "text_tokens", where)
    audio = _count(details, "audio_tokens", where) or 0
    image = _count(details, "image_tokens", where) or 0
    if text is not None and text + audio + image != total:
        raise RejectedEvent(
            Reason.MODALITY_MISMATCH,
            f"{side} tokens {total} are not text {text} + audio {audio} + image {image}",
            field=where,
        )
    if audio + image > total:
        raise RejectedEvent(
            Reason.MODALITY_MISMATCH,
            f"audio {audio} + image {image} tokens exceed {side} tokens {total}",
            field=where,
        )
    return audio, image


def _cached_parts(
    details: dict[str, Any], where: str, cached: int, *, audio: int, image: int, prompt: int
) -> tuple[int, int]:
    """(cached audio, cached image): from ``cached_tokens_details`` when reported, else attributed.

    Without a cached split, cached tokens are text first (chat caches the shared text prefix),
    and only what the text part cannot hold is audio, then image.
    """
    where_cached, split = _details(details, ("cached_tokens_details",), where)
    if split:
        text = _count(split, "text_tokens", where_cached)
        cached_audio = _count(split, "audio_tokens", where_cached) or 0
        cached_image = _count(split, "image_tokens", where_cached) or 0
        if (text is not None and text + cached_audio + cached_image != cached) or (
            cached_audio + cached_image > cached
        ):
            raise RejectedEvent(
                Reason.MODALITY_MISMATCH,
                f"cached tokens {cached} are not text {text or 0} + audio {cached_audio} "
                f"+ image {cached_image}",
                field=where_cached,
            )
    else:
        overflow = max(0, cached - (prompt - audio - image))
        cached_audio = min(overflow, audio)
        cached_image = overflow - cached_audio
    if cached_audio > audio or cached_image > image:
        raise RejectedEvent(
            Reason.MODALITY_MISMATCH,
            f"cached audio {cached_audio} / image {cached_image} tokens exceed audio {audio} / image {image}",
            field=where_cached,
        )
    return cached_audio, cached_image


def _tags(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RejectedEvent(Reason.WRONG_TYPE, "tags must be an object of strings", field="tags")
    if len(value) > MAX_TAGS:
        raise RejectedEvent(
            Reason.TOO_MANY_TAGS, f"tags has {len(value)} entries; at most {MAX_TAGS}", field="tags"
        )
    for key, tag in value.items():
        # The key is checked first and named by position: it may itself be unprintable.
        check_text(key, "tags (a key)", MAX_TAG_KEY_LENGTH)
        if not isinstance(tag, str):
            raise RejectedEvent(Reason.WRONG_TYPE, f"tags.{key} must be a string", field=f"tags.{key}")
        check_text(tag, f"tags.{key}", MAX_TAG_VALUE_LENGTH)
    return dict(value)


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a custom table, with its Log Analytics type."""

    name: str
    type: str
    description: str


@cache
def _tables() -> dict[str, Any]:
    text = resources.files("chargeback").joinpath("schemas", "tables.json").read_text(encoding="utf-8")
    tables: dict[str, Any] = json.loads(text)
    return tables


def table_columns(table: str = USAGE_TABLE) -> tuple[Column, ...]:
    """The columns of a custom table, in order, from ``schemas/tables.json``."""
    spec = _tables()[table]["columns"]
    return tuple(Column(c["name"], c["type"], c["description"]) for c in spec)


LLM_LOG_TABLE = "ApiManagementGatewayLlmLog"
GATEWAY_LOG_TABLE = "ApiManagementGatewayLogs"


@cache
def _azure_tables() -> dict[str, Any]:
    text = resources.files("chargeback").joinpath("schemas", "azure_tables.json").read_text(encoding="utf-8")
    tables: dict[str, Any] = json.loads(text)
    return tables


def azure_table_names() -> tuple[str, ...]:
    """The Azure Monitor tables the app reads but does not own (APIM's diagnostic logs)."""
    return tuple(name for name in _azure_tables() if not name.startswith("$"))


def azure_table_columns(table: str) -> tuple[Column, ...]:
    """The documented columns of an Azure table the app reads, from ``schemas/azure_tables.json``."""
    spec = _azure_tables()[table]["columns"]
    return tuple(Column(c["name"], c["type"], c["description"]) for c in spec)


@cache
def event_json_schema() -> dict[str, Any]:
    """The published v1 event contract as a JSON Schema document."""
    text = (
        resources.files("chargeback").joinpath("schemas", "event.v1.schema.json").read_text(encoding="utf-8")
    )
    schema: dict[str, Any] = json.loads(text)
    return schema
