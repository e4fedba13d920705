"""The pure pipeline: message body → parse → validate → resolve usage → price → usage row.

Every message yields exactly one outcome: a ``Charge`` (a usage row bound to the message it came
from) or a ``Rejection`` (a reason code and the untouched message). Nothing here does I/O; writers
and dead-letter stores are the caller's (see ``chargeback.jobs.ingest``).
"""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any

from chargeback.core.pricing import TEXT_METERS, Price, Pricer, PricingStatus
from chargeback.core.schema import (
    MAX_ID_LENGTH,
    USAGE_TABLE,
    Event,
    decode_body,
    table_columns,
    validate_event,
)
from chargeback.core.usage import Usage, UsageSource, resolve_usage
from chargeback.errors import ChargebackError, Reason, RejectedEvent

Row = dict[str, Any]


@dataclass(slots=True)
class Source:
    """Where a message came from, so a dead-letter can be traced and replayed.

    Treat it (and ``Message``) as immutable; neither is ``frozen`` because one of each is built per
    message read, and a frozen dataclass sets each field through ``object.__setattr__``.
    """

    kind: str  # "eventhub", "file" or "replay"
    name: str = ""  # partition key or file path
    position: str = ""  # offset/sequence number or line number
    enqueued_time: str = ""

    def as_dict(self) -> dict[str, str]:
        """JSON-ready form, without empty fields."""
        values = {
            "kind": self.kind,
            "name": self.name,
            "position": self.position,
            "enqueuedTime": self.enqueued_time,
        }
        return {key: value for key, value in values.items() if value}


@dataclass(slots=True)
class Message:
    """One Event Hub message body as received, and where it came from."""

    body: bytes
    source: Source


@dataclass(slots=True)
class Charge:
    """A message that became a usage row (treat as immutable; not frozen, one is built per event)."""

    message: Message
    row: Row


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message that cannot be charged as sent, with the reason code and a readable detail."""

    message: Message
    reason: Reason
    detail: str
    field: str | None = None
    request_id: str = ""


@dataclass(slots=True)
class BatchResult:
    """The outcome of one batch: every input message is in exactly one of the two lists."""

    charges: list[Charge] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)


# Plain-str text of the enums (str() on a StrEnum member goes through Enum.__str__ every time).
_ENUM_TEXT: dict[str, str] = {member: member.value for member in (*UsageSource, *PricingStatus)}
_TAGS_TEXT: dict[tuple[tuple[str, str], ...], str] = {}
_MAX_TAGS_TEXT = 4096


# What makes two rows of one RequestId the same call. A second event with the same RequestId but
# another subscription or other token counts (at the same UsageRevision) is not a redelivery: the
# row with the earliest TimeGenerated is charged and the other is dead-lettered as a ``conflict``,
# in the local store and in the Log Analytics queries alike (DESIGN, usage table).
IDENTITY_COLUMNS = ("SubscriptionId", "PromptTokens", "CachedTokens", "CompletionTokens", "ReasoningTokens")


def row_identity(row: Row) -> tuple[Any, ...]:
    """The columns a redelivery repeats exactly, then the row's UsageRevision (0 when absent)."""
    return (*(row.get(column) for column in IDENTITY_COLUMNS), row.get("UsageRevision") or 0)


def conflict_detail(row: Row, held: tuple[Any, ...]) -> str:
    """Which identity columns of ``row`` differ from the row already charged for its RequestId."""
    differs = [
        column
        for column, mine, theirs in zip(IDENTITY_COLUMNS, row_identity(row), held, strict=False)
        if mine != theirs
    ]
    return (
        f"RequestId charged to another row with another {', '.join(differs)}; "
        "the earliest row (TimeGenerated) is the one charged"
    )


def is_conflict(row: Row, held: tuple[Any, ...]) -> bool:
    """True when ``row`` differs from the charged row of its RequestId at the same revision."""
    mine = row_identity(row)
    return mine[-1] == (held[-1] or 0) and mine[:-1] != tuple(held[:-1])


def tags_json(tags: dict[str, str]) -> str:
    """The ``Tags`` column: sorted JSON text, memoised because a few tag sets repeat on every row."""
    if not tags:
        return "{}"
    key = tuple(tags.items())
    text = _TAGS_TEXT.get(key)
    if text is None:
        if len(_TAGS_TEXT) >= _MAX_TAGS_TEXT:
            _TAGS_TEXT.clear()  # bounded: tag values come from callers
        text = _TAGS_TEXT[key] = json.dumps(tags, sort_keys=True, ensure_ascii=False)
    return text


def build_row(event: Event, usage: Usage, price: Price) -> Row:
    """The usage row of DESIGN's ``AOAIChargeback_CL``; costs stay Decimal until a writer writes them."""
    # Hot path (one call per event): locals instead of the two properties.
    prompt, completion = usage.prompt_tokens, usage.completion_tokens
    input_cost, cached_cost, output_cost = price.input_cost, price.cached_input_cost, price.output_cost
    unit_cost = price.unit_cost
    total_cost = (
        None
        if input_cost is None or cached_cost is None or output_cost is None or unit_cost is None
        else input_cost + cached_cost + output_cost + unit_cost
    )
    tags = event.tags
    return {
        "TimeGenerated": event.timestamp,
        "RequestId": event.request_id,
        "SubscriptionId": event.subscription_id,
        "SubscriptionName": event.subscription_name,
        "ProductId": event.product_id,
        "UserId": event.user_id,
        "ApiId": event.api_id,
        "OperationId": event.operation_id,
        "Deployment": event.deployment,
        "DeploymentType": price.deployment_type,
        "Model": price.model,
        "ModelVersion": price.model_version,
        "ApiVersion": event.api_version,
        "Region": event.region,
        "BackendId": event.backend_id,
        "StatusCode": event.status_code,
        "Streamed": event.stream,
        "PromptTokens": prompt,
        "CachedTokens": usage.cached_tokens,
        "CompletionTokens": completion,
        "ReasoningTokens": usage.reasoning_tokens,
        "TotalTokens": prompt + completion,
        "UsageSource": _ENUM_TEXT.get(usage.source) or str(usage.source),
        "InputCost": input_cost,
        "CachedInputCost": cached_cost,
        "OutputCost": output_cost,
        "TotalCost": total_cost,
        "Currency": price.currency,
        "PricingStatus": _ENUM_TEXT.get(price.status) or str(price.status),
        "RateCardVersion": price.rate_card_version,
        "Tags": tags_json(tags) if tags else "{}",
        "EventSchemaVersion": event.schema_version,
        "UsageRevision": 0,
        "UsageUnknown": usage.unknown,
        **_meter_columns(event, usage, price),
    }


_ZERO_COST = Decimal(0)
# The per-meter cost columns of the non-text meters (text meters are the rest of Input/Cached/Output).
_COST_COLUMNS = (
    ("audio-input", "AudioInputCost"),
    ("cached-audio-input", "CachedAudioInputCost"),
    ("audio-output", "AudioOutputCost"),
    ("image-input", "ImageInputCost"),
    ("cached-image-input", "CachedImageInputCost"),
    ("image-output", "ImageOutputCost"),
    ("images", "ImagesCost"),
    ("audio-seconds", "AudioSecondsCost"),
    ("characters", "CharactersCost"),
)
_TEXT_ONLY_COSTS: dict[str, Decimal | None] = {column: _ZERO_COST for _, column in _COST_COLUMNS}
_UNPRICED_COSTS: dict[str, Decimal | None] = dict.fromkeys(_TEXT_ONLY_COSTS)


def _meter_columns(event: Event, usage: Usage, price: Price) -> Row:
    """Every meter's quantity and cost on the row (additive columns of ``AOAIChargeback_CL``)."""
    costs = price.costs
    if costs is None:
        cost_columns = _UNPRICED_COSTS
    elif costs.keys() <= TEXT_METERS:
        cost_columns = _TEXT_ONLY_COSTS
    else:
        cost_columns = {column: costs.get(meter, _ZERO_COST) for meter, column in _COST_COLUMNS}
    units = event.units
    seconds = usage.audio_seconds
    return {
        "AudioInputTokens": usage.audio_prompt_tokens,
        "CachedAudioTokens": usage.cached_audio_tokens,
        "ImageInputTokens": usage.image_prompt_tokens,
        "CachedImageTokens": usage.cached_image_tokens,
        "AudioOutputTokens": usage.audio_completion_tokens,
        "ImageOutputTokens": usage.image_completion_tokens,
        "AcceptedPredictionTokens": usage.accepted_prediction_tokens,
        "RejectedPredictionTokens": usage.rejected_prediction_tokens,
        "Images": usage.images,
        "ImageSize": units.image_size if usage.images or usage.image_completion_tokens else "",
        "ImageQuality": units.image_quality if usage.images or usage.image_completion_tokens else "",
        "AudioSeconds": seconds if seconds is not None else _ZERO_COST,
        "Characters": usage.characters,
        **cost_columns,
        "UnpricedMeters": ",".join(price.unpriced_meters),
    }


# A dead-letter of an event that failed after pricing holds its priced row, not its bodies (no more
# prompt text at rest than replay needs); a replay of it is this source kind, and goes straight to
# the writer as the row it was.
ROW_SOURCE = "replay-row"


def row_to_json(row: Row) -> bytes:
    """A usage row as exact JSON: costs as decimal strings, TimeGenerated as ISO-8601 UTC."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if isinstance(value, datetime):
            out[key] = value.astimezone(UTC).isoformat().replace("+00:00", "Z")
        elif isinstance(value, Decimal):
            out[key] = str(value)
        else:
            out[key] = value
    return json.dumps(out, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def row_from_json(body: bytes) -> Row:
    """The row ``row_to_json`` wrote, with its datetime and Decimal values back."""
    doc = json.loads(body)
    if not isinstance(doc, dict) or not isinstance(doc.get("RequestId"), str):
        raise RejectedEvent(
            Reason.NOT_AN_OBJECT, "a dead-lettered row must be a JSON object with a RequestId"
        )
    row: Row = dict(doc)
    row["TimeGenerated"] = datetime.fromisoformat(str(doc["TimeGenerated"]))
    for column in _real_columns() & row.keys():
        if isinstance(row[column], str):
            row[column] = Decimal(row[column])  # costs stay Decimal until a writer writes them
    return row


@cache
def _real_columns() -> frozenset[str]:
    return frozenset(column.name for column in table_columns(USAGE_TABLE) if column.type == "real")


def claimed_request_id(doc: dict[str, Any]) -> str:
    """The body's ``requestId`` if it is one the contract would take, else "" (never hostile text).

    A refused event's dead-letter names it, so "why was request X not charged?" has an answer.
    """
    value = doc.get("requestId")
    if type(value) is not str or not 0 < len(value) <= MAX_ID_LENGTH:
        return ""
    return value if value.isprintable() and not value.isspace() else ""


def process_message(message: Message, pricer: Pricer, now: datetime | None = None) -> Charge | Rejection:
    """One message to one outcome. Never raises: an unforeseen fault is an ``internal-error`` rejection.

    Native code may raise what is not an ``Exception``: tiktoken's Rust core raises
    ``pyo3_runtime.PanicException`` (a ``BaseException``). That is this event's ``native-fault``,
    never its neighbours'; only KeyboardInterrupt and SystemExit (the process is stopping) go on.
    """
    request_id = ""
    try:
        if message.source.kind == ROW_SOURCE:
            row = row_from_json(message.body)
            return Charge(message, row)
        doc = decode_body(message.body)
        request_id = claimed_request_id(doc)  # named on the dead-letter if the event is refused
        event = validate_event(doc, now=now)
        request_id = event.request_id
        usage = resolve_usage(event)
        price = pricer.price(event, usage)
        return Charge(message, build_row(event, usage, price))
    except RejectedEvent as exc:
        return Rejection(message, exc.reason, exc.detail, exc.field, request_id)
    except ChargebackError as exc:
        return Rejection(message, exc.reason, exc.detail, None, request_id)
    except Exception as exc:
        return Rejection(message, Reason.INTERNAL_ERROR, fault_detail(exc), None, request_id)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # see the docstring: one event's fault, not the batch's
        return Rejection(message, Reason.NATIVE_FAULT, fault_detail(exc), None, request_id)


def fault_detail(exc: BaseException, limit: int = 300) -> str:
    """One printable line naming an unforeseen fault (its type and the start of its message)."""
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not become the next fault
        text = ""
    line = text.splitlines()[0] if text.strip() else ""
    line = line.encode("utf-8", "backslashreplace").decode("utf-8")
    return f"{type(exc).__name__}: {line}"[:limit]


class _CollectorPause:
    """Pause Python's cyclic garbage collector while one batch (or several, in threads) runs.

    A batch keeps tens of thousands of objects alive until it is written (messages, events,
    rows, a DataFrame); each allocation burst promotes them and triggers full collections that
    walk the whole heap (pandas, DuckDB, ...): ~4.5 us per event, 13 % of an ingest. Nothing here
    builds reference cycles, so reference counting frees the batch anyway; the collector is
    resumed (if it was on) when the last batch in progress ends, and catches up then.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0  # batches in progress in this process
        self._resume = False  # whether the first of them found the collector enabled

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self._lock:
            if self._running == 0:
                self._resume = gc.isenabled()
                gc.disable()
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                if self._running == 0 and self._resume:
                    gc.enable()


collector_paused = _CollectorPause()


def process_batch(messages: Iterable[Message], pricer: Pricer, now: datetime | None = None) -> BatchResult:
    """Process a batch, one outcome per message in order (duplicates are the store's concern)."""
    result = BatchResult()
    charges, rejections = result.charges.append, result.rejections.append
    with collector_paused():
        for message in messages:
            outcome = process_message(message, pricer, now)
            if isinstance(outcome, Charge):
                charges(outcome)
            else:
                rejections(outcome)
    return result
