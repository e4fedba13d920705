"""Pricing: effective-dated rate card, deployments map, Decimal costs.

``RateCard.load`` reads the rate card CSV (USD per 1M tokens, one row per model, deployment type and
effective date), ``DeploymentMap.load`` the map from Azure deployment names to the model and type
they are priced as, and ``Pricer.price`` turns one event and its resolved usage into a ``Price``:

    InputCost       = (PromptTokens - CachedTokens) x input        / 1M
    CachedInputCost = CachedTokens                  x cached_input / 1M
    OutputCost      = CompletionTokens              x output       / 1M   (reasoning is inside)

Status precedence (DESIGN, "Pricing"): a non-2xx response is ``not-billable`` with zero costs; a
response served from APIM's semantic cache is ``cache-hit`` with zero costs; a provisioned (``ptu``)
deployment is ``ptu`` with zero per-token costs (its monthly cost is allocated by the rollup); a model
with no row in force is ``unpriced`` with ``None`` costs; everything else is ``priced``.

Every price is a ``Decimal`` parsed from the CSV text; no float is ever involved. Per-event work is
one cached dictionary lookup, one ``bisect`` and three Decimal multiplications (prices are kept
per token, so dividing by one million is an exact exponent shift done once at load time).

Rate card rules:
- ``# ...`` lines are comments; ``# version: <name>`` (before the header) names the card. The
  ``RateCardVersion`` stamped on every row is ``<name>+<first 8 hex of the file's sha256>``, or
  ``sha256:<8 hex>`` without a declared name, so an edited card is distinguishable from the original.
- ``effective_from`` is a date (00:00 UTC) or an ISO datetime with a UTC offset.
- ``cached_input_per_1m`` blank means the input price.
- ``output_per_1m`` may be blank only for embeddings models (``*embedding*``), where it means 0:
  embeddings have no output tokens. For any other model a blank output price is an error, so that a
  forgotten column never silently prices output at zero.
"""

from __future__ import annotations

import csv
import hashlib
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import lru_cache
from pathlib import Path

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


@dataclass(slots=True)
class Price:
    """The priced side of a usage row. Costs are None only when status is UNPRICED.

    Treat it as immutable; it is not ``frozen`` because one is built per event (0.9 -> 0.3 us).
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

    @property
    def total_cost(self) -> Decimal | None:
        """Sum of the three meters, or None when unpriced."""
        if self.input_cost is None or self.cached_input_cost is None or self.output_cost is None:
            return None
        return self.input_cost + self.cached_input_cost + self.output_cost


class DeploymentType(StrEnum):
    """How an Azure OpenAI deployment is billed; the only values a rate card or map may use."""

    GLOBAL = "global"
    DATAZONE = "datazone"
    REGIONAL = "regional"
    GLOBAL_BATCH = "global-batch"
    DATAZONE_BATCH = "datazone-batch"
    PTU = "ptu"  # provisioned throughput: billed by the hour, never per token


DEPLOYMENT_TYPES: tuple[str, ...] = tuple(t.value for t in DeploymentType)
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
DEPLOYMENT_COLUMNS = ("deployment", "model", "deployment_type")
DEPLOYMENT_OPTIONAL_COLUMNS = ("ptu_monthly_cost", "currency")

ZERO = Decimal(0)
_MAX_REPORTED_ERRORS = 20
_MAX_RESOLVED = 10_000
_VERSION_COMMENT = re.compile(r"#\s*version\s*:\s*(\S.*?)\s*$", re.IGNORECASE)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME_WITH_OFFSET = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})", re.IGNORECASE
)
_CURRENCY = re.compile(r"[A-Z]{3}")
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


@dataclass(frozen=True, slots=True)
class RateCardRow:
    """One validated rate card row; prices are USD (or ``currency``) per 1M tokens."""

    model: str
    deployment_type: str
    effective_from: datetime
    input_per_1m: Decimal
    cached_input_per_1m: Decimal
    output_per_1m: Decimal
    currency: str
    line: int

    @property
    def input_per_token(self) -> Decimal:
        """Input price per token (exact: a Decimal exponent shift)."""
        return self.input_per_1m.scaleb(-6)

    @property
    def cached_input_per_token(self) -> Decimal:
        """Cached input price per token."""
        return self.cached_input_per_1m.scaleb(-6)

    @property
    def output_per_token(self) -> Decimal:
        """Output price per token."""
        return self.output_per_1m.scaleb(-6)


@dataclass(frozen=True, slots=True)
class _Rates:
    """Per-token prices of one row, precomputed for the hot path."""

    input: Decimal
    cached_input: Decimal
    output: Decimal
    currency: str


@dataclass(frozen=True, slots=True)
class _Series:
    """The rows of one (model, deployment type), oldest first, with their start instants."""

    starts: tuple[datetime, ...]
    rates: tuple[_Rates, ...]
    rows: tuple[RateCardRow, ...]

    def index(self, when: datetime) -> int:
        """Position of the row in force at ``when``, or -1 before the first one."""
        return bisect_right(self.starts, when) - 1

    def at(self, when: datetime) -> _Rates | None:
        index = bisect_right(self.starts, when) - 1
        return self.rates[index] if index >= 0 else None


class _Errors:
    """Collects every problem of a file so that one ConfigError lists them all, with line numbers."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.messages: list[str] = []

    def add(self, line: int, message: str) -> None:
        self.messages.append(f"line {line}: {message}")

    def raise_if_any(self) -> None:
        if not self.messages:
            return
        shown = self.messages[:_MAX_REPORTED_ERRORS]
        more = len(self.messages) - len(shown)
        tail = f"\n  ... and {more} more" if more else ""
        raise ConfigError(f"{self.source}: {len(self.messages)} error(s)\n  " + "\n  ".join(shown) + tail)


def _read_bytes(path: Path | str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} {path}: cannot read ({exc.strerror or exc})") from None


def _decode(data: bytes, source: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{source}: not UTF-8 ({exc.reason} at byte {exc.start})") from None


def _records(text: str) -> Iterator[tuple[int, list[str]]]:
    """Non-blank, non-comment CSV records with their 1-based line numbers (one record per line)."""
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        yield number, [cell.strip() for cell in next(csv.reader([line]))]


def _declared_version(text: str) -> str:
    """The ``# version: <name>`` comment before the first record, or ""."""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            break
        match = _VERSION_COMMENT.match(stripped)
        if match:
            return match[1]
    return ""


def _check_header(
    line: int, header: list[str], required: Sequence[str], optional: Sequence[str], errors: _Errors
) -> bool:
    """True when the header has every required column, no unknown, blank or repeated one."""
    ok = True
    for position, name in enumerate(header, start=1):
        if not name:
            errors.add(line, f"column {position} of the header is blank")
            ok = False
        elif name not in required and name not in optional:
            errors.add(line, f"unknown column {name!r}; expected {', '.join(required)}")
            ok = False
    for name, count in Counter(header).items():
        if name and count > 1:
            errors.add(line, f"column {name!r} appears {count} times")
            ok = False
    missing = [name for name in required if name not in header]
    if missing:
        errors.add(line, f"missing column(s) {', '.join(missing)}")
        ok = False
    return ok


def _decimal(raw: str, column: str, line: int, errors: _Errors) -> Decimal | None:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        errors.add(line, f"{column} {raw!r} is not a decimal number")
        return None
    if not value.is_finite():
        errors.add(line, f"{column} {raw!r} is not a finite number")
        return None
    if value < 0:
        errors.add(line, f"{column} {raw} is negative")
        return None
    return value


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


def _deployment_type(raw: str, line: int, errors: _Errors) -> str | None:
    value = raw.lower()
    if value in DEPLOYMENT_TYPES:
        return value
    errors.add(line, f"deployment_type {raw!r} is not one of {', '.join(DEPLOYMENT_TYPES)}")
    return None


def _currency(raw: str, line: int, errors: _Errors, *, default: str | None = None) -> str | None:
    if not raw and default is not None:
        return default
    value = raw.upper()
    if _CURRENCY.fullmatch(value):
        return value
    errors.add(line, f"currency {raw!r} is not a three-letter ISO 4217 code")
    return None


class RateCard:
    """An effective-dated price list, indexed by (model, deployment type) for ``bisect`` lookups."""

    def __init__(self, rows: Sequence[RateCardRow], version: str, source: str = "<rate card>") -> None:
        self.rows: tuple[RateCardRow, ...] = tuple(rows)
        self.version = version
        self.source = source
        self._series = self._index(self.rows)
        self._model_currency = {row.model: row.currency for row in self.rows}
        self.default_currency = self._predominant_currency(self.rows)

    @classmethod
    def load(cls, path: Path | str) -> RateCard:
        """Read and validate a rate card CSV; ConfigError lists every faulty line."""
        return cls.parse(_read_bytes(path, "rate card"), source=str(path))

    @classmethod
    def parse(cls, data: bytes, source: str = "<rate card>") -> RateCard:
        """Validate rate card bytes (see the module docstring for the rules)."""
        text = _decode(data, source)
        digest = hashlib.sha256(data).hexdigest()[:8]
        declared = _declared_version(text)
        version = f"{declared}+{digest}" if declared else f"sha256:{digest}"
        errors = _Errors(source)
        rows = _parse_rate_rows(text, errors)
        errors.raise_if_any()
        if not rows:
            raise ConfigError(f"{source}: the rate card has no price rows")
        return cls(rows, version, source)

    @staticmethod
    def _index(rows: Sequence[RateCardRow]) -> dict[tuple[str, str], _Series]:
        grouped: dict[tuple[str, str], list[RateCardRow]] = {}
        for row in rows:
            grouped.setdefault((row.model, row.deployment_type), []).append(row)
        index = {}
        for key, group in grouped.items():
            group.sort(key=lambda r: r.effective_from)
            rates = tuple(
                _Rates(r.input_per_token, r.cached_input_per_token, r.output_per_token, r.currency)
                for r in group
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

    def series(self, model: str, deployment_type: str) -> _Series | None:
        """All rows of one model and type (model compared case-insensitively), or None."""
        return self._series.get((model.lower(), deployment_type))

    def lookup(self, model: str, deployment_type: str, at: datetime) -> RateCardRow | None:
        """The row in force at ``at``: the latest ``effective_from`` <= ``at``, or None."""
        series = self.series(model, deployment_type)
        if series is None:
            return None
        index = series.index(at)
        return series.rows[index] if index >= 0 else None

    def currency_for(self, model: str) -> str:
        """The currency the card prices ``model`` in, else the card's predominant currency."""
        return self._model_currency.get(model.lower(), self.default_currency)

    def models(self) -> frozenset[str]:
        """Every model the card prices (lower case)."""
        return frozenset(row.model for row in self.rows)


def _parse_rate_rows(text: str, errors: _Errors) -> list[RateCardRow]:
    records = _records(text)
    first = next(records, None)
    if first is None:
        raise ConfigError(f"{errors.source}: no header row; expected {','.join(RATE_CARD_COLUMNS)}")
    header_line, header = first
    if not _check_header(header_line, header, RATE_CARD_COLUMNS, (), errors):
        return []
    rows: list[RateCardRow] = []
    seen: dict[tuple[str, str, datetime], int] = {}
    currencies: dict[tuple[str, str], tuple[str, int]] = {}
    for line, cells in records:
        row = _parse_rate_row(line, cells, header, errors)
        if row is None:
            continue
        key = (row.model, row.deployment_type, row.effective_from)
        if key in seen:
            errors.add(
                line,
                f"duplicate price for {row.model} {row.deployment_type} effective "
                f"{row.effective_from.isoformat()} (first on line {seen[key]})",
            )
            continue
        seen[key] = line
        first_currency = currencies.setdefault((row.model, row.deployment_type), (row.currency, line))
        if first_currency[0] != row.currency:
            errors.add(
                line,
                f"currency {row.currency} for {row.model} {row.deployment_type} differs from "
                f"{first_currency[0]} on line {first_currency[1]}; one model and type has one currency",
            )
            continue
        rows.append(row)
    return rows


def _parse_rate_row(line: int, cells: list[str], header: list[str], errors: _Errors) -> RateCardRow | None:
    if len(cells) != len(header):
        errors.add(line, f"{len(cells)} fields; the header has {len(header)}")
        return None
    values = dict(zip(header, cells, strict=True))
    before = len(errors.messages)
    model = values["model"].lower()
    if not model:
        errors.add(line, "model is blank")
    deployment_type = _deployment_type(values["deployment_type"], line, errors)
    effective_from: datetime | None = None
    try:
        effective_from = parse_effective_from(values["effective_from"])
    except ValueError as exc:
        errors.add(line, f"effective_from {exc}")
    prices = _row_prices(line, model, values, errors)
    currency = _currency(values["currency"], line, errors)
    if len(errors.messages) != before or deployment_type is None or effective_from is None:
        return None
    if prices is None or currency is None:
        return None
    input_price, cached_price, output_price = prices
    return RateCardRow(
        model, deployment_type, effective_from, input_price, cached_price, output_price, currency, line
    )


def _row_prices(
    line: int, model: str, values: dict[str, str], errors: _Errors
) -> tuple[Decimal, Decimal, Decimal] | None:
    raw_input, raw_cached, raw_output = (
        values["input_per_1m"],
        values["cached_input_per_1m"],
        values["output_per_1m"],
    )
    if not raw_input:
        errors.add(line, "input_per_1m is blank")
        return None
    input_price = _decimal(raw_input, "input_per_1m", line, errors)
    cached_price = _decimal(raw_cached, "cached_input_per_1m", line, errors) if raw_cached else input_price
    if raw_output:
        output_price = _decimal(raw_output, "output_per_1m", line, errors)
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
        return cls.parse(_read_bytes(path, "deployments map"), source=str(path))

    @classmethod
    def parse(cls, data: bytes, source: str = "<deployments>") -> DeploymentMap:
        """Validate deployments-map bytes (``deployment,model,deployment_type`` + optional PTU columns)."""
        errors = _Errors(source)
        deployments = _parse_deployments(_decode(data, source), errors)
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


def _parse_deployments(text: str, errors: _Errors) -> list[Deployment]:
    records = _records(text)
    first = next(records, None)
    if first is None:
        return []  # an empty map is valid: every deployment is then priced by its event's model
    header_line, header = first
    if not _check_header(header_line, header, DEPLOYMENT_COLUMNS, DEPLOYMENT_OPTIONAL_COLUMNS, errors):
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


def _parse_deployment(line: int, cells: list[str], header: list[str], errors: _Errors) -> Deployment | None:
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
    cost = _decimal(raw_cost, "ptu_monthly_cost", line, errors) if raw_cost else None
    currency = _currency(values.get("currency", ""), line, errors, default=DEFAULT_CURRENCY)
    if deployment_type == DeploymentType.PTU and not raw_cost:
        errors.add(line, f"ptu deployment {name!r} needs ptu_monthly_cost for the monthly allocation")
    if deployment_type not in (None, DeploymentType.PTU) and raw_cost:
        errors.add(line, f"ptu_monthly_cost is set but deployment_type is {deployment_type}, not ptu")
    if len(errors.messages) != before or deployment_type is None or currency is None:
        return None
    return Deployment(name, model, version, deployment_type, cost, currency, line)


@dataclass(frozen=True, slots=True)
class _Target:
    """What one (deployment, event model) pair is priced as; cached per pair."""

    model: str
    model_version: str
    deployment_type: str
    series: _Series | None
    currency: str


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
        if not 200 <= event.status_code <= 299:
            return self._zero(target, PricingStatus.NOT_BILLABLE)
        if event.served_from_cache:
            return self._zero(target, PricingStatus.CACHE_HIT)
        if target.deployment_type == DeploymentType.PTU:
            return self._zero(target, PricingStatus.PTU)
        rates = target.series.at(event.timestamp) if target.series is not None else None
        if rates is None:
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
            )
        # Cached tokens are part of the prompt; a count above the prompt (never valid) is capped so
        # that no meter can go negative.
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        return Price(
            target.model,
            target.model_version,
            target.deployment_type,
            (usage.prompt_tokens - cached) * rates.input,
            cached * rates.cached_input,
            usage.completion_tokens * rates.output,
            rates.currency,
            PricingStatus.PRICED,
            self.rate_card.version,
        )

    def resolve(self, deployment: str, model: str = "") -> tuple[str, str, str]:
        """``(priced model, model version, deployment type)`` for a deployment and event model."""
        target = self._target(deployment, model)
        return target.model, target.model_version, target.deployment_type

    def _zero(self, target: _Target, status: PricingStatus) -> Price:
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
            priced,
            version,
            deployment_type,
            self.rate_card.series(priced, deployment_type),
            currency or self.rate_card.currency_for(priced),
        )


def _version_against(event_model: str, priced_model: str) -> str:
    """The event model's version relative to the mapped model: ``gpt-4o-2024-08-06`` vs ``gpt-4o``."""
    lowered = event_model.strip().lower()
    if lowered == priced_model:
        return ""
    if lowered.startswith(priced_model + "-"):
        return lowered[len(priced_model) + 1 :]
    return split_model(lowered)[1]
