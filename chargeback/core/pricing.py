"""Pricing: effective-dated rate card by meter, deployments map, Decimal costs.

``RateCard.load`` reads the rate card CSV, ``DeploymentMap.load`` the map from Azure deployment names
to the model and type they are priced as, and ``Pricer.price`` turns one event and its resolved
usage into a ``Price``: one quantity and one cost per meter (DESIGN, "Pricing"; binding names)::

    input / cached-input / output                       text tokens (reasoning is output)
    audio-input / cached-audio-input / audio-output     audio tokens
    image-input / cached-image-input / image-output     image tokens
    images                                              generated images (by quality and size)
    audio-seconds                                       transcription and translation by duration
    characters                                          text-to-speech input characters

Each token of a usage lands in exactly one meter (``meter_quantities``): the cached part of each
modality on its cached meter, the rest on its input meter, the completion split the same way.
``InputCost``/``CachedInputCost``/``OutputCost`` are the sums over the modalities, and the per-unit
meters add to the total. A quantity on a meter the card has no price for makes the row ``unpriced``
(costs None): it is never priced as another meter.

Status precedence: a non-2xx response is ``not-billable`` with zero costs; a response served from
APIM's semantic cache is ``cache-hit`` with zero costs; a provisioned (``ptu``) deployment is ``ptu``
with zero per-token costs (its monthly cost is allocated by the rollup); a meter with a quantity and
no price in force is ``unpriced``; everything else is ``priced``.

Every price is a ``Decimal`` parsed from the CSV text; no float is ever involved. Prices per 1M or
1K are kept per unit (an exact exponent shift done once at load time); per-hour prices are divided
by 3600 when a cost is computed.

Rate card files (both shapes are read; one file is one shape):

- v2, one price per row, the shape of the Azure Retail Prices API's items:
  ``model,deployment_type,effective_from,meter,unit,price,currency``. Units: ``1M tokens``,
  ``1K tokens``, ``1 image``, ``1 second``, ``1 minute``, ``1 hour``, ``1M characters``,
  ``1K characters`` (case-insensitive), each valid for its meter's kind only. A blank price is
  allowed on a cached meter only and means the input price of the same modality. The ``images``
  meter may name the quality and size it prices: ``images:hd:1024x1792``, ``images:hd:*``,
  ``images:*:1024x1024``; lookup goes from the most specific to plain ``images``.
- v1, ``model,deployment_type,effective_from,input_per_1m,cached_input_per_1m,output_per_1m,currency``:
  each row is the three text meters per 1M tokens; a blank cached price is the input price; a blank
  output price is allowed for embeddings models only (there it is 0).

Common rules: ``# ...`` lines are comments; ``# version: <name>`` (before the header) names the card.
The ``RateCardVersion`` stamped on every row is ``<name>+<first 8 hex of the file's sha256>``, or
``sha256:<8 hex>`` without a declared name. ``effective_from`` is a date (00:00 UTC) or an ISO
datetime with a UTC offset. The ``model`` column may name a version (``gpt-4o-2024-05-13``): for each
meter the most specific row in force wins (the event's version, then the base model), because Azure
prices some models by version, not by date. Deployment types are DESIGN's names or Azure's SKU names.
"""

from __future__ import annotations

import hashlib
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

from chargeback.core.config import (
    ConfigErrors,
    check_header,
    config_records,
    declared_version,
    decode_config,
    parse_currency,
    parse_decimal,
    read_config_bytes,
)
from chargeback.core.schema import Event
from chargeback.core.usage import Usage
from chargeback.errors import ConfigError


class PricingStatus(StrEnum):
    """How a row was priced."""

    PRICED = "priced"
    NOT_BILLABLE = "not-billable"
    CACHE_HIT = "cache-hit"
    PTU = "ptu"
    UNPRICED = "unpriced"


class Meter(StrEnum):
    """DESIGN's binding meter names."""

    INPUT = "input"
    CACHED_INPUT = "cached-input"
    OUTPUT = "output"
    AUDIO_INPUT = "audio-input"
    CACHED_AUDIO_INPUT = "cached-audio-input"
    AUDIO_OUTPUT = "audio-output"
    IMAGE_INPUT = "image-input"
    CACHED_IMAGE_INPUT = "cached-image-input"
    IMAGE_OUTPUT = "image-output"
    IMAGES = "images"
    AUDIO_SECONDS = "audio-seconds"
    CHARACTERS = "characters"


METERS: tuple[str, ...] = tuple(m.value for m in Meter)
TOKEN_METERS = frozenset(METERS[:9])
TEXT_METERS = frozenset(METERS[:3])
# The kind of quantity each meter counts, and the units a price may be given in (unit -> divisor).
METER_KINDS: dict[str, str] = {
    **dict.fromkeys(TOKEN_METERS, "tokens"),
    Meter.IMAGES.value: "images",
    Meter.AUDIO_SECONDS.value: "seconds",
    Meter.CHARACTERS.value: "characters",
}
UNITS: dict[str, tuple[str, int]] = {
    "1m tokens": ("tokens", 1_000_000),
    "1k tokens": ("tokens", 1_000),
    "1 image": ("images", 1),
    "1 second": ("seconds", 1),
    "1 minute": ("seconds", 60),
    "1 hour": ("seconds", 3_600),
    "1m characters": ("characters", 1_000_000),
    "1k characters": ("characters", 1_000),
}
# The unit each meter's quantity is counted in on a row (the FOCUS export prices per these).
BASE_UNITS: dict[str, str] = {
    **dict.fromkeys(TOKEN_METERS, "1M tokens"),
    Meter.IMAGES.value: "1 image",
    Meter.AUDIO_SECONDS.value: "1 hour",
    Meter.CHARACTERS.value: "1M characters",
}
# Cached meter -> the input meter of the same modality (a blank cached price means its price).
CACHED_OF: dict[str, str] = {
    Meter.CACHED_INPUT.value: Meter.INPUT.value,
    Meter.CACHED_AUDIO_INPUT.value: Meter.AUDIO_INPUT.value,
    Meter.CACHED_IMAGE_INPUT.value: Meter.IMAGE_INPUT.value,
}
INPUT_METERS = frozenset({Meter.INPUT.value, Meter.AUDIO_INPUT.value, Meter.IMAGE_INPUT.value})
CACHED_METERS = frozenset(CACHED_OF)
OUTPUT_METERS = frozenset({Meter.OUTPUT.value, Meter.AUDIO_OUTPUT.value, Meter.IMAGE_OUTPUT.value})


class DeploymentType(StrEnum):
    """How an Azure OpenAI deployment is billed; the only values a rate card or map may use."""

    GLOBAL = "global"
    DATAZONE = "datazone"
    REGIONAL = "regional"
    GLOBAL_BATCH = "global-batch"
    DATAZONE_BATCH = "datazone-batch"
    PRIORITY = "priority"
    PTU = "ptu"  # provisioned throughput: billed by the hour, never per token


DEPLOYMENT_TYPES: tuple[str, ...] = tuple(t.value for t in DeploymentType)
# Azure's SKU names (``az cognitiveservices account deployment list``: sku.name), lower case.
AZURE_SKUS: dict[str, str] = {
    "globalstandard": "global",
    "datazonestandard": "datazone",
    "standard": "regional",
    "globalbatch": "global-batch",
    "datazonebatch": "datazone-batch",
    "globalpriority": "priority",
    "datazonepriority": "priority",
    "priority": "priority",
    "globalprovisionedmanaged": "ptu",
    "datazoneprovisionedmanaged": "ptu",
    "provisionedmanaged": "ptu",
    "provisioned": "ptu",
}
DEFAULT_DEPLOYMENT_TYPE = DeploymentType.GLOBAL.value
DEFAULT_CURRENCY = "USD"

RATE_CARD_COLUMNS = (
    "model",
    "deployment_type",
    "effective_from",
    "input_per_1m",
    "cached_input_per_1m",
    "output_per_1m",
    "currency",
)
RATE_CARD_V2_COLUMNS = ("model", "deployment_type", "effective_from", "meter", "unit", "price", "currency")
DEPLOYMENT_COLUMNS = ("deployment", "model", "deployment_type")
DEPLOYMENT_OPTIONAL_COLUMNS = ("ptu_monthly_cost", "currency")

ZERO = Decimal(0)
_MAX_RESOLVED = 10_000
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME_WITH_OFFSET = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})", re.IGNORECASE
)
_IMAGES_METER = re.compile(r"images(?::(?P<quality>[a-z0-9*-]+)(?::(?P<size>[0-9x*]+|\*))?)?")
# Model versions Azure reports as a suffix: a date (gpt-4o-2024-08-06) or the legacy MMDD form
# (gpt-35-turbo-0125, gpt-4-0613).
_VERSION_SUFFIX = re.compile(r"^(?P<base>.+?)-(?P<version>\d{4}-\d{2}-\d{2}|(?:0[1-9]|1[0-2])\d{2})$")


@lru_cache(maxsize=4096)
def split_model(name: str) -> tuple[str, str]:
    """``"GPT-4o-2024-08-06"`` → ``("gpt-4o", "2024-08-06")``; no version suffix → ``(name, "")``.

    Names are lower-cased: model names compare case-insensitively everywhere in pricing.
    """
    lowered = name.strip().lower()
    match = _VERSION_SUFFIX.match(lowered)
    if match is None:
        return lowered, ""
    return match["base"], match["version"]


def is_embedding_model(model: str) -> bool:
    """True for embeddings models, which have an input price only."""
    return "embedding" in model.lower()


def meter_quantities(usage: Usage) -> dict[str, int | Decimal]:
    """Every meter with a quantity, each token in exactly one of them.

    Audio and image counts include their cached parts; what is left of the prompt after audio and
    image is text, and the cached part of each modality goes to its cached meter. Reasoning and
    prediction tokens are text output. Costs are priced per these quantities.
    """
    prompt = usage.prompt_tokens
    cached = min(usage.cached_tokens, prompt)  # never valid above the prompt: no meter goes negative
    audio_in, image_in = usage.audio_prompt_tokens, usage.image_prompt_tokens
    cached_audio, cached_image = usage.cached_audio_tokens, usage.cached_image_tokens
    audio_out, image_out = usage.audio_completion_tokens, usage.image_completion_tokens
    quantities: dict[str, int | Decimal] = {}
    cached_text = cached - cached_audio - cached_image
    text_in = prompt - audio_in - image_in - cached_text
    text_out = usage.completion_tokens - audio_out - image_out
    if text_in:
        quantities["input"] = text_in
    if cached_text:
        quantities["cached-input"] = cached_text
    if text_out:
        quantities["output"] = text_out
    if audio_in or audio_out or image_in or image_out:
        for meter, quantity in (
            ("audio-input", audio_in - cached_audio),
            ("cached-audio-input", cached_audio),
            ("audio-output", audio_out),
            ("image-input", image_in - cached_image),
            ("cached-image-input", cached_image),
            ("image-output", image_out),
        ):
            if quantity:
                quantities[meter] = quantity
    if usage.images:
        quantities["images"] = usage.images
    if usage.audio_seconds:
        quantities["audio-seconds"] = usage.audio_seconds
    if usage.characters:
        quantities["characters"] = usage.characters
    return quantities


@dataclass(slots=True)
class Price:
    """The priced side of a usage row. Costs are None only when status is UNPRICED.

    ``costs`` holds one Decimal per meter with a quantity (``quantities``); ``input_cost`` etc.
    are the sums over modalities. ``unpriced_meters`` names the meters that had a quantity and no
    price. Treat it as immutable; not ``frozen`` because one is built per event.
    """

    model: str
    model_version: str
    deployment_type: str
    input_cost: Decimal | None
    cached_input_cost: Decimal | None
    output_cost: Decimal | None
    currency: str
    status: PricingStatus
    rate_card_version: str
    quantities: Mapping[str, int | Decimal] | None = None
    costs: Mapping[str, Decimal] | None = None
    unit_cost: Decimal | None = ZERO  # images + audio seconds + characters
    unpriced_meters: tuple[str, ...] = ()

    @property
    def total_cost(self) -> Decimal | None:
        """Sum of every meter, or None when unpriced."""
        if (
            self.input_cost is None
            or self.cached_input_cost is None
            or self.output_cost is None
            or self.unit_cost is None
        ):
            return None
        return self.input_cost + self.cached_input_cost + self.output_cost + self.unit_cost


@dataclass(frozen=True, slots=True)
class RateCardRow:
    """One validated rate card price: ``price`` per ``unit`` of ``meter`` (a v1 row is three of them)."""

    model: str
    deployment_type: str
    effective_from: datetime
    meter: str
    unit: str
    price: Decimal | None  # None: a blank cached price, i.e. the input price of the same modality
    currency: str
    line: int

    @property
    def per_1m(self) -> Decimal | None:
        """The price per 1M units of a token or character meter (for reports), else the price."""
        if self.price is None:
            return None
        _, divisor = UNITS[self.unit.lower()]
        return (self.price * 1_000_000 / divisor) if divisor in (1_000, 1_000_000) else self.price


@dataclass(frozen=True, slots=True)
class _Rate:
    """A price per unit, precomputed for the hot path: ``cost = quantity x per_unit / divisor``."""

    per_unit: Decimal
    divisor: int  # 1 when the division was exact at load time (per 1M, per 1K, per unit)
    currency: str

    def cost(self, quantity: int | Decimal) -> Decimal:
        if self.divisor == 1:
            return quantity * self.per_unit
        return quantity * self.per_unit / self.divisor


def _rate(price: Decimal, unit: str, currency: str) -> _Rate:
    _, divisor = UNITS[unit.lower()]
    if divisor in (1, 1_000, 1_000_000):
        return _Rate(price.scaleb(-len(str(divisor)) + 1), 1, currency)
    return _Rate(price, divisor, currency)


@dataclass(frozen=True, slots=True)
class _Series:
    """The prices of one (model, deployment type, meter), oldest first, with their start instants."""

    starts: tuple[datetime, ...]
    rates: tuple[_Rate, ...]
    rows: tuple[RateCardRow, ...]

    def index(self, when: datetime) -> int:
        """Position of the row in force at ``when``, or -1 before the first one."""
        return bisect_right(self.starts, when) - 1

    def at(self, when: datetime) -> _Rate | None:
        index = bisect_right(self.starts, when) - 1
        return self.rates[index] if index >= 0 else None


def parse_effective_from(raw: str) -> datetime:
    """``YYYY-MM-DD`` (00:00 UTC) or an ISO datetime with a UTC offset, as an aware UTC datetime."""
    try:
        if _DATE.fullmatch(raw):
            return datetime.combine(date.fromisoformat(raw), datetime.min.time(), tzinfo=UTC)
        if _DATETIME_WITH_OFFSET.fullmatch(raw):
            return datetime.fromisoformat(raw.upper().replace("Z", "+00:00")).astimezone(UTC)
    except ValueError as exc:
        raise ValueError(f"{raw!r} is not a real date ({exc})") from None
    raise ValueError(f"{raw!r} is not YYYY-MM-DD or an ISO datetime with a UTC offset")


def deployment_type_of(raw: str) -> str | None:
    """DESIGN's deployment type for a name or an Azure SKU name (``GlobalStandard``), or None."""
    value = raw.strip().lower()
    if value in DEPLOYMENT_TYPES:
        return value
    return AZURE_SKUS.get(value)


def _deployment_type(raw: str, line: int, errors: ConfigErrors) -> str | None:
    value = deployment_type_of(raw)
    if value is not None:
        return value
    errors.add(
        line,
        f"deployment_type {raw!r} is not one of {', '.join(DEPLOYMENT_TYPES)} "
        "(or an Azure SKU name such as GlobalStandard)",
    )
    return None


class RateCard:
    """An effective-dated price list, indexed by (model, deployment type, meter) for ``bisect`` lookups."""

    def __init__(
        self, rows: Sequence[RateCardRow], version: str, source: str = "<rate card>", shape: str = "v2"
    ) -> None:
        self.rows: tuple[RateCardRow, ...] = tuple(rows)
        self.version = version
        self.source = source
        self.shape = shape
        self._series = self._index(self.rows)
        self._model_currency = {row.model: row.currency for row in self.rows}
        self._priced = {(row.model, row.deployment_type) for row in self.rows}
        self.default_currency = self._predominant_currency(self.rows)

    @classmethod
    def load(cls, path: Path | str) -> RateCard:
        """Read and validate a rate card CSV (v1 or v2); ConfigError lists every faulty line."""
        return cls.parse(read_config_bytes(path, "rate card"), source=str(path))

    @classmethod
    def parse(cls, data: bytes, source: str = "<rate card>") -> RateCard:
        """Validate rate card bytes (see the module docstring for the rules)."""
        text = decode_config(data, source)
        digest = hashlib.sha256(data).hexdigest()[:8]
        declared = declared_version(text)
        version = f"{declared}+{digest}" if declared else f"sha256:{digest}"
        errors = ConfigErrors(source)
        rows, shape = _parse_rate_rows(text, errors)
        errors.raise_if_any()
        if not rows:
            raise ConfigError(f"{source}: the rate card has no price rows")
        return cls(rows, version, source, shape)

    @staticmethod
    def _index(rows: Sequence[RateCardRow]) -> dict[tuple[str, str, str], _Series]:
        grouped: dict[tuple[str, str, str], list[RateCardRow]] = {}
        for row in rows:
            grouped.setdefault((row.model, row.deployment_type, row.meter), []).append(row)
        index = {}
        for key, group in grouped.items():
            group.sort(key=lambda r: r.effective_from)
            rates = tuple(
                _rate(r.price, r.unit, r.currency) if r.price is not None else _BLANK_CACHED for r in group
            )
            index[key] = _Series(tuple(r.effective_from for r in group), rates, tuple(group))
        return index

    @staticmethod
    def _predominant_currency(rows: Sequence[RateCardRow]) -> str:
        counts = Counter(row.currency for row in rows)
        if not counts:
            return DEFAULT_CURRENCY
        top = max(counts.values())
        leaders = sorted(currency for currency, count in counts.items() if count == top)
        return DEFAULT_CURRENCY if DEFAULT_CURRENCY in leaders else leaders[0]

    def series(self, model: str, deployment_type: str, meter: str = "input") -> _Series | None:
        """All rows of one model, type and meter (model compared case-insensitively), or None."""
        return self._series.get((model.lower(), deployment_type, meter))

    def image_meters(self, model: str, deployment_type: str) -> tuple[str, ...]:
        """The ``images:<quality>:<size>`` meters the card has rows for, for this model and type."""
        model = model.lower()
        return tuple(
            sorted(
                meter
                for (name, kind, meter) in self._series
                if name == model and kind == deployment_type and meter.startswith("images:")
            )
        )

    def prices(self, model: str, deployment_type: str) -> bool:
        """True when the card has any row for this model (or version) and type."""
        return (model.lower(), deployment_type) in self._priced

    def lookup(
        self, model: str, deployment_type: str, at: datetime, meter: str = "input"
    ) -> RateCardRow | None:
        """The row of exactly this model name in force at ``at``: the latest ``effective_from`` <= ``at``."""
        series = self.series(model, deployment_type, meter)
        if series is None:
            return None
        index = series.index(at)
        return series.rows[index] if index >= 0 else None

    def currency_for(self, model: str) -> str:
        """The currency the card prices ``model`` in, else the card's predominant currency."""
        return self._model_currency.get(model.lower(), self.default_currency)

    def models(self) -> frozenset[str]:
        """Every model (and model version) the card prices (lower case)."""
        return frozenset(row.model for row in self.rows)


# A blank cached price in a v2 card: the input price of the same modality, found at lookup time.
_BLANK_CACHED = _Rate(Decimal(-1), 0, "")


def _parse_rate_rows(text: str, errors: ConfigErrors) -> tuple[list[RateCardRow], str]:
    records = config_records(text)
    first = next(records, None)
    if first is None:
        raise ConfigError(
            f"{errors.source}: no header row; expected {','.join(RATE_CARD_V2_COLUMNS)} "
            f"(or v1: {','.join(RATE_CARD_COLUMNS)})"
        )
    header_line, header = first
    # v1 only when its price column is there: a header that is neither is held to v2, the current
    # format, so its error names the columns a user should write.
    shape = "v1" if "input_per_1m" in header and "meter" not in header else "v2"
    columns = RATE_CARD_V2_COLUMNS if shape == "v2" else RATE_CARD_COLUMNS
    if not check_header(header_line, header, columns, (), errors):
        return [], shape
    parse = _parse_v2_row if shape == "v2" else _parse_v1_row
    rows: list[RateCardRow] = []
    seen: dict[tuple[str, str, str, datetime], int] = {}
    currencies: dict[tuple[str, str], tuple[str, int]] = {}
    for line, cells in records:
        if len(cells) != len(header):
            errors.add(line, f"{len(cells)} fields; the header has {len(header)}")
            continue
        parsed = parse(line, dict(zip(header, cells, strict=True)), errors)
        if not parsed:
            continue
        first_row = parsed[0]
        key = (first_row.model, first_row.deployment_type, first_row.meter, first_row.effective_from)
        if key in seen:
            what = "" if shape == "v1" else f" {first_row.meter}"
            errors.add(
                line,
                f"duplicate price for {first_row.model} {first_row.deployment_type}{what} effective "
                f"{first_row.effective_from.isoformat()} (first on line {seen[key]})",
            )
            continue
        seen[key] = line
        pair = (first_row.model, first_row.deployment_type)
        first_currency = currencies.setdefault(pair, (first_row.currency, line))
        if first_currency[0] != first_row.currency:
            errors.add(
                line,
                f"currency {first_row.currency} for {pair[0]} {pair[1]} differs from "
                f"{first_currency[0]} on line {first_currency[1]}; one model and type has one currency",
            )
            continue
        rows.extend(parsed)
    return rows, shape


def _common(
    line: int, values: dict[str, str], errors: ConfigErrors
) -> tuple[str, str | None, datetime | None, str | None]:
    model = values["model"].lower()
    if not model:
        errors.add(line, "model is blank")
    deployment_type = _deployment_type(values["deployment_type"], line, errors)
    effective_from: datetime | None = None
    try:
        effective_from = parse_effective_from(values["effective_from"])
    except ValueError as exc:
        errors.add(line, f"effective_from {exc}")
    currency = parse_currency(values["currency"], line, errors)
    return model, deployment_type, effective_from, currency


def _parse_v2_row(line: int, values: dict[str, str], errors: ConfigErrors) -> list[RateCardRow]:
    before = len(errors.messages)
    model, deployment_type, effective_from, currency = _common(line, values, errors)
    meter = _meter(values["meter"], line, errors)
    unit = values["unit"]
    kind = UNITS.get(unit.lower(), ("", 0))[0]
    if not kind:
        errors.add(line, f"unit {unit!r} is not one of {', '.join(BASE_UNITS_ACCEPTED)}")
    elif meter is not None and METER_KINDS[_meter_base(meter)] != kind:
        errors.add(
            line, f"unit {unit!r} counts {kind}, but meter {meter} counts {METER_KINDS[_meter_base(meter)]}"
        )
    raw = values["price"]
    price: Decimal | None = None
    if raw:
        price = parse_decimal(raw, "price", line, errors)
    elif meter is not None and meter not in CACHED_OF:
        errors.add(line, "price is blank (only a cached meter may leave it blank: the input price)")
    if len(errors.messages) != before or deployment_type is None or effective_from is None:
        return []
    if meter is None or currency is None:
        return []
    return [RateCardRow(model, deployment_type, effective_from, meter, unit, price, currency, line)]


BASE_UNITS_ACCEPTED = tuple(UNITS)


def _meter_base(meter: str) -> str:
    return "images" if meter.startswith("images:") else meter


def _meter(raw: str, line: int, errors: ConfigErrors) -> str | None:
    value = raw.strip().lower()
    if value in METER_KINDS:
        return value
    match = _IMAGES_METER.fullmatch(value)
    if match is not None:
        return f"images:{match['quality'] or '*'}:{match['size'] or '*'}"
    errors.add(line, f"meter {raw!r} is not one of {', '.join(METERS)} (or images:<quality>:<size>)")
    return None


def _parse_v1_row(line: int, values: dict[str, str], errors: ConfigErrors) -> list[RateCardRow]:
    before = len(errors.messages)
    model, deployment_type, effective_from, currency = _common(line, values, errors)
    prices = _row_prices(line, model, values, errors)
    if len(errors.messages) != before or deployment_type is None or effective_from is None:
        return []
    if prices is None or currency is None:
        return []
    unit = "1M tokens"
    return [
        RateCardRow(model, deployment_type, effective_from, meter, unit, price, currency, line)
        for meter, price in zip(("input", "cached-input", "output"), prices, strict=True)
    ]


def _row_prices(
    line: int, model: str, values: dict[str, str], errors: ConfigErrors
) -> tuple[Decimal, Decimal, Decimal] | None:
    raw_input, raw_cached, raw_output = (
        values["input_per_1m"],
        values["cached_input_per_1m"],
        values["output_per_1m"],
    )
    if not raw_input:
        errors.add(line, "input_per_1m is blank")
        return None
    input_price = parse_decimal(raw_input, "input_per_1m", line, errors)
    cached_price = (
        parse_decimal(raw_cached, "cached_input_per_1m", line, errors) if raw_cached else input_price
    )
    if raw_output:
        output_price = parse_decimal(raw_output, "output_per_1m", line, errors)
    elif is_embedding_model(model):
        output_price = ZERO
    else:
        errors.add(line, "output_per_1m is blank (only embeddings models may leave it blank)")
        return None
    if input_price is None or cached_price is None or output_price is None:
        return None
    return input_price, cached_price, output_price


@dataclass(frozen=True, slots=True)
class Deployment:
    """One deployments-map row: the model and type an Azure deployment is priced as."""

    deployment: str
    model: str
    model_version: str
    deployment_type: str
    ptu_monthly_cost: Decimal | None = None
    currency: str = DEFAULT_CURRENCY
    line: int = 0


class DeploymentMap:
    """Azure deployment name → priced model and deployment type (names compare case-insensitively)."""

    def __init__(self, deployments: Sequence[Deployment] = (), source: str = "<deployments>") -> None:
        self.deployments: tuple[Deployment, ...] = tuple(deployments)
        self.source = source
        self._by_name = {d.deployment.lower(): d for d in self.deployments}

    @classmethod
    def load(cls, path: Path | str) -> DeploymentMap:
        """Read and validate a deployments CSV; ConfigError lists every faulty line."""
        return cls.parse(read_config_bytes(path, "deployments map"), source=str(path))

    @classmethod
    def parse(cls, data: bytes, source: str = "<deployments>") -> DeploymentMap:
        """Validate deployments-map bytes (``deployment,model,deployment_type`` + optional PTU columns)."""
        errors = ConfigErrors(source)
        deployments = _parse_deployments(decode_config(data, source), errors)
        errors.raise_if_any()
        return cls(deployments, source)

    def get(self, deployment: str) -> Deployment | None:
        """The map row for ``deployment``, or None when it is not mapped."""
        return self._by_name.get(deployment.lower())

    def ptu_deployments(self) -> tuple[Deployment, ...]:
        """Provisioned deployments with their monthly cost, for the monthly PTU allocation."""
        return tuple(d for d in self.deployments if d.deployment_type == DeploymentType.PTU)

    def __len__(self) -> int:
        return len(self.deployments)


def _parse_deployments(text: str, errors: ConfigErrors) -> list[Deployment]:
    records = config_records(text)
    first = next(records, None)
    if first is None:
        return []  # an empty map is valid: every deployment is then priced by its event's model
    header_line, header = first
    if not check_header(header_line, header, DEPLOYMENT_COLUMNS, DEPLOYMENT_OPTIONAL_COLUMNS, errors):
        return []
    deployments: list[Deployment] = []
    seen: dict[str, int] = {}
    for line, cells in records:
        deployment = _parse_deployment(line, cells, header, errors)
        if deployment is None:
            continue
        key = deployment.deployment.lower()
        if key in seen:
            errors.add(line, f"deployment {deployment.deployment!r} is already mapped on line {seen[key]}")
            continue
        seen[key] = line
        deployments.append(deployment)
    return deployments


def _parse_deployment(
    line: int, cells: list[str], header: list[str], errors: ConfigErrors
) -> Deployment | None:
    if len(cells) != len(header):
        errors.add(line, f"{len(cells)} fields; the header has {len(header)}")
        return None
    values = dict(zip(header, cells, strict=True))
    before = len(errors.messages)
    name = values["deployment"]
    if not name:
        errors.add(line, "deployment is blank")
    if not values["model"]:
        errors.add(line, "model is blank")
    model, version = split_model(values["model"])
    deployment_type = _deployment_type(values["deployment_type"], line, errors)
    raw_cost = values.get("ptu_monthly_cost", "")
    cost = parse_decimal(raw_cost, "ptu_monthly_cost", line, errors) if raw_cost else None
    currency = parse_currency(values.get("currency", ""), line, errors, default=DEFAULT_CURRENCY)
    if deployment_type == DeploymentType.PTU and not raw_cost:
        errors.add(line, f"ptu deployment {name!r} needs ptu_monthly_cost for the monthly allocation")
    if deployment_type not in (None, DeploymentType.PTU) and raw_cost:
        errors.add(line, f"ptu_monthly_cost is set but deployment_type is {deployment_type}, not ptu")
    if len(errors.messages) != before or deployment_type is None or currency is None:
        return None
    return Deployment(name, model, version, deployment_type, cost, currency, line)


class _Target:
    """What one (deployment, event model) pair is priced as, with its price series per meter.

    Built once per pair and cached; ``rate`` walks the candidates from the most specific (the
    version's row) to the base model's, and within ``images`` from quality and size to plain.
    """

    __slots__ = (
        "_card",
        "_chains",
        "_names",
        "currency",
        "deployment_type",
        "known",
        "model",
        "model_version",
    )

    def __init__(self, card: RateCard, model: str, version: str, deployment_type: str, currency: str) -> None:
        self.model = model
        self.model_version = version
        self.deployment_type = deployment_type
        self.currency = currency
        self._card = card
        self._names = (f"{model}-{version}", model) if version else (model,)
        self.known = any(card.prices(name, deployment_type) for name in self._names)
        self._chains: dict[str, tuple[_Series, ...]] = {}

    def _chain(self, meter: str) -> tuple[_Series, ...]:
        chain = self._chains.get(meter)
        if chain is None:
            found = (self._card.series(name, self.deployment_type, meter) for name in self._names)
            chain = self._chains[meter] = tuple(series for series in found if series is not None)
        return chain

    def rate(self, meter: str, when: datetime, quality: str = "", size: str = "") -> _Rate | None:
        """The price in force for ``meter`` (None when the card has none), blank cached → input."""
        keys = _image_keys(quality, size) if meter == "images" else (meter,)
        for key in keys:
            for series in self._chain(key):
                rate = series.at(when)
                if rate is _BLANK_CACHED:
                    return self.rate(CACHED_OF[meter], when)
                if rate is not None:
                    return rate
        return None

    def priced(self, meter: str, when: datetime) -> bool:
        """True when ``rate`` finds a price for ``meter``; for ``images`` (quality and size unknown)
        when any quality and size the card names for the model resolves, as the pricer would."""
        if self.rate(meter, when) is not None:
            return True
        if meter != "images":
            return False
        keys = {key for name in self._names for key in self._card.image_meters(name, self.deployment_type)}
        for key in keys:
            _, quality, size = key.split(":")
            if self.rate(meter, when, quality.replace("*", ""), size.replace("*", "")) is not None:
                return True
        return False

    def in_force(self, when: datetime) -> bool:
        """True when any meter of the model has a price in force at ``when``."""
        return any(self.rate(meter, when) is not None for meter in ("input", "output", "images"))

    def text_steps(self) -> TextRateSteps:
        """``rate`` of the text meters and ``in_force`` as step functions of time (batch pricing).

        Both read only the series of ``input``, ``cached-input``, ``output`` and ``images:*:*``
        (a blank cached price is the input's), so they can change only where one of those starts.
        """
        keys = ("input", "cached-input", "output", "images:*:*")
        starts = sorted({start for key in keys for series in self._chain(key) for start in series.starts})
        instants = [_BEFORE_ANY_PRICE, *starts]
        return TextRateSteps(
            model=self.model,
            model_version=self.model_version,
            deployment_type=self.deployment_type,
            currency=self.currency,
            known=self.known,
            starts=tuple(starts),
            rates=tuple(
                (self.rate("input", when), self.rate("cached-input", when), self.rate("output", when))
                for when in instants
            ),
            in_force=tuple(self.in_force(when) for when in instants),
        )


_BEFORE_ANY_PRICE = datetime(1, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class TextRateSteps:
    """How ``Pricer.price`` prices the text meters of one (deployment, model), step by step in time.

    Step ``i`` holds from ``starts[i - 1]`` (step 0: before the first start); ``rates[i]`` are the
    input, cached-input and output rates ``price`` uses then (None: no price) and ``in_force[i]``
    what it checks for a call without tokens. ``model`` .. ``known`` are the priced target's.
    """

    model: str
    model_version: str
    deployment_type: str
    currency: str
    known: bool
    starts: tuple[datetime, ...]
    rates: tuple[tuple[_Rate | None, _Rate | None, _Rate | None], ...]
    in_force: tuple[bool, ...]


@lru_cache(maxsize=256)
def _image_keys(quality: str, size: str) -> tuple[str, ...]:
    keys = []
    if quality and size:
        keys.append(f"images:{quality}:{size}")
    if quality:
        keys.append(f"images:{quality}:*")
    if size:
        keys.append(f"images:*:{size}")
    keys.append("images:*:*")
    return tuple(keys)


class Pricer:
    """Prices events against one rate card and one deployments map."""

    def __init__(self, rate_card: RateCard, deployments: DeploymentMap | None = None) -> None:
        self.rate_card = rate_card
        self.deployments = deployments if deployments is not None else DeploymentMap()
        self._targets: dict[tuple[str, str], _Target] = {}

    @classmethod
    def from_files(cls, rate_card_path: Path | str, deployments_path: Path | str | None = None) -> Pricer:
        """Load the rate card and (optionally) the deployments map."""
        deployments = DeploymentMap.load(deployments_path) if deployments_path is not None else None
        return cls(RateCard.load(rate_card_path), deployments)

    @property
    def rate_card_version(self) -> str:
        """The ``RateCardVersion`` stamped on every row."""
        return self.rate_card.version

    def price(self, event: Event, usage: Usage) -> Price:
        """Price one event's usage; see the module docstring for the status precedence."""
        target = self._target(event.deployment, event.model)
        quantities = meter_quantities(usage)
        if not 200 <= event.status_code <= 299:
            return self._zero(target, PricingStatus.NOT_BILLABLE, quantities)
        if event.served_from_cache:
            return self._zero(target, PricingStatus.CACHE_HIT, quantities)
        if target.deployment_type == DeploymentType.PTU:
            return self._zero(target, PricingStatus.PTU, quantities)
        when = event.timestamp
        costs: dict[str, Decimal] = {}
        missing: list[str] = []
        currency = target.currency
        units = event.units
        for meter, quantity in quantities.items():
            rate = target.rate(meter, when, units.image_quality, units.image_size)
            if rate is None:
                missing.append(meter)
            else:
                costs[meter] = rate.cost(quantity)
                currency = rate.currency
        if missing or not target.known or (not quantities and not target.in_force(when)):
            return Price(
                target.model,
                target.model_version,
                target.deployment_type,
                None,
                None,
                None,
                target.currency,
                PricingStatus.UNPRICED,
                self.rate_card.version,
                quantities,
                None,
                None,
                tuple(missing) or ("input",),
            )
        get = costs.get
        if costs.keys() <= TEXT_METERS:
            input_cost = get("input", ZERO)
            cached_cost = get("cached-input", ZERO)
            output_cost = get("output", ZERO)
            unit_cost = ZERO
        else:
            input_cost = get("input", ZERO) + get("audio-input", ZERO) + get("image-input", ZERO)
            cached_cost = (
                get("cached-input", ZERO) + get("cached-audio-input", ZERO) + get("cached-image-input", ZERO)
            )
            output_cost = get("output", ZERO) + get("audio-output", ZERO) + get("image-output", ZERO)
            unit_cost = get("images", ZERO) + get("audio-seconds", ZERO) + get("characters", ZERO)
        return Price(
            target.model,
            target.model_version,
            target.deployment_type,
            input_cost,
            cached_cost,
            output_cost,
            currency,
            PricingStatus.PRICED,
            self.rate_card.version,
            quantities,
            costs,
            unit_cost,
        )

    def resolve(self, deployment: str, model: str = "") -> tuple[str, str, str]:
        """``(priced model, model version, deployment type)`` for a deployment and event model."""
        target = self._target(deployment, model)
        return target.model, target.model_version, target.deployment_type

    def text_rate_steps(self, deployment: str, model: str = "") -> TextRateSteps:
        """The text meters' rates of a deployment and event model over time (see ``TextRateSteps``)."""
        return self._target(deployment, model).text_steps()

    def missing_meters(
        self, deployment_type: str, model: str, version: str, meters: Sequence[str], when: datetime
    ) -> tuple[str, ...]:
        """The meters of ``meters`` the card has no price for, for this model (version) and type."""
        target = _Target(self.rate_card, model.lower(), version.lower(), deployment_type, "")
        return tuple(meter for meter in meters if not target.priced(meter, when))

    def _zero(self, target: _Target, status: PricingStatus, quantities: dict[str, int | Decimal]) -> Price:
        return Price(
            target.model,
            target.model_version,
            target.deployment_type,
            ZERO,
            ZERO,
            ZERO,
            target.currency,
            status,
            self.rate_card.version,
            quantities,
            dict.fromkeys(quantities, ZERO),
            ZERO,
        )

    def _target(self, deployment: str, model: str) -> _Target:
        key = (deployment, model)
        target = self._targets.get(key)
        if target is None:
            if len(self._targets) >= _MAX_RESOLVED:
                self._targets.clear()  # bounded: deployment and model names come from callers
            target = self._targets[key] = self._build_target(deployment, model)
        return target

    def _build_target(self, deployment: str, model: str) -> _Target:
        mapped = self.deployments.get(deployment)
        if mapped is not None:
            priced = mapped.model
            deployment_type = mapped.deployment_type
            version = _version_against(model, priced) if model else mapped.model_version
            currency = mapped.currency if deployment_type == DeploymentType.PTU else None
        else:
            priced, version = split_model(model or deployment)
            deployment_type = DEFAULT_DEPLOYMENT_TYPE
            currency = None
        return _Target(
            self.rate_card, priced, version, deployment_type, currency or self.rate_card.currency_for(priced)
        )


def _version_against(event_model: str, priced_model: str) -> str:
    """The event model's version relative to the mapped model: ``gpt-4o-2024-08-06`` vs ``gpt-4o``."""
    lowered = event_model.strip().lower()
    if lowered == priced_model:
        return ""
    if lowered.startswith(priced_model + "-"):
        return lowered[len(priced_model) + 1 :]
    return split_model(lowered)[1]
