"""The monthly rollup: one KQL query, then exact Decimal regroupings of its (small) result.

``monthly_rollup.kql`` reads the month once, deduplicates on RequestId and summarizes by
subscription, model, deployment type, PTU deployment, pricing status, currency, usage source and
the unit price of each meter. That result has hundreds of rows whatever the traffic, so everything
downstream regroups it in Python with Decimals, and no raw row ever reaches pandas:

- ``meter_charges``: one charge per subscription x model x deployment type x meter (input, cached
  input, output) x unit price x region x tags, for the FOCUS export. ``Quantity`` is tokens / 1M and
  ``Cost = Quantity x UnitPrice`` exactly; the KQL float sum is checked against it.
- ``subscription_totals``: requests, tokens and per-token cost per subscription, for the summary.
- ``ptu_weighted_tokens``: the token shares of each provisioned (PTU) deployment.

PTU allocation (``allocate_ptu``): a PTU deployment's monthly cost is shared between the
subscriptions that called it, by weighted tokens ``PromptTokens + w x CompletionTokens`` (``w`` =
``output_weight``, default 4: output tokens take about four times the capacity of input tokens).
Shares are rounded to the cent with the largest-remainder method, so they sum exactly to the cost.
"""

from __future__ import annotations

import calendar
import functools
import logging
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any

from chargeback.core.focus import tags_column
from chargeback.core.pricing import Deployment
from chargeback.edges.kqlrun import KqlRunner
from chargeback.errors import ConfigError

log = logging.getLogger("chargeback.jobs.rollup")

ROLLUP_QUERY = "monthly_rollup"
VERSIONS_QUERY = "rate_card_versions"
# DESIGN's binding meter names, in statement order.
METERS = (
    "input",
    "cached-input",
    "output",
    "audio-input",
    "cached-audio-input",
    "audio-output",
    "image-input",
    "cached-image-input",
    "image-output",
    "images",
    "audio-seconds",
    "characters",
)
# What one unit of each meter's price covers, in the meter's counting unit (tokens, images,
# seconds, characters): prices are per 1M tokens, per image, per hour, per 1M characters.
METER_DIVISORS: dict[str, int] = {
    **dict.fromkeys(METERS[:9], 1_000_000),
    "images": 1,
    "audio-seconds": 3_600,
    "characters": 1_000_000,
}
# The query's columns of the non-text meters: (quantity, cost, unit price).
_METER_COLUMNS: dict[str, tuple[str, str, str]] = {
    "audio-input": ("AudioInputQuantity", "AudioInputCost", "AudioInputPrice"),
    "cached-audio-input": ("CachedAudioInputQuantity", "CachedAudioInputCost", "CachedAudioInputPrice"),
    "audio-output": ("AudioOutputQuantity", "AudioOutputCost", "AudioOutputPrice"),
    "image-input": ("ImageInputQuantity", "ImageInputCost", "ImageInputPrice"),
    "cached-image-input": ("CachedImageInputQuantity", "CachedImageInputCost", "CachedImageInputPrice"),
    "image-output": ("ImageOutputQuantity", "ImageOutputCost", "ImageOutputPrice"),
    "images": ("ImagesQuantity", "ImagesCost", "ImagesPrice"),
    "audio-seconds": ("AudioSecondsQuantity", "AudioSecondsCost", "AudioSecondsPrice"),
    "characters": ("CharactersQuantity", "CharactersCost", "CharactersPrice"),
}

# Their quantity columns: a line where every one is null (the text leg of the query) has no such meter.
_QUANTITY_COLUMNS = tuple(quantity for quantity, _, _ in _METER_COLUMNS.values())


def meter_cost(meter: str, quantity: int | Decimal, unit_price: Decimal) -> Decimal:
    """Quantity (in the meter's counting unit) x unit price, exactly for every meter but seconds."""
    return Decimal(quantity) * unit_price / METER_DIVISORS[meter]


CHARGED_STATUSES = frozenset({"priced", "unpriced"})
DEFAULT_OUTPUT_WEIGHT = Decimal(4)
MILLION = Decimal(1_000_000)
CENT = Decimal("0.01")
_MONTH = re.compile(r"(\d{4})-(0[1-9]|1[0-2])")


def month_window(month: str) -> tuple[datetime, datetime]:
    """``"2026-10"`` → (first instant of the month, first instant of the next), UTC."""
    match = _MONTH.fullmatch(month.strip())
    if match is None:
        raise ConfigError(f"month {month!r} is not YYYY-MM")
    year, number = int(match[1]), int(match[2])
    start = datetime(year, number, 1, tzinfo=UTC)
    return start, start + timedelta(days=calendar.monthrange(year, number)[1])


def month_of(moment: datetime) -> str:
    """The YYYY-MM month of an instant (UTC)."""
    return f"{moment.astimezone(UTC):%Y-%m}"


def previous_month(month: str) -> str:
    """The month before ``month``."""
    start, _ = month_window(month)
    return month_of(start - timedelta(days=1))


def to_decimal(value: Any) -> Decimal:
    """A KQL number (float, int, None/NaN for null) as a Decimal; floats via their shortest repr."""
    if value is None:
        return Decimal(0)
    if isinstance(value, float):
        return Decimal(0) if math.isnan(value) else Decimal(repr(value))
    return Decimal(str(value))


def to_int(value: Any) -> int:
    """A KQL count or token sum (may come back as float) as an int; null is 0."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 0
    return int(value)


@functools.lru_cache(maxsize=4096)
def to_price(value: Any) -> Decimal | None:
    """A unit price per 1M tokens read back by the query (6 decimals), or None when null.

    Cached: a month has a few dozen distinct prices and a rollup reads ~5 per result row (thousands).
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return Decimal(repr(float(value))).quantize(Decimal("0.000001")).normalize()


def to_text(value: Any) -> str:
    """A KQL string (None/NaN for null) as text."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


# A month's lines share a handful of tag sets: parse and re-serialize each once per process.
_tags_column = functools.lru_cache(maxsize=4096)(tags_column)


@dataclass(frozen=True, slots=True)
class RollupLine:
    """One row of ``monthly_rollup.kql``."""

    subscription_id: str
    subscription_name: str
    model: str
    deployment_type: str
    ptu_deployment: str
    pricing_status: str
    currency: str
    usage_source: str
    region: str
    tags: str
    input_price: Decimal | None
    cached_input_price: Decimal | None
    output_price: Decimal | None
    requests: int
    prompt_tokens: int
    cached_tokens: int
    input_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    input_cost: Decimal
    cached_input_cost: Decimal
    output_cost: Decimal
    # (quantity, KQL cost, unit price) of every meter with a quantity on this line; text meters are
    # what the modality meters leave of the totals above.
    meters: tuple[tuple[str, int | Decimal, Decimal, Decimal | None], ...] = ()

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RollupLine:
        """Typed line from one result record (column names as in the query)."""
        return cls(
            subscription_id=to_text(record["SubscriptionId"]),
            subscription_name=to_text(record["SubscriptionName"]),
            model=to_text(record["Model"]),
            deployment_type=to_text(record["DeploymentType"]),
            ptu_deployment=to_text(record["PtuDeployment"]),
            pricing_status=to_text(record["PricingStatus"]),
            currency=to_text(record["Currency"]),
            usage_source=to_text(record["UsageSource"]),
            region=to_text(record.get("Region")),
            tags=_tags_column(to_text(record.get("TagsText"))),
            input_price=to_price(record["InputPricePer1M"]),
            cached_input_price=to_price(record["CachedInputPricePer1M"]),
            output_price=to_price(record["OutputPricePer1M"]),
            requests=to_int(record["Requests"]),
            prompt_tokens=to_int(record["PromptTokens"]),
            cached_tokens=to_int(record["CachedTokens"]),
            input_tokens=to_int(record["InputTokens"]),
            completion_tokens=to_int(record["CompletionTokens"]),
            reasoning_tokens=to_int(record["ReasoningTokens"]),
            input_cost=to_decimal(record["InputCost"]),
            cached_input_cost=to_decimal(record["CachedInputCost"]),
            output_cost=to_decimal(record["OutputCost"]),
            meters=_line_meters(record),
        )

    def meter(self, meter: str) -> tuple[int | Decimal, Decimal, Decimal | None]:
        """(quantity in the meter's counting unit, KQL cost, unit price) of one meter."""
        for name, quantity, cost, price in self.meters:
            if name == meter:
                return quantity, cost, price
        return 0, Decimal(0), None


def _line_meters(record: Mapping[str, Any]) -> tuple[tuple[str, int | Decimal, Decimal, Decimal | None], ...]:
    """Every meter of one result record with a quantity (older results: the three text meters)."""
    get = record.get
    text = (
        ("input", "TextInputTokens", "TextInputCost", "InputPricePer1M", "InputTokens", "InputCost"),
        (
            "cached-input",
            "TextCachedTokens",
            "TextCachedInputCost",
            "CachedInputPricePer1M",
            "CachedTokens",
            "CachedInputCost",
        ),
        (
            "output",
            "TextOutputTokens",
            "TextOutputCost",
            "OutputPricePer1M",
            "CompletionTokens",
            "OutputCost",
        ),
    )
    meters: list[tuple[str, int | Decimal, Decimal, Decimal | None]] = []
    for meter, quantity_column, cost_column, price_column, total_column, total_cost_column in text:
        split = quantity_column in record
        quantity = to_int(get(quantity_column) if split else get(total_column))
        if quantity:
            cost = to_decimal(get(cost_column) if split else get(total_cost_column))
            meters.append((meter, quantity, cost, to_price(get(price_column))))
    if all(get(column) is None for column in _QUANTITY_COLUMNS):  # a text-only line (nearly all)
        return tuple(meters)
    for meter, (quantity_column, cost_column, price_column) in _METER_COLUMNS.items():
        raw = get(quantity_column)
        amount: int | Decimal = to_decimal(raw) if meter == "audio-seconds" else to_int(raw)
        if amount:
            meters.append((meter, amount, to_decimal(get(cost_column)), to_price(get(price_column))))
    return tuple(meters)


@dataclass(frozen=True, slots=True)
class Rollup:
    """A month's rollup result."""

    month: str
    start: datetime
    end: datetime
    lines: tuple[RollupLine, ...]
    rate_card_versions: tuple[str, ...] = ()
    query: str = ROLLUP_QUERY


def run_rollup(runner: KqlRunner, month: str) -> Rollup:
    """Run the month's rollup queries (in Log Analytics or on the local store)."""
    start, end = month_window(month)
    params = {"MonthStart": start, "MonthEnd": end}
    records = runner.records(ROLLUP_QUERY, params, window=(start, end))
    lines = tuple(RollupLine.from_record(record) for record in records)
    versions = runner.records(VERSIONS_QUERY, params, window=(start, end))
    names = tuple(sorted({to_text(r["RateCardVersion"]) for r in versions if to_text(r["RateCardVersion"])}))
    log.info("rollup %s: %d result rows, rate cards %s", month, len(lines), ", ".join(names) or "-")
    return Rollup(month, start, end, lines, names)


@dataclass(slots=True)
class MeterCharge:
    """One FOCUS usage row: a subscription's tokens of one meter at one unit price."""

    subscription_id: str
    subscription_name: str
    model: str
    deployment_type: str
    meter: str
    pricing_status: str
    currency: str
    unit_price: Decimal | None
    region: str = ""
    tags: str = ""
    requests: int = 0
    tokens: int | Decimal = (
        0  # the quantity in the meter's counting unit: tokens, images, seconds, characters
    )
    kql_cost: Decimal = Decimal(0)
    usage_sources: dict[str, int] = field(default_factory=dict)

    @property
    def quantity(self) -> Decimal:
        """PricingQuantity: the count in the unit of its price (1M tokens, image, hour, 1M characters)."""
        return Decimal(self.tokens) / METER_DIVISORS[self.meter]

    @property
    def cost(self) -> Decimal:
        """Quantity x unit price, exactly (0 when unpriced); seconds are priced per hour."""
        return (
            meter_cost(self.meter, self.tokens, self.unit_price)
            if self.unit_price is not None
            else Decimal(0)
        )

    def sort_key(self) -> tuple[Any, ...]:
        """Deterministic order: subscription, model, type, meter, status, price."""
        price = self.unit_price if self.unit_price is not None else Decimal(-1)
        return (
            self.subscription_id,
            self.model,
            self.deployment_type,
            METERS.index(self.meter),
            self.pricing_status,
            self.currency,
            price,
            self.region,
            self.tags,
        )


def meter_charges(rollup: Rollup) -> list[MeterCharge]:
    """FOCUS usage rows: priced and unpriced calls per meter and unit price, in a stable order."""
    charges: dict[tuple[Any, ...], MeterCharge] = {}
    for line in rollup.lines:
        if line.pricing_status not in CHARGED_STATUSES:
            continue
        # Only the meters the line has (a quantity); the charges are sorted on their whole key below.
        for meter, tokens, cost, price in line.meters:
            if tokens <= 0:
                continue
            key = (
                line.subscription_id,
                line.model,
                line.deployment_type,
                meter,
                line.pricing_status,
                line.currency,
                price,
                line.region,
                line.tags,
            )
            charge = charges.get(key)
            if charge is None:
                charge = charges[key] = MeterCharge(
                    line.subscription_id,
                    line.subscription_name,
                    line.model,
                    line.deployment_type,
                    meter,
                    line.pricing_status,
                    line.currency,
                    price,
                    line.region,
                    line.tags,
                )
            charge.subscription_name = max(charge.subscription_name, line.subscription_name)
            charge.requests += line.requests
            charge.tokens += tokens
            charge.kql_cost += cost
            charge.usage_sources[line.usage_source] = (
                charge.usage_sources.get(line.usage_source, 0) + line.requests
            )
    ordered = sorted(charges.values(), key=MeterCharge.sort_key)
    for charge in ordered:
        if charge.unit_price is not None and abs(charge.cost - charge.kql_cost) > Decimal("0.000001"):
            log.warning(
                "rollup %s: %s %s %s %s cost %s differs from quantity x price %s",
                rollup.month,
                charge.subscription_id,
                charge.model,
                charge.deployment_type,
                charge.meter,
                charge.kql_cost,
                charge.cost,
            )
    return ordered


@dataclass(slots=True)
class SubscriptionTotals:
    """A subscription's month (one currency): requests, tokens and per-token cost."""

    subscription_id: str
    subscription_name: str
    currency: str
    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    cost: Decimal = Decimal(0)
    statuses: dict[str, int] = field(default_factory=dict)

    def add(self, line: RollupLine) -> None:
        """Add one rollup line."""
        self.subscription_name = max(self.subscription_name, line.subscription_name)
        self.requests += line.requests
        self.prompt_tokens += line.prompt_tokens
        self.cached_tokens += line.cached_tokens
        self.completion_tokens += line.completion_tokens
        self.reasoning_tokens += line.reasoning_tokens
        self.statuses[line.pricing_status] = self.statuses.get(line.pricing_status, 0) + line.requests


def subscription_totals(
    rollup: Rollup, charges: Sequence[MeterCharge]
) -> dict[tuple[str, str], SubscriptionTotals]:
    """Per (subscription, currency): every call counted, cost = the sum of its FOCUS usage rows."""
    totals: dict[tuple[str, str], SubscriptionTotals] = {}
    for line in rollup.lines:
        key = (line.subscription_id, line.currency)
        entry = totals.get(key)
        if entry is None:
            entry = totals[key] = SubscriptionTotals(
                line.subscription_id, line.subscription_name, line.currency
            )
        entry.add(line)
    for charge in charges:
        totals[(charge.subscription_id, charge.currency)].cost += charge.cost
    return dict(sorted(totals.items()))


def ptu_weighted_tokens(
    lines: Iterable[tuple[str, str, int, int]], output_weight: Decimal = DEFAULT_OUTPUT_WEIGHT
) -> dict[str, dict[str, Decimal]]:
    """``{ptu deployment (lower case): {subscription: prompt + w x completion}}``.

    ``lines`` are (ptu deployment, subscription, prompt tokens, completion tokens).
    """
    weights: dict[str, dict[str, Decimal]] = {}
    for deployment, subscription, prompt, completion in lines:
        if not deployment:
            continue
        shares = weights.setdefault(deployment.lower(), {})
        shares[subscription] = shares.get(subscription, Decimal(0)) + prompt + output_weight * completion
    return weights


def rollup_ptu_lines(rollup: Rollup) -> list[tuple[str, str, int, int]]:
    """(ptu deployment, subscription, prompt, completion) of the rollup's PTU calls."""
    return [
        (line.ptu_deployment, line.subscription_id, line.prompt_tokens, line.completion_tokens)
        for line in rollup.lines
        if line.ptu_deployment and line.pricing_status == "ptu"
    ]


def largest_remainder(
    total: Decimal, weights: Mapping[str, Decimal], unit: Decimal = CENT
) -> dict[str, Decimal]:
    """Split ``total`` by ``weights`` into multiples of ``unit`` that sum exactly to ``total``.

    Each share is floored to the unit; the units left over go one each to the largest remainders
    (ties: the larger weight, then the key in sorted order, so the result is deterministic).
    Zero or negative weights get nothing; with no positive weight the result is empty.
    """
    units = total / unit
    if units != units.to_integral_value():
        raise ValueError(f"{total} is not a whole number of {unit}")
    whole = int(units)
    positive = {key: Fraction(weight) for key, weight in weights.items() if weight > 0}
    weight_sum = sum(positive.values(), Fraction(0))
    if not positive or weight_sum == 0:
        return {}
    exact = {key: whole * weight / weight_sum for key, weight in positive.items()}
    floors = {key: math.floor(value) for key, value in exact.items()}
    left = whole - sum(floors.values())
    ranked = sorted(exact, key=lambda key: (-(exact[key] - floors[key]), -positive[key], key))
    for key in ranked[:left]:
        floors[key] += 1
    return {key: unit * floors[key] for key in sorted(floors)}


@dataclass(frozen=True, slots=True)
class PtuAllocation:
    """One subscription's share of one PTU deployment's monthly cost."""

    deployment: Deployment
    subscription_id: str
    weighted_tokens: Decimal
    total_weighted_tokens: Decimal
    amount: Decimal
    cost: Decimal  # the cost allocated (the deployment's monthly cost, or the part accrued so far)

    @property
    def unallocated(self) -> bool:
        """True for the row carrying a PTU cost that no subscription used."""
        return not self.subscription_id


def allocate_ptu(
    deployments: Sequence[Deployment],
    weighted: Mapping[str, Mapping[str, Decimal]],
    *,
    fraction: Decimal = Decimal(1),
) -> list[PtuAllocation]:
    """Allocate each PTU deployment's cost (x ``fraction`` of the month) by weighted token share.

    A deployment nobody called in the period keeps its cost on one unallocated row (empty
    subscription), so the cost never disappears from the statement.
    """
    allocations: list[PtuAllocation] = []
    for deployment in sorted(deployments, key=lambda d: d.deployment.lower()):
        monthly = deployment.ptu_monthly_cost or Decimal(0)
        cost = (monthly * fraction).quantize(CENT)
        shares = weighted.get(deployment.deployment.lower(), {})
        total_weight = sum(shares.values(), Decimal(0))
        split = largest_remainder(cost, shares)
        if not split:
            allocations.append(PtuAllocation(deployment, "", Decimal(0), Decimal(0), cost, cost))
            continue
        for subscription, amount in split.items():
            allocations.append(
                PtuAllocation(deployment, subscription, shares[subscription], total_weight, amount, cost)
            )
    return allocations
