"""Reconcile a month's statement with the Azure Cost Management export (FOCUS) of the same month.

The question finance asks: does the chargeback explain the Azure invoice? Both sides are grouped
by meter, ``(model, deployment type, meter)`` (meters: ``input``, ``cached-input``, ``output``,
the other token meters of the rate card, and ``ptu`` for provisioned throughput), and compared:
billed cost against our cost, billed tokens against the tokens that passed APIM.

Azure's side (``azure_lines``) takes the rows of Azure OpenAI / Foundry Models resources
(``ResourceId`` under ``Microsoft.CognitiveServices/accounts`` and an OpenAI/Foundry service or
meter category) charged in the month. The meter comes from Microsoft's ``x_SkuMeterName`` (else
``SkuMeter``, ``x_SkuDescription``, ``ChargeDescription``): the model is the longest of our models
whose words open the meter name; direction, cached, modality and deployment scope come from the
abbreviations Azure uses (``Inp``/``Inpt``, ``Outp``/``opt``, ``cached``/``cchd``/``cd``,
``glbl``/``DZ``/``rgnl``, ``Batch``, ``pp``/``prty``, ``aud``, ``img``). Token quantities may be
written in blocks of the meter's unit (a ``1M Tokens`` meter with PricingQuantity 535.137 is 535.137
million tokens) or in tokens: the basis is detected from cost ÷ list price (``ListCost ≈
PricingQuantity x ListUnitPrice`` means blocks, ``≈ PricingQuantity x ListUnitPrice / block`` means
tokens; otherwise the tokens are derived from ListCost ÷ ListUnitPrice).

Our side (``our_lines``) is the published FOCUS statement itself (usage rows by ``x_Model``,
``x_DeploymentType``, ``x_Meter``; PTU allocation rows as ``ptu``), so the comparison is with the
numbers teams are charged, to the cent.

Every gap is decomposed exactly (``variance = billed - ours = quantity + price + discount +
unpriced``) with ``p`` our unit price (our cost ÷ our priced tokens)::

    quantity  = (billed tokens - our tokens) x p        tokens Azure billed that no APIM call explains
    price     = ListCost - billed tokens x p            Azure's list price differs from our rate card
    discount  = BilledCost - ListCost                  agreements, credits, reservations
    unpriced  = our unpriced tokens x p                tokens we saw but our rate card could not price

The likely cause of each line is named from the components that are not zero at the cent:
``bypassed-apim`` (Azure billed more tokens than passed APIM), ``over-counted`` (APIM counted more
than Azure billed: estimates, usage billed in another period), ``price``, ``discount``,
``unpriced``, ``ptu`` (hourly provisioned throughput against our allocation), ``not-billed``, or
``match``; a line whose gaps are all under the cent names the causes of those not zero at 6
decimals (``match`` only when every gap is zero). The causes' totals take each gap, however small,
so they sum exactly to the variance. Coverage is the share of the invoice whose tokens our rows account for.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from chargeback.errors import ConfigError

CENT = Decimal("0.01")
MILLION = Decimal(1_000_000)
TOLERANCE = Decimal("0.005")  # a component under half a cent is rounding, not a cause
PTU = "ptu"
OUR_PTU_METER = "ptu-allocation"
CSV_KIND = "reconcile.csv"
JSON_KIND = "reconcile.json"

RECONCILE_COLUMNS = (
    "Model",
    "DeploymentType",
    "Meter",
    "Currency",
    "AzureMeters",
    "BilledCost",
    "ListCost",
    "OurCost",
    "Variance",
    "VariancePct",
    "BilledTokens",
    "OurTokens",
    "TokenGap",
    "QuantityGapCost",
    "PriceGapCost",
    "DiscountCost",
    "UnpricedCost",
    "ExplainedCost",
    "Coverage",
    "QuantityBasis",
    "Cause",
    "Explanation",
)

# Words of Azure meter names (Retail Prices API / cost details), after lower-casing and splitting
# on spaces, hyphens and underscores.
_CACHED = {"cached", "cchd", "cd", "cache", "cchd.", "cached-input"}
_WRITE = {"wr", "write"}
_INPUT = {"inp", "inpt", "input", "in", "inpt."}
_OUTPUT = {"outp", "opt", "out", "output", "outpt", "otpt"}
_AUDIO = {"aud", "audio"}
_IMAGE = {"img", "image"}
_GLOBAL = {"glbl", "gl", "global", "glb", "gbl"}
_DATAZONE = {"dz", "dzone", "datazone"}
_REGIONAL = {"regnl", "rgnl", "regional", "regn", "rgnl."}
_BATCH = {"batch", "btch"}
_PRIORITY = {"pp", "prty", "priority"}
_PTU = {"ptu", "provisioned", "ptum", "pu"}
# Per-unit meters (DESIGN's names): images, transcription hours, text-to-speech characters.
_IMAGES = {"images", "image-generation"}
_HOURS = {"hour", "hours", "hrs"}
_CHARACTERS = {"characters", "character", "chars"}
_NOISE = {"tokens", "token", "1m", "1k", "million", "thousand", "units", "unit"}
_RESOURCE = re.compile(r"/providers/microsoft\.cognitiveservices/accounts/", re.IGNORECASE)
_SERVICES = ("openai", "foundry models", "cognitive services", "ai services", "foundry")
_BLOCK = re.compile(r"^\s*([\d.,]+)\s*([km]?)\b", re.IGNORECASE)


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s\-_/,()]+", text.lower()) if w]


def _decimal(value: str | None) -> Decimal:
    """A cost export number (blank is zero); never a float."""
    text = (value or "").strip()
    if not text:
        return Decimal(0)
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ConfigError(f"{value!r} is not a number in the cost export") from None
    if not number.is_finite():
        raise ConfigError(f"{value!r} is not a finite number in the cost export")
    return number


def _fixed(value: Decimal, places: Decimal = Decimal("0.000001")) -> str:
    return f"{value.quantize(places):f}"


@dataclass(frozen=True, slots=True)
class Meter:
    """What an Azure meter name says: model, deployment type, our meter name; ``known`` if mapped."""

    model: str
    deployment_type: str
    meter: str
    known: bool


def parse_meter(name: str, models: Iterable[str]) -> Meter:
    """Map an Azure meter name (``gpt-4o-mini-0718-Inp-glbl``, ``gpt 4o 0806 cchd Inp DZ``) to our meter.

    ``models`` are the model names to recognise (ours): the longest whose words open the meter name
    wins, also when the meter writes them without separators (``gpt4o``).
    """
    words = _words(name)
    compact = "".join(words)
    best = ""
    best_len = 0
    for model in models:
        target = _words(model)
        if not target:
            continue
        joined = "".join(target)
        if (words[: len(target)] == target or compact.startswith(joined)) and len(joined) > best_len:
            best, best_len = model, len(joined)
    rest_start = 0
    if best:
        consumed = ""
        for index, word in enumerate(words):
            if len(consumed) >= best_len:
                rest_start = index
                break
            consumed += word
        else:
            rest_start = len(words)
    rest = words[rest_start:]
    flags = set(rest)
    if flags & _PTU or "provisioned" in words:
        return Meter(best or "*", PTU, PTU, True)
    cached = bool(flags & _CACHED)
    write = cached and bool(flags & _WRITE)
    # a meter without a direction (embeddings) is an input meter
    direction = "output" if flags & _OUTPUT else "input" if (flags & _INPUT or cached or best) else ""
    modality = "audio-" if flags & _AUDIO else "image-" if flags & _IMAGE else ""
    if flags & _IMAGES or any(re.fullmatch(r"\d{3,4}x\d{3,4}", word) for word in rest):
        meter = "images"
    elif flags & _HOURS:
        meter = "audio-seconds"
    elif flags & _CHARACTERS:
        meter = "characters"
    elif write:
        meter = f"{modality}cache-write"
    elif direction:
        meter = f"{'cached-' if cached else ''}{modality}{direction}"
        if modality and cached:
            meter = f"cached-{modality}input"
    else:
        meter = ""
    if flags & _DATAZONE or ("data" in flags and "zone" in flags):
        scope = "datazone"
    elif flags & _REGIONAL:
        scope = "regional"
    elif flags & _GLOBAL:
        scope = "global"
    else:
        scope = "regional"  # Standard (regional) meters were named before Global ones had a suffix
    if flags & _BATCH:
        scope = f"{scope if scope != 'regional' else 'global'}-batch"
    elif flags & _PRIORITY:
        scope = "priority"
    if not best:
        stop = next(
            (i for i, w in enumerate(words) if w in _INPUT | _OUTPUT | _CACHED | _GLOBAL | _DATAZONE),
            len(words),
        )
        guess = "-".join(w for w in words[:stop] if w not in _NOISE) or name.strip()
        return Meter(guess, scope, meter or "other", False)
    return Meter(best, scope, meter or "other", bool(meter))


def _block(unit: str, block_size: str = "") -> Decimal:
    """The number of units one price is for: ``1M Tokens`` → 1,000,000, ``1K`` → 1,000, ``Tokens`` → 1."""
    match = _BLOCK.match(unit or "")
    if match:
        number = Decimal(match[1].replace(",", ""))
        scale = {"": 1, "k": 1_000, "m": 1_000_000}[match[2].lower()]
        return number * scale
    size = (block_size or "").strip()
    if size:
        try:
            value = Decimal(size)
            if value > 0:
                return value
        except InvalidOperation:
            pass
    return Decimal(1)


def _close(a: Decimal, b: Decimal, rel: Decimal = Decimal("0.002")) -> bool:
    return abs(a - b) <= max(abs(b) * rel, Decimal("0.000001"))


def billed_tokens(row: Mapping[str, str]) -> tuple[Decimal, str]:
    """Tokens of one export row and how its quantity was read (``blocks of 1M Tokens``, ``tokens``, ...).

    PricingQuantity is in blocks when ListCost ≈ quantity x ListUnitPrice, in tokens when ListCost ≈
    quantity x ListUnitPrice / block; otherwise the tokens are ListCost ÷ ListUnitPrice x block.
    """
    unit = row.get("PricingUnit", "") or row.get("x_PricingUnitDescription", "")
    description = row.get("x_PricingUnitDescription", "")
    block = _block(unit, row.get("x_PricingBlockSize", ""))
    if block == 1 and description:
        block = _block(description, row.get("x_PricingBlockSize", ""))
    quantity = _decimal(row.get("PricingQuantity") or row.get("ConsumedQuantity"))
    price = _decimal(
        row.get("ListUnitPrice") or row.get("ContractedUnitPrice") or row.get("x_BilledUnitPrice")
    )
    cost = _decimal(row.get("ListCost") or row.get("ContractedCost") or row.get("BilledCost"))
    label = unit.strip() or f"{block} units"
    if price > 0 and cost > 0 and quantity > 0:
        if _close(quantity * price, cost):
            return quantity * block, f"blocks of {label}" if block != 1 else "tokens"
        if block != 1 and _close(quantity * price / block, cost):
            return quantity, "tokens"
        return (cost / price * block).quantize(Decimal(1)), "from ListCost / ListUnitPrice"
    return quantity * block, f"blocks of {label}" if block != 1 else "tokens"


def is_openai_row(row: Mapping[str, str]) -> bool:
    """True for a cost row of an Azure OpenAI / Foundry Models resource."""
    resource = (
        row.get("ResourceId", "") + " " + row.get("x_ResourceType", "") + " " + row.get("ResourceType", "")
    )
    cognitive = bool(_RESOURCE.search(row.get("ResourceId", ""))) or "cognitiveservices" in resource.lower()
    service = " ".join(
        row.get(column, "")
        for column in ("ServiceName", "x_SkuMeterCategory", "x_SkuMeterSubcategory", "x_SkuServiceFamily")
    ).lower()
    return cognitive and any(word in service for word in _SERVICES)


def _meter_name(row: Mapping[str, str]) -> str:
    for column in ("x_SkuMeterName", "SkuMeter", "x_SkuDescription", "ChargeDescription"):
        value = row.get(column, "").strip()
        if value:
            return value
    return ""


def _period(row: Mapping[str, str]) -> str:
    return (row.get("ChargePeriodStart") or row.get("BillingPeriodStart") or "")[:7]


@dataclass(slots=True)
class Side:
    """One side's totals for one meter key."""

    cost: Decimal = Decimal(0)
    list_cost: Decimal = Decimal(0)
    tokens: Decimal = Decimal(0)
    unpriced_tokens: Decimal = Decimal(0)
    names: set[str] = field(default_factory=set)
    bases: set[str] = field(default_factory=set)
    rows: int = 0


Key = tuple[str, str, str, str]  # model, deployment type, meter, currency


@dataclass(slots=True)
class AzureSide:
    """What the cost export holds for the month."""

    lines: dict[Key, Side]
    rows_read: int = 0
    rows_taken: int = 0
    rows_other_services: int = 0
    rows_other_months: int = 0


def azure_lines(rows: Iterable[Mapping[str, str]], month: str, models: Iterable[str]) -> AzureSide:
    """Group the month's Azure OpenAI rows of a cost export by our meter key."""
    known = sorted(set(models))
    side = AzureSide({})
    for row in rows:
        side.rows_read += 1
        if not is_openai_row(row):
            side.rows_other_services += 1
            continue
        if _period(row) and _period(row) != month:
            side.rows_other_months += 1
            continue
        side.rows_taken += 1
        name = _meter_name(row)
        meter = parse_meter(name, known)
        currency = row.get("BillingCurrency", "") or row.get("PricingCurrency", "")
        key = (meter.model, meter.deployment_type, meter.meter, currency)
        entry = side.lines.setdefault(key, Side())
        entry.rows += 1
        entry.names.add(name)
        billed = _decimal(row.get("BilledCost"))
        listed = _decimal(row.get("ListCost")) if row.get("ListCost", "").strip() else billed
        entry.cost += billed
        entry.list_cost += listed
        if meter.meter != PTU:
            tokens, basis = billed_tokens(row)
            entry.tokens += tokens
            entry.bases.add(basis)
    return side


def our_lines(focus_csv: bytes) -> dict[Key, Side]:
    """Group our published FOCUS statement by meter key (PTU allocations as one ``ptu`` key)."""
    lines: dict[Key, Side] = {}
    reader = csv.DictReader(io.StringIO(focus_csv.decode("utf-8")))
    for row in reader:
        meter = row.get("x_Meter", "")
        currency = row.get("BillingCurrency", "")
        cost = _decimal(row.get("BilledCost"))
        if meter == OUR_PTU_METER or row.get("x_DeploymentType") == PTU:
            key: Key = ("*", PTU, PTU, currency)
            entry = lines.setdefault(key, Side())
            entry.cost += cost
            entry.list_cost += cost
            entry.rows += 1
            entry.names.add(row.get("x_PtuDeployment", "") or row.get("SkuId", ""))
            continue
        key = (row.get("x_Model", ""), row.get("x_DeploymentType", ""), meter, currency)
        entry = lines.setdefault(key, Side())
        tokens = _decimal(row.get("x_Tokens") or row.get("ConsumedQuantity"))
        entry.cost += cost
        entry.list_cost += cost
        entry.tokens += tokens
        entry.rows += 1
        if row.get("x_PricingStatus") == "unpriced":
            entry.unpriced_tokens += tokens
    return lines


@dataclass(frozen=True, slots=True)
class ReconcileLine:
    """One meter key compared: both sides, the variance and its parts, and the likely cause."""

    model: str
    deployment_type: str
    meter: str
    currency: str
    azure_meters: tuple[str, ...]
    billed_cost: Decimal
    list_cost: Decimal
    our_cost: Decimal
    billed_tokens: Decimal
    our_tokens: Decimal
    quantity_gap: Decimal
    price_gap: Decimal
    discount: Decimal
    unpriced: Decimal
    explained: Decimal
    basis: str
    causes: tuple[str, ...]
    explanation: str

    @property
    def variance(self) -> Decimal:
        """Billed minus ours."""
        return self.billed_cost - self.our_cost

    @property
    def token_gap(self) -> Decimal:
        """Billed tokens minus ours."""
        return self.billed_tokens - self.our_tokens


def _tokens_text(value: Decimal) -> str:
    return f"{value.quantize(Decimal(1)):,f}"


def compare_line(key: Key, azure: Side | None, ours: Side | None) -> ReconcileLine:
    """Compare one meter key; the four components sum exactly to the variance."""
    model, deployment_type, meter, currency = key
    a = azure or Side()
    o = ours or Side()
    billed, listed, our_cost = a.cost, a.list_cost, o.cost
    tb, to = a.tokens, o.tokens
    priced_tokens = to - o.unpriced_tokens
    causes: list[str] = []
    notes: list[str] = []
    if meter == PTU:
        quantity = Decimal(0)
        price = listed - our_cost
        discount = billed - listed
        unpriced = Decimal(0)
        explained = min(billed, our_cost) if billed > 0 else Decimal(0)
        causes.append("ptu")
        notes.append(
            f"provisioned throughput: Azure billed {_fixed(billed, CENT)} by the hour, "
            f"we allocated {_fixed(our_cost, CENT)} from the deployments map's monthly cost"
        )
    else:
        if priced_tokens > 0:
            unit = our_cost / priced_tokens
        elif tb > 0:
            unit = listed / tb
        else:
            unit = Decimal(0)
        quantity = (tb - to) * unit
        price = listed - tb * unit
        discount = billed - listed
        unpriced = o.unpriced_tokens * unit
        if tb == 0 and to == 0 and listed != 0:  # a cost without tokens (e.g. a fee): all price
            price = listed
        explained = billed * min(Decimal(1), to / tb) if tb > 0 else Decimal(0)
        if azure is None:
            causes.append("not-billed")
            notes.append(
                f"{_tokens_text(to)} tokens through APIM with no row in the cost export "
                "(another subscription's resource, or billed in another month)"
            )
        elif abs(quantity) >= TOLERANCE or (to == 0 and tb > 0):
            if tb > to:
                causes.append("bypassed-apim")
                notes.append(
                    f"Azure billed {_tokens_text(tb - to)} tokens that no APIM call explains "
                    "(calls that bypassed APIM, e.g. keys used directly or another app on the resource)"
                )
            else:
                causes.append("over-counted")
                notes.append(
                    f"APIM counted {_tokens_text(to - tb)} tokens more than Azure billed "
                    "(estimated or recounted usage, or usage billed in another period)"
                )
        if abs(price) >= TOLERANCE and azure is not None:
            causes.append("price")
            if tb > 0 and priced_tokens > 0:
                notes.append(
                    f"Azure's list price {_fixed(listed / tb * MILLION)} per 1M tokens differs from "
                    f"the rate card's {_fixed(our_cost / priced_tokens * MILLION)}"
                )
            else:
                notes.append("Azure's list price differs from the rate card")
    if abs(discount) >= TOLERANCE:
        causes.append("discount")
        notes.append(f"billed {_fixed(-discount, CENT)} below list (agreement, credit or reservation)")
    if abs(unpriced) >= TOLERANCE or o.unpriced_tokens > 0:
        causes.append("unpriced")
        notes.append(f"{_tokens_text(o.unpriced_tokens)} tokens our rate card could not price")
    if not causes:
        # Gaps under the tolerance still name their cause: a line is a match only when every gap is
        # zero at 6 decimals (else the causes would not add up to the variance).
        causes.extend(
            cause
            for cause, _ in _minor_causes(
                meter,
                not_billed=azure is None,
                billed_tokens=tb,
                our_tokens=to,
                quantity=quantity,
                price=price,
                discount=discount,
                unpriced=unpriced,
            )
        )
    if not causes:
        causes.append("match")
    return ReconcileLine(
        model=model,
        deployment_type=deployment_type,
        meter=meter,
        currency=currency,
        azure_meters=tuple(sorted(a.names)),
        billed_cost=billed,
        list_cost=listed,
        our_cost=our_cost,
        billed_tokens=tb,
        our_tokens=to,
        quantity_gap=quantity,
        price_gap=price,
        discount=discount,
        unpriced=unpriced,
        explained=explained,
        basis="; ".join(sorted(a.bases)),
        causes=tuple(causes),
        explanation="; ".join(notes),
    )


def _quantity_cause(not_billed: bool, billed_tokens: Decimal, our_tokens: Decimal) -> str:
    if not_billed:
        return "not-billed"
    return "bypassed-apim" if billed_tokens > our_tokens else "over-counted"


def _minor_causes(
    meter: str,
    *,
    not_billed: bool,
    billed_tokens: Decimal,
    our_tokens: Decimal,
    quantity: Decimal,
    price: Decimal,
    discount: Decimal,
    unpriced: Decimal,
) -> list[tuple[str, Decimal]]:
    """The causes of the gaps that are not zero at 6 decimals, each with its gap."""
    if meter == PTU:
        parts = [("ptu", quantity + price + unpriced), ("discount", discount)]
    else:
        parts = [
            (_quantity_cause(not_billed, billed_tokens, our_tokens), quantity),
            ("price", price),
            ("discount", discount),
            ("unpriced", unpriced),
        ]
    return [(cause, gap) for cause, gap in parts if gap.quantize(Decimal("0.000001")) != 0]


def line_causes(line: ReconcileLine) -> dict[str, Decimal]:
    """The line's variance split by cause: each gap goes to its own cause, however small, so the
    amounts sum exactly to the variance (a PTU line's gaps are all ``ptu`` but its discount)."""
    if line.meter == PTU:
        parts = {"ptu": line.variance - line.discount, "discount": line.discount}
    else:
        parts = {
            _quantity_cause(
                "not-billed" in line.causes, line.billed_tokens, line.our_tokens
            ): line.quantity_gap,
            "price": line.price_gap,
            "discount": line.discount,
            "unpriced": line.unpriced,
        }
        # the components sum to the variance but for the rounding of Decimal division: the largest
        # takes that remainder (1e-28 or so)
        largest = max(parts, key=lambda cause: abs(parts[cause]))
        parts[largest] += line.variance - sum(parts.values(), Decimal(0))
    return {cause: amount for cause, amount in parts.items() if amount != 0}


@dataclass(frozen=True, slots=True)
class Reconciliation:
    """A month compared, line by line, with totals per currency."""

    month: str
    lines: tuple[ReconcileLine, ...]
    rows_read: int
    rows_taken: int
    rows_other_services: int
    rows_other_months: int

    def totals(self) -> dict[str, dict[str, Decimal]]:
        """Per currency: billed, list, ours, variance, its components, explained cost, coverage."""
        result: dict[str, dict[str, Decimal]] = {}
        for line in self.lines:
            t = result.setdefault(
                line.currency,
                {
                    name: Decimal(0)
                    for name in (
                        "billed",
                        "list",
                        "ours",
                        "variance",
                        "quantity",
                        "price",
                        "discount",
                        "unpriced",
                        "explained",
                    )
                },
            )
            t["billed"] += line.billed_cost
            t["list"] += line.list_cost
            t["ours"] += line.our_cost
            t["variance"] += line.variance
            t["quantity"] += line.quantity_gap
            t["price"] += line.price_gap
            t["discount"] += line.discount
            t["unpriced"] += line.unpriced
            t["explained"] += line.explained
        for t in result.values():
            t["coverage"] = t["explained"] / t["billed"] if t["billed"] else Decimal(0)
        return result

    def causes(self) -> dict[str, Decimal]:
        """Each cause with the gaps it explains, sub-tolerance ones included: they sum to the variance."""
        found: dict[str, Decimal] = {}
        for line in self.lines:
            for cause in line.causes:  # a named cause is listed even when its gaps are zero
                if cause != "match":
                    found.setdefault(cause, Decimal(0))
            for cause, amount in line_causes(line).items():
                found[cause] = found.get(cause, Decimal(0)) + amount
        return found


def reconcile(month: str, azure: AzureSide, ours: Mapping[Key, Side]) -> Reconciliation:
    """Compare every meter key of either side (pure)."""
    keys = sorted(set(azure.lines) | set(ours))
    lines = tuple(compare_line(key, azure.lines.get(key), ours.get(key)) for key in keys)
    return Reconciliation(
        month, lines, azure.rows_read, azure.rows_taken, azure.rows_other_services, azure.rows_other_months
    )


def models_of(ours: Mapping[Key, Side]) -> set[str]:
    """The models our statement names (to recognise them in Azure's meter names)."""
    return {key[0] for key in ours if key[0] and key[0] != "*"}


def _pct(part: Decimal, whole: Decimal) -> str:
    return _fixed(part * 100 / whole, CENT) if whole else ""


def render_csv(result: Reconciliation) -> bytes:
    """The reconciliation CSV (one row per meter key, deterministic)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RECONCILE_COLUMNS)
    for line in result.lines:
        writer.writerow(
            [
                line.model,
                line.deployment_type,
                line.meter,
                line.currency,
                " | ".join(line.azure_meters),
                _fixed(line.billed_cost),
                _fixed(line.list_cost),
                _fixed(line.our_cost),
                _fixed(line.variance),
                _pct(line.variance, line.our_cost),
                _fixed(line.billed_tokens, Decimal(1)),
                _fixed(line.our_tokens, Decimal(1)),
                _fixed(line.token_gap, Decimal(1)),
                _fixed(line.quantity_gap),
                _fixed(line.price_gap),
                _fixed(line.discount),
                _fixed(line.unpriced),
                _fixed(line.explained),
                _pct(line.explained, line.billed_cost),
                line.basis,
                ";".join(line.causes),
                line.explanation,
            ]
        )
    return buffer.getvalue().encode("utf-8")


def summary(
    result: Reconciliation,
    *,
    statement: str,
    files: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    """What the reconciliation's manifest says: inputs, totals per currency, causes."""
    return {
        "month": result.month,
        "statementManifest": statement,
        "costExportFiles": [{"name": name, "sha256": digest} for name, digest in files],
        "rowsRead": result.rows_read,
        "rowsReconciled": result.rows_taken,
        "rowsOtherServices": result.rows_other_services,
        "rowsOtherMonths": result.rows_other_months,
        "totals": {
            currency: {
                "billedCost": _fixed(t["billed"], CENT),
                "listCost": _fixed(t["list"], CENT),
                "ourCost": _fixed(t["ours"], CENT),
                "variance": _fixed(t["variance"], CENT),
                "quantityGap": _fixed(t["quantity"], CENT),
                "priceGap": _fixed(t["price"], CENT),
                "discount": _fixed(t["discount"], CENT),
                "unpriced": _fixed(t["unpriced"], CENT),
                "coveragePct": _fixed(t["coverage"] * 100, CENT),
            }
            for currency, t in sorted(result.totals().items())
        },
        "causes": {cause: _fixed(amount, CENT) for cause, amount in sorted(result.causes().items())},
        "lines": len(result.lines),
    }


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dumps(data: Mapping[str, Any]) -> bytes:
    """Stable JSON bytes."""
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode("utf-8")


# ------------------------------------------------------------------------------------------------
# Files beside the statement


CONTENT_TYPES = {
    ".csv": "text/csv; charset=utf-8",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
}


def put_view(store: Any, name: str, data: bytes) -> str:
    """Write a derived file (reconciliation, report) beside the statement; returns where it is.

    Unlike the statement CSVs, a derived file is a view that can be made again from them: a later
    run replaces it (an unchanged one is left alone). Local folders replace atomically; blobs are
    uploaded with their content type.
    """
    if store.read(name) == data:
        return str(store.location(name))
    container = getattr(store, "container", None)
    folder = getattr(store, "path", None)
    if container is not None:
        from azure.storage.blob import ContentSettings

        suffix = Path(name).suffix
        settings = ContentSettings(content_type=CONTENT_TYPES.get(suffix, "application/octet-stream"))
        container.upload_blob(name, data, overwrite=True, content_settings=settings)
    elif folder is not None:
        import os

        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        temporary = target / f".{name}.partial"
        temporary.write_bytes(data)
        os.replace(temporary, target / name)
    else:
        store.create(name, data)
    return str(store.location(name))


@dataclass(frozen=True, slots=True)
class ReconcileRun:
    """A reconciliation and where its files went."""

    result: Reconciliation
    statement: str
    csv: str
    manifest: str
    summary: dict[str, Any]


def view_name(month: str, version: int, kind: str) -> str:
    """``chargeback-2026-10.reconcile.csv`` beside statement version 1, ``...v2.reconcile.csv`` after."""
    middle = "" if version == 1 else f".v{version}"
    return f"chargeback-{month}{middle}.{kind}"


def reconcile_files(
    month: str,
    files: Sequence[Path | str],
    *,
    focus_csv: bytes,
    statement: str,
    store: Any,
    version: int,
) -> ReconcileRun:
    """Read the cost export, compare it with a published statement and write the CSV and manifest."""
    from chargeback.edges.costexport import check_cost_export, read_cost_export

    paths = check_cost_export(files)
    ours = our_lines(focus_csv)
    azure = azure_lines((row for _, row in read_cost_export(paths)), month, models_of(ours))
    if azure.rows_read == 0:
        raise ConfigError(f"the cost export ({', '.join(map(str, paths))}) has no rows")
    result = reconcile(month, azure, ours)
    digests = [(path.name, sha256_file(path)) for path in paths]
    data = summary(result, statement=statement, files=digests)
    csv_at = put_view(store, view_name(month, version, CSV_KIND), render_csv(result))
    json_at = put_view(store, view_name(month, version, JSON_KIND), dumps(data))
    return ReconcileRun(result, statement, csv_at, json_at, data)


def load_summary(store: Any, month: str, version: int) -> dict[str, Any] | None:
    """The reconciliation manifest beside a statement version, if one ran."""
    raw = store.read(view_name(month, version, JSON_KIND))
    if raw is None:
        return None
    loaded: dict[str, Any] = json.loads(raw)
    return loaded


def load_lines(store: Any, month: str, version: int) -> list[dict[str, str]]:
    """The reconciliation CSV's rows beside a statement version (empty when none ran)."""
    raw = store.read(view_name(month, version, CSV_KIND))
    if raw is None:
        return []
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8"))))
