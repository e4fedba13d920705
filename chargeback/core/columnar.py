"""Columnar ingest of the common event: typed decoding, batch checks, exact vectorised pricing.

The per-event pipeline (``pipeline.process_message``) builds an ``Event``, a ``Usage``, a ``Price`` and a
57-key row dict per message. For the shape nearly all traffic has (usage reported with text meters
only: chat, Responses, embeddings, reasoning, cached, any deployment type, cache hits, PTU,
unpriced models; or a non-2xx response without usage), ``build_columns`` does the same work per
batch and hands back the usage table's columns as ``edges.store._column_arrays`` makes them from
the per-event rows:

- msgspec decodes each body into ``gc=False`` structs that check types, ranges and lengths while
  they parse (no unknown field, no ``billableUnits``, modality details only as 0);
- the string checks run over whole columns (one ``isprintable`` over every name of the batch),
  timestamps of the policy's layout are parsed as one numpy array;
- each distinct (deployment, model) is resolved once by the ``Pricer`` (``text_rate_steps``), its
  rate by effective date found with ``searchsorted``; a cost is quantity x the Decimal price, as
  float the correctly rounded quotient of two exact integers (what ``float(Decimal)`` gives).

It is accept-only, like ``schema._fast_event``: a message it cannot prove it handles exactly as the
per-event path (anything the typed decoder refuses, a string or timestamp that fails a check, a
price it cannot compute exactly, a replayed row, ...) is left out of the batch (``ColumnBatch.rest``)
for the per-event path, which names the reason. ``tests/test_columnar.py`` holds the two paths to the
same rows and totals.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, localcontext
from itertools import chain
from math import lcm
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from chargeback.core.pipeline import ROW_SOURCE, Message, tags_json
from chargeback.core.pricing import DeploymentType, Pricer, PricingStatus, TextRateSteps
from chargeback.core.schema import (
    _TIMESTAMP,
    EARLIEST_TIMESTAMP,
    MAX_BODY_BYTES,
    MAX_CLOCK_SKEW,
    MAX_ID_LENGTH,
    MAX_TAG_KEY_LENGTH,
    MAX_TAG_VALUE_LENGTH,
    MAX_TAGS,
    MAX_TOKENS_PER_REQUEST,
    SCHEMA_VERSION,
    USAGE_TABLE,
    table_columns,
)
from chargeback.core.usage import UsageSource

Array = np.ndarray[Any, Any]

_Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS_PER_REQUEST)]
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)]
_Name = Annotated[str, msgspec.Meta(max_length=MAX_ID_LENGTH)]
_TagKey = Annotated[str, msgspec.Meta(max_length=MAX_TAG_KEY_LENGTH)]
_TagValue = Annotated[str, msgspec.Meta(max_length=MAX_TAG_VALUE_LENGTH)]
_Tags = Annotated[dict[_TagKey, _TagValue], msgspec.Meta(max_length=MAX_TAGS)]
_Zero = Literal[0]


class _InputDetails(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """``prompt_tokens_details`` / ``input_tokens_details`` of a text call."""

    cached_tokens: _Count | None = None
    audio_tokens: _Zero | None = None
    image_tokens: _Zero | None = None


class _OutputDetails(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """``completion_tokens_details`` / ``output_tokens_details`` of a text call."""

    reasoning_tokens: _Count | None = None
    audio_tokens: _Zero | None = None
    image_tokens: _Zero | None = None
    accepted_prediction_tokens: _Zero | None = None
    rejected_prediction_tokens: _Zero | None = None


class _Usage(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """A chat, Responses or embeddings ``usage`` (no ``type``: transcription goes the full way)."""

    prompt_tokens: _Count | None = None
    input_tokens: _Count | None = None
    completion_tokens: _Count | None = None
    output_tokens: _Count | None = None
    total_tokens: _Count | None = None
    prompt_tokens_details: _InputDetails | None = None
    input_tokens_details: _InputDetails | None = None
    completion_tokens_details: _OutputDetails | None = None
    output_tokens_details: _OutputDetails | None = None


class _Event(msgspec.Struct, gc=False, forbid_unknown_fields=True, rename="camel"):
    """Event contract v1 as this path takes it; optional names default to ``""`` as in ``Event``."""

    schema_version: Literal["1"]
    request_id: _Id
    timestamp: str
    subscription_id: _Id
    deployment: _Id
    status_code: Annotated[int, msgspec.Meta(ge=100, le=599)]
    subscription_name: _Name | None = ""
    product_id: _Name | None = ""
    user_id: _Name | None = ""
    api_id: _Name | None = ""
    operation_id: _Name | None = ""
    model: _Name | None = ""
    api_version: _Name | None = ""
    region: _Name | None = ""
    backend_id: _Name | None = ""
    request_body: str | None = None
    response_body: str | None = None
    stream: bool | None = None
    truncated: bool | None = None
    served_from_cache: bool | None = None
    response_captured: bool | None = None
    billable_units: None = None
    usage: _Usage | None = None
    tags: _Tags | None = None


_DECODER = msgspec.json.Decoder(_Event)
# The names the row takes from the event as they are, in table order (model is the pricer's).
_NAMES = (
    ("RequestId", "request_id"),
    ("SubscriptionId", "subscription_id"),
    ("SubscriptionName", "subscription_name"),
    ("ProductId", "product_id"),
    ("UserId", "user_id"),
    ("ApiId", "api_id"),
    ("OperationId", "operation_id"),
    ("Deployment", "deployment"),
    ("ApiVersion", "api_version"),
    ("Region", "region"),
    ("BackendId", "backend_id"),
)
_REQUIRED = frozenset({"RequestId", "SubscriptionId", "Deployment"})
# Columns that are the same for every row this path makes (text meters only, UsageRevision 0).
_ZERO_LONGS = (
    "AudioInputTokens",
    "CachedAudioTokens",
    "ImageInputTokens",
    "CachedImageTokens",
    "AudioOutputTokens",
    "ImageOutputTokens",
    "AcceptedPredictionTokens",
    "RejectedPredictionTokens",
    "Images",
    "Characters",
    "UsageRevision",
)
_METER_COSTS = (
    "AudioInputCost",
    "CachedAudioInputCost",
    "AudioOutputCost",
    "ImageInputCost",
    "CachedImageInputCost",
    "ImageOutputCost",
    "ImagesCost",
    "AudioSecondsCost",
    "CharactersCost",
)
_EXACT = 2**53  # integers below this are exact in float64
_DECIMAL_DIGITS = 28  # the default Decimal context's precision
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STATUS_TEXT = np.array(
    [
        PricingStatus.PRICED.value,
        PricingStatus.NOT_BILLABLE.value,
        PricingStatus.CACHE_HIT.value,
        PricingStatus.PTU.value,
        PricingStatus.UNPRICED.value,
    ],
    dtype=object,
)
_PRICED, _NOT_BILLABLE, _CACHE_HIT, _PTU, _UNPRICED = range(5)
# UnpricedMeters of an unpriced row by which text meters had a quantity and no price (bit 1 input,
# 2 cached-input, 4 output); none of them means the model is unknown or not yet priced: "input".
_MISSING_TEXT = np.array(
    [
        ",".join(name for bit, name in ((1, "input"), (2, "cached-input"), (4, "output")) if code & bit)
        or "input"
        for code in range(8)
    ],
    dtype=object,
)


def _micros(when: datetime) -> int:
    """Microseconds since the epoch of an aware datetime, as ``edges.store._timestamps`` counts."""
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


_EARLIEST = _micros(EARLIEST_TIMESTAMP)


@dataclass(slots=True)
class _Step:
    """One (deployment, model) pair's text prices in force for one step of time, made exact."""

    status: int  # _PRICED, or _PTU for a provisioned deployment; -1 when this path cannot price it
    currency: str  # of a priced row with quantities (rows without any take the target's)
    known_in_force: bool  # a call without tokens is priced (else unpriced)
    has: tuple[bool, bool, bool]  # input, cached-input, output have a price
    nums: tuple[int, int, int]  # per-unit prices as num / den, exactly
    dens: tuple[int, int, int]
    prices: tuple[Decimal, Decimal, Decimal]
    common: int  # lcm of the denominators


def _step(steps: TextRateSteps, index: int) -> _Step:
    rates = steps.rates[index]
    known_in_force = steps.known and steps.in_force[index]
    if steps.deployment_type == DeploymentType.PTU:
        return _Step(
            _PTU, steps.currency, known_in_force, (False,) * 3, (0,) * 3, (1,) * 3, (Decimal(0),) * 3, 1
        )
    unusable = _Step(-1, "", False, (False,) * 3, (0,) * 3, (1,) * 3, (Decimal(0),) * 3, 1)
    present = [rate for rate in rates if rate is not None]
    if any(rate.divisor != 1 for rate in present) or len({rate.currency for rate in present}) > 1:
        return unusable  # a rate whose cost divides, or two currencies: the per-event path says
    prices = tuple(rate.per_unit if rate is not None else Decimal(0) for rate in rates)
    ratios = [price.as_integer_ratio() for price in prices]
    nums = tuple(num for num, _ in ratios)
    dens = tuple(den for _, den in ratios)
    common = lcm(*dens)
    widest = sum(abs(num) * (common // den) for num, den in ratios)
    if common >= _EXACT or MAX_TOKENS_PER_REQUEST * widest >= _EXACT:
        return unusable
    # Decimal keeps every product and their sum exact only within its 28 digits.
    largest = max((abs(price) for price in prices), default=Decimal(0))
    finest = min((rate.per_unit.as_tuple().exponent for rate in present), default=0)
    if isinstance(finest, str) or (
        largest and (largest * 3 * MAX_TOKENS_PER_REQUEST).adjusted() - min(finest, 0) + 1 > _DECIMAL_DIGITS
    ):
        return unusable
    currency = present[0].currency if present else steps.currency
    has = (rates[0] is not None, rates[1] is not None, rates[2] is not None)
    return _Step(_PRICED, currency, known_in_force, has, nums, dens, prices, common)  # type: ignore[arg-type]


@dataclass(slots=True)
class ColumnBatch:
    """The accepted part of a batch as usage-table columns, and what is left for the per-event path.

    ``positions[i]`` is the index in the batch of row ``i`` (ascending); ``rest`` the indices of the
    messages this path left out. ``groups`` and ``steps`` say which exact prices each row has, for
    the summary's Decimal totals.
    """

    positions: Array
    columns: dict[str, Array]
    rest: list[int]
    groups: Array  # per row: index into ``steps`` (its pair and step of time)
    steps: list[_Step]

    def __len__(self) -> int:
        return len(self.positions)

    def keep(self, mask: Array) -> ColumnBatch:
        """Only the rows where ``mask`` is true; the others join ``rest``."""
        dropped = self.positions[~mask].tolist()
        return ColumnBatch(
            self.positions[mask],
            {name: array[mask] for name, array in self.columns.items()},
            sorted(self.rest + dropped),
            self.groups[mask],
            self.steps,
        )

    def tallies(self) -> Tallies:
        """Counts and exact Decimal costs for ``IngestSummary``, each key at its first row."""
        columns = self.columns
        positions = self.positions.tolist()
        sources = _tally(columns["UsageSource"].tolist(), positions)
        statuses = _tally(columns["PricingStatus"].tolist(), positions)
        keys = list(
            zip(
                columns["SubscriptionId"].tolist(),
                columns["SubscriptionName"].tolist(),
                columns["Currency"].tolist(),
                strict=True,
            )
        )
        counted = _tally(keys, positions)
        costs = self.total_cost_by(keys)
        subscriptions = [(first, key, count, costs[key]) for first, key, count in counted]
        return Tallies(sources, statuses, subscriptions)

    def total_cost_by(self, keys: Sequence[Any]) -> dict[Any, Decimal]:
        """The exact Decimal sum of TotalCost (unpriced as 0) per key, one key per row, as rows sum."""
        codes: dict[Any, int] = {}
        for key in keys:
            codes.setdefault(key, len(codes))
        row_codes = np.fromiter(map(codes.__getitem__, keys), dtype=np.int64, count=len(keys))
        return dict(zip(codes, self._costs(row_codes, len(codes)), strict=True))

    def _costs(self, row_codes: Array, count: int) -> list[Decimal]:
        """Per subscription key, the Decimal sum of the rows' TotalCost as the per-event path adds it.

        ``cost or Decimal(0)`` summed row by row is exact within 28 digits (``_step`` checks each
        row; the final sum is checked here), and an exact sum of Decimals has the smallest exponent
        of its terms: a row's is that of the prices of its meters with a quantity (0 at most),
        and a row whose total is zero adds ``Decimal(0)``. Computed per (key, prices) from summed
        quantities; a sum that would need more than 28 digits raises ArithmeticError.
        """
        columns = self.columns
        totals = [Decimal(0)] * count
        key_exponent = np.zeros(count, dtype=np.int64)
        priced = columns["PricingStatus"] == PricingStatus.PRICED.value
        if priced.any():
            groups = self.groups[priced]
            codes = row_codes[priced]
            quantities = (
                (columns["PromptTokens"] - columns["CachedTokens"])[priced],
                columns["CachedTokens"][priced],
                columns["CompletionTokens"][priced],
            )
            exponents = np.array(
                [[min(int(price.as_tuple().exponent), 0) for price in step.prices] for step in self.steps],
                dtype=np.int64,
            )
            nonzero_price = np.array([[bool(price) for price in step.prices] for step in self.steps])
            row_exponent = np.zeros(len(groups), dtype=np.int64)
            nonzero = np.zeros(len(groups), dtype=bool)
            for meter in range(3):
                present = quantities[meter] > 0
                row_exponent = np.where(
                    present, np.minimum(row_exponent, exponents[groups, meter]), row_exponent
                )
                nonzero |= present & nonzero_price[groups, meter]
            np.minimum.at(key_exponent, codes, np.where(nonzero, row_exponent, 0))
            width = len(self.steps)
            pairs, inverse = np.unique(codes * width + groups, return_inverse=True)
            sums = [np.bincount(inverse, weights=quantity, minlength=len(pairs)) for quantity in quantities]
            with localcontext() as exact:
                exact.prec = 200
                for index, pair in enumerate(pairs.tolist()):
                    code, group = divmod(pair, width)
                    prices = self.steps[group].prices
                    for meter in range(3):
                        amount = int(sums[meter][index])  # at most ~2**40 per batch: exact in float64
                        if amount:
                            totals[code] += prices[meter] * amount
        out = []
        for total, exponent in zip(totals, key_exponent.tolist(), strict=True):
            value = total.quantize(Decimal(1).scaleb(exponent))  # InvalidOperation past 28 digits
            if len(value.as_tuple().digits) > _DECIMAL_DIGITS:
                raise ArithmeticError("a subscription's total needs more than 28 digits")
            out.append(value)
        return out


@dataclass(slots=True)
class Tallies:
    """What the accepted rows add to ``IngestSummary``: (first position, value, count[, cost])."""

    sources: list[tuple[int, str, int]]
    statuses: list[tuple[int, str, int]]
    subscriptions: list[tuple[int, tuple[str, str, str], int, Decimal]]


def _tally(values: list[Any], positions: list[int]) -> list[tuple[int, Any, int]]:
    """Each distinct value with the position of its first row and its count, in first-row order."""
    counts = Counter(values)  # counted in C; keys in first-seen order
    if len(counts) <= 16:
        return [(positions[values.index(value)], value, count) for value, count in counts.items()]
    first = dict(zip(reversed(values), reversed(positions), strict=True))  # the earliest one stays
    return [(first[value], value, count) for value, count in counts.items()]


def build_columns(batch: Sequence[Message], pricer: Pricer, now: datetime | None) -> ColumnBatch:
    """The usage-table columns of every message of ``batch`` this path can take; the rest in ``rest``."""
    try:
        limit = None if now is None else _micros(now + MAX_CLOCK_SKEW)
    except Exception:  # a naive or extreme ``now``: the per-event path's fault to name
        return _nothing(len(batch))
    # A chunk at a time: its structs and strings stay in the CPU's cache while each column is read
    # from them (a whole batch of structs does not fit, and every pass over it then misses).
    parts: list[tuple[dict[str, Array], Array]] = []
    accepted: list[int] = []
    for start in range(0, len(batch), _CHUNK):
        events, taken = _decode(batch[start : start + _CHUNK])
        if events:
            accepted += [start + index for index in taken]
            fields = list(zip(*map(msgspec.structs.astuple, events), strict=True))
            part: dict[str, Array] = {}
            good = _fill_names(fields, part)
            good &= _fill_usage(fields, part)
            part["_micros"], good_time = _timestamps(list(fields[_AT["timestamp"]]), limit)
            parts.append((part, good & good_time))
    if not accepted:
        return _nothing(len(batch))
    columns = {name: np.concatenate([part[name] for part, _ in parts]) for name in parts[0][0]}
    ok = np.concatenate([good for _, good in parts])
    when = columns.pop("_micros")
    columns["TimeGenerated"] = when.view("datetime64[us]")
    groups, priced_ok, steps = _fill_prices(columns, pricer, when)
    ok &= priced_ok
    positions = np.array(accepted, dtype=np.int64)
    chosen = set(accepted)
    rest = [index for index in range(len(batch)) if index not in chosen]
    whole = ColumnBatch(positions, _complete(columns, len(accepted), pricer), rest, groups, steps)
    return whole if ok.all() else whole.keep(ok)


def _nothing(count: int) -> ColumnBatch:
    return ColumnBatch(np.zeros(0, dtype=np.int64), _empty(), list(range(count)), np.zeros(0, np.int64), [])


_CHUNK = 1024  # messages decoded and read into columns at a time
_FIELDS: tuple[str, ...] = _Event.__struct_fields__
_AT = {name: index for index, name in enumerate(_FIELDS)}
_USAGE_AT = {name: index for index, name in enumerate(_Usage.__struct_fields__)}


def _decode(batch: Sequence[Message]) -> tuple[list[_Event], list[int]]:
    """Typed decode of each body this path may take: bytes, not a replayed row, small, UTF-8."""
    decode = _DECODER.decode
    bodies = [message.body for message in batch]
    plain = (
        all(type(body) is bytes for body in bodies)
        and all(message.source.kind != ROW_SOURCE for message in batch)
        and max(map(len, bodies), default=0) <= MAX_BODY_BYTES
        and b"".join(bodies).isascii()
    )
    events: list[_Event] = []
    accepted: list[int] = []
    for index, body in enumerate(bodies):
        if not plain and not _may_decode(batch[index]):
            continue
        try:
            event = decode(body)
        except Exception:  # anything the typed decoder refuses is the per-event path's to name
            continue
        events.append(event)
        accepted.append(index)
    return events, accepted


def _may_decode(message: Message) -> bool:
    body = message.body
    if type(body) is not bytes or message.source.kind == ROW_SOURCE or len(body) > MAX_BODY_BYTES:
        return False
    if body.isascii():
        return True
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _fill_names(fields: list[tuple[Any, ...]], columns: dict[str, Array]) -> Array:
    """The id and name columns, and Tags; false where one fails ``_fast_event``'s checks."""
    count = len(fields[0])
    ok = np.ones(count, dtype=bool)
    texts: list[list[str]] = []
    for column, attribute in (*_NAMES, ("_model", "model")):
        values: list[Any] = list(fields[_AT[attribute]])
        if None in values:
            values = ["" if value is None else value for value in values]
        texts.append(values)
        columns[column] = _objects(values)
    tags: tuple[dict[str, str] | None, ...] = fields[_AT["tags"]]
    tag_texts = [text for tag in tags if tag for pair in tag.items() for text in pair]
    if not "".join(chain.from_iterable(texts)).isprintable() or not "".join(tag_texts).isprintable():
        for values in texts:
            ok &= np.fromiter(map(str.isprintable, values), dtype=bool, count=count)
        ok &= np.fromiter(
            (not tag or all(k.isprintable() and v.isprintable() for k, v in tag.items()) for tag in tags),
            dtype=bool,
            count=count,
        )
    for (column, _), values in zip(_NAMES, texts, strict=False):
        if column in _REQUIRED and " " in "".join(values):
            ok &= np.fromiter((not value.isspace() for value in values), dtype=bool, count=count)
    columns["Tags"] = _objects([tags_json(tag) if tag else "{}" for tag in tags])
    return ok


def _objects(values: Sequence[Any]) -> Array:
    return np.fromiter(values, dtype=object, count=len(values))


def _ints(values: Sequence[int | None], count: int) -> Array:
    """Counts as int64, an absent or null one as -1."""
    if None in values:
        values = [-1 if value is None else value for value in values]
    return np.fromiter(values, dtype=np.int64, count=count)


def _fill_usage(fields: list[tuple[Any, ...]], columns: dict[str, Array]) -> Array:
    """Token columns, UsageSource, Streamed and StatusCode as ``resolve_usage`` makes them.

    False where the usage is not one this path prices: no prompt count, cached over the prompt or
    reasoning over the completion (``_fast_usage`` declines those), or no usage on a 2xx response
    or with a response body (those are resolved from the body).
    """
    count = len(fields[0])
    status = np.fromiter(fields[_AT["status_code"]], dtype=np.int64, count=count)
    columns["StatusCode"] = status
    columns["Streamed"] = np.fromiter((flag is True for flag in fields[_AT["stream"]]), bool, count)
    columns["_cache"] = np.fromiter((flag is True for flag in fields[_AT["served_from_cache"]]), bool, count)
    usages: tuple[_Usage | None, ...] = fields[_AT["usage"]]
    prompt = np.zeros(count, dtype=np.int64)
    cached = np.zeros(count, dtype=np.int64)
    completion = np.zeros(count, dtype=np.int64)
    reasoning = np.zeros(count, dtype=np.int64)
    ok = np.ones(count, dtype=bool)
    if None in usages:
        reported = np.fromiter((usage is not None for usage in usages), dtype=bool, count=count)
        bodies = fields[_AT["response_body"]]
        no_body = np.fromiter((not body for body in bodies), dtype=bool, count=count)
        ok &= reported | (((status < 200) | (status > 299)) & no_body)
        present = [usage for usage in usages if usage is not None]
    else:
        reported = np.ones(count, dtype=bool)
        present = [usage for usage in usages if usage is not None]
    if present:
        n = len(present)
        parts = list(zip(*map(msgspec.structs.astuple, present), strict=True))
        given = _ints(parts[_USAGE_AT["prompt_tokens"]], n)
        inputs = _ints(parts[_USAGE_AT["input_tokens"]], n)
        said = _ints(parts[_USAGE_AT["completion_tokens"]], n)
        outputs = _ints(parts[_USAGE_AT["output_tokens"]], n)
        p = np.where(given >= 0, given, inputs)
        c = np.where(said >= 0, said, np.maximum(outputs, 0))
        details_in = _either(
            parts[_USAGE_AT["prompt_tokens_details"]], parts[_USAGE_AT["input_tokens_details"]]
        )
        details_out = _either(
            parts[_USAGE_AT["completion_tokens_details"]], parts[_USAGE_AT["output_tokens_details"]]
        )
        k = np.maximum(_ints([d.cached_tokens if d is not None else None for d in details_in], n), 0)
        r = np.maximum(_ints([d.reasoning_tokens if d is not None else None for d in details_out], n), 0)
        good = (p >= 0) & (k <= p) & (r <= c)
        ok[reported] &= good
        prompt[reported] = p
        completion[reported] = c
        cached[reported] = k
        reasoning[reported] = r
    columns["PromptTokens"] = prompt
    columns["CachedTokens"] = cached
    columns["CompletionTokens"] = completion
    columns["ReasoningTokens"] = reasoning
    columns["TotalTokens"] = prompt + completion
    columns["UsageSource"] = np.where(reported, _REPORTED, _ESTIMATED)
    return ok


_REPORTED = np.array(UsageSource.REPORTED.value, dtype=object)
_ESTIMATED = np.array(UsageSource.ESTIMATED.value, dtype=object)


def _either(first: tuple[Any, ...], second: tuple[Any, ...]) -> Sequence[Any]:
    """``first`` where it is not None, else ``second`` (the chat and Responses names of one object)."""
    if None not in first:
        return first
    return [one if one is not None else other for one, other in zip(first, second, strict=True)]


def _timestamps(stamps: list[str], limit: int | None) -> tuple[Array, Array]:
    """UTC microseconds of each timestamp, as ``_fast_event`` parses it; false where it declines.

    ``limit`` is ``now + MAX_CLOCK_SKEW`` in microseconds (None: no clock check).
    """
    count = len(stamps)
    micros = np.zeros(count, dtype=np.int64)
    ok = np.zeros(count, dtype=bool)
    lengths = np.fromiter(map(len, stamps), dtype=np.int64, count=count)
    layout = np.flatnonzero(lengths == _LAYOUT_LENGTH)
    joined = "".join(stamps) if len(layout) == count else "".join(stamps[i] for i in layout.tolist())
    done = np.zeros(count, dtype=bool)
    if len(layout) and joined.isascii():
        raw = np.frombuffer(joined.encode("ascii"), dtype=np.uint8).reshape(-1, _LAYOUT_LENGTH)
        parsed, valid = _parse_layout(raw)
        micros[layout] = parsed
        ok[layout] = valid
        done[layout] = valid
    for index in np.flatnonzero(~done).tolist():  # other layouts and offsets: exactly as _fast_event
        value = _one_timestamp(stamps[index])
        if value is not None:
            micros[index] = value
            ok[index] = True
    ok &= micros >= _EARLIEST
    if limit is not None:
        ok &= micros <= limit
    return micros, ok


_LAYOUT_LENGTH = len("2026-10-09T02:38:46.9799190Z")
_DIGITS = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 22, 23, 24, 25, 26])
_LITERALS = np.array([4, 7, 10, 13, 16, 19, 27])
_LITERAL_BYTES = np.frombuffer(b"--T::.Z", dtype=np.uint8)
_MONTH_DAYS = np.array([0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], dtype=np.int64)
_FRACTION = np.array([100_000, 10_000, 1_000, 100, 10, 1], dtype=np.int64)


def _parse_layout(raw: Array) -> tuple[Array, Array]:
    """``YYYY-MM-DDTHH:MM:SS.fffffffZ`` (APIM's ``"o"`` format) rows of bytes to UTC microseconds.

    Valid where every digit is a digit and the date and time are real, as ``datetime.fromisoformat``
    decides; the seventh fractional digit is dropped, as ``fromisoformat`` drops it.
    """
    d = raw[:, _DIGITS].astype(np.int64) - 48
    valid = ((d >= 0) & (d <= 9)).all(axis=1) & (raw[:, _LITERALS] == _LITERAL_BYTES).all(axis=1)
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month = d[:, 4] * 10 + d[:, 5]
    day = d[:, 6] * 10 + d[:, 7]
    hour = d[:, 8] * 10 + d[:, 9]
    minute = d[:, 10] * 10 + d[:, 11]
    second = d[:, 12] * 10 + d[:, 13]
    fraction = d[:, 14:20] @ _FRACTION
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    month_ok = (month >= 1) & (month <= 12)
    days_in_month = _MONTH_DAYS[np.where(month_ok, month, 0)] + ((month == 2) & leap)
    valid &= (year >= 1) & month_ok & (day >= 1) & (day <= days_in_month)
    valid &= (hour <= 23) & (minute <= 59) & (second <= 59)
    # Days since 1970-01-01 of the civil date (H. Hinnant's days_from_civil), any year >= 1.
    shifted = year - (month <= 2)
    era = shifted // 400
    year_of_era = shifted - era * 400
    day_of_year = (153 * ((month + 9) % 12) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    days = era * 146_097 + day_of_era - 719_468
    micros = (days * 86_400 + hour * 3_600 + minute * 60 + second) * 1_000_000 + fraction
    return micros, valid


def _one_timestamp(stamp: str) -> int | None:
    """One timestamp exactly as ``_fast_event`` takes it (pattern, ``fromisoformat``, UTC), else None."""
    if _TIMESTAMP.fullmatch(stamp) is None:
        return None
    try:
        return _micros(datetime.fromisoformat(stamp).astimezone(UTC))
    except Exception:  # whatever the per-event path makes of it, it is not this path's to decide
        return None


def _fill_prices(columns: dict[str, Array], pricer: Pricer, when: Array) -> tuple[Array, Array, list[_Step]]:
    """Pricing columns as ``Pricer.price`` makes them; false where this path cannot price exactly."""
    count = len(when)
    pairs = list(zip(columns["Deployment"].tolist(), columns["_model"].tolist(), strict=True))
    codes_of: dict[tuple[str, str], int] = {}
    for pair in pairs:
        codes_of.setdefault(pair, len(codes_of))
    pair_codes = np.fromiter(map(codes_of.__getitem__, pairs), dtype=np.int64, count=count)
    ok = np.ones(count, dtype=bool)
    groups = np.zeros(count, dtype=np.int64)
    steps: list[_Step] = []
    targets: list[TextRateSteps | None] = []
    for (deployment, model), code in codes_of.items():
        rows = np.flatnonzero(pair_codes == code)
        try:
            rate_steps = pricer.text_rate_steps(deployment, model)
        except Exception:  # the per-event path turns it into its rejection
            ok[rows] = False
            targets.append(None)
            continue
        targets.append(rate_steps)
        starts = np.array([_micros(start) for start in rate_steps.starts], dtype=np.int64)
        positions = np.searchsorted(starts, when[rows], side="right")
        first = len(steps)
        steps += [_step(rate_steps, index) for index in range(len(rate_steps.rates))]
        groups[rows] = first + positions
    target_of = [targets[code] for code in range(len(targets))]
    strings = {
        "DeploymentType": [t.deployment_type if t else "" for t in target_of],
        "Model": [t.model if t else "" for t in target_of],
        "ModelVersion": [t.model_version if t else "" for t in target_of],
        "_target_currency": [t.currency if t else "" for t in target_of],
    }
    for name, values in strings.items():
        columns[name] = _objects(values)[pair_codes] if values else _objects([])
    step_status = np.array([step.status for step in steps] or [0], dtype=np.int64)[groups]
    ok &= step_status >= 0
    has = np.array([step.has for step in steps] or [(False,) * 3], dtype=bool)[groups]
    nums = np.array([step.nums for step in steps] or [(0,) * 3], dtype=np.int64)[groups]
    dens = np.array([step.dens for step in steps] or [(1,) * 3], dtype=np.int64)[groups]
    commons = np.array([step.common for step in steps] or [1], dtype=np.int64)[groups]
    in_force = np.array([step.known_in_force for step in steps] or [False], dtype=bool)[groups]
    step_currency = _objects([step.currency for step in steps] or [""])[groups]
    quantities = (
        columns["PromptTokens"] - columns["CachedTokens"],
        columns["CachedTokens"],
        columns["CompletionTokens"],
    )
    status = columns["StatusCode"]
    missing = np.zeros(count, dtype=np.int64)
    for meter, bit in enumerate((1, 2, 4)):
        missing |= np.where((quantities[meter] > 0) & ~has[:, meter], bit, 0)
    any_quantity = (quantities[0] > 0) | (quantities[1] > 0) | (quantities[2] > 0)
    unpriced = (missing != 0) | ~in_force & ~any_quantity | ~_known(targets, pair_codes)
    state = np.where(
        (status < 200) | (status > 299),
        _NOT_BILLABLE,
        np.where(
            columns.pop("_cache"),
            _CACHE_HIT,
            np.where(step_status == _PTU, _PTU, np.where(unpriced, _UNPRICED, _PRICED)),
        ),
    )
    is_priced = state == _PRICED
    is_unpriced = state == _UNPRICED
    costs = []
    for meter in range(3):
        cost = quantities[meter] * nums[:, meter] / dens[:, meter]
        costs.append(np.where(is_priced, cost, 0.0))
    numerator = sum(quantities[meter] * nums[:, meter] * (commons // dens[:, meter]) for meter in range(3))
    total = np.where(is_priced, numerator / commons, 0.0)
    nan = np.float64("nan")
    for name, cost in zip(("InputCost", "CachedInputCost", "OutputCost"), costs, strict=True):
        columns[name] = np.where(is_unpriced, nan, cost)
    columns["TotalCost"] = np.where(is_unpriced, nan, total)
    target_currency = columns.pop("_target_currency")
    columns["Currency"] = np.where(is_priced & any_quantity, step_currency, target_currency)
    columns["PricingStatus"] = _STATUS_TEXT[state]
    columns["UnpricedMeters"] = np.where(is_unpriced, _MISSING_TEXT[missing], "").astype(object)
    columns["_meter_cost"] = np.where(is_unpriced, nan, 0.0)
    return groups, ok, steps


def _known(targets: list[TextRateSteps | None], pair_codes: Array) -> Array:
    return np.array([bool(t and t.known) for t in targets] or [False], dtype=bool)[pair_codes]


def _complete(columns: dict[str, Array], count: int, pricer: Pricer) -> dict[str, Array]:
    """Every column of the usage table in table order, the constant ones filled in."""
    if count == 0:
        return _empty()
    columns.pop("_model")
    meter_cost = columns.pop("_meter_cost")
    zeros = np.zeros(count, dtype=np.int64)
    empty = np.full(count, "", dtype=object)
    constants: dict[str, Array] = {
        "RateCardVersion": np.full(count, pricer.rate_card_version, dtype=object),
        "EventSchemaVersion": np.full(count, SCHEMA_VERSION, dtype=object),
        "UsageUnknown": empty,
        "ImageSize": empty,
        "ImageQuality": empty,
        "AudioSeconds": np.zeros(count, dtype=np.float64),
        **dict.fromkeys(_ZERO_LONGS, zeros),
        **dict.fromkeys(_METER_COSTS, meter_cost),
    }
    return {c.name: columns[c.name] if c.name in columns else constants[c.name] for c in _table()}


def _empty() -> dict[str, Array]:
    dtypes = {"real": np.float64, "dateTime": "datetime64[us]", "int": np.int64, "long": np.int64}
    return {
        c.name: np.zeros(0, dtype=bool if c.type == "boolean" else dtypes.get(c.type, object))
        for c in _table()
    }


def _table() -> Any:
    return table_columns(USAGE_TABLE)
