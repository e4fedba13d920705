"""Azure documents to our configuration: Retail Prices API items to a v2 rate card, and
``az cognitiveservices account deployment list`` to a deployments map. Pure: text in, rows out.

Retail Prices API (``https://prices.azure.com/api/retail/prices``, saved responses: ``{"Items": [...],
"NextPageLink": ...}``). Azure OpenAI items have ``serviceName`` "Cognitive Services" (older) or
"Foundry Models", a ``productName`` naming Azure OpenAI, and a ``meterName`` that encodes the model
and version, the deployment scope, the direction, caching, batch or priority and the modality, with
abbreviations and separators that vary from product to product ("gpt 4.1 Inp glbl Tokens",
"GPT 5 Mini Inpt DZone 1M Tokens", "gpt-4o-0513 Inp regnl Tokens", "5.4 opt Gl 1M Tokens"). The
parser is driven by the tables below: each word of a meter name is a keyword of one table or part
of the model name. ``unitOfMeasure`` is read on every item ("1K", "1M", "1 Hour", "100", ...).
Anything it cannot map (cache writes, fine-tuning hosting, training, unknown units, conflicting
prices) is reported with the reason, never guessed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from chargeback.core.pricing import RATE_CARD_V2_COLUMNS, deployment_type_of, split_model
from chargeback.errors import ConfigError

SERVICES = frozenset({"cognitive services", "foundry models"})

# Words of a meter name, by what they say. Lower case; a name is split on spaces and on "-" or "_"
# between keywords (model names keep their own hyphens).
DIRECTION = {"inp": "input", "inpt": "input", "input": "input", "in": "input"}
DIRECTION |= {"outp": "output", "opt": "output", "out": "output", "output": "output", "outpt": "output"}
CACHED = frozenset({"cached", "cchd", "cd", "cache", "cached-input", "cchd-inp"})
CACHE_WRITE = frozenset({"wr", "write"})
SCOPE = {"glbl": "global", "gl": "global", "global": "global", "glb": "global", "gbl": "global"}
SCOPE |= {"dz": "datazone", "dzone": "datazone", "datazone": "datazone", "dzn": "datazone"}
SCOPE |= {
    "regnl": "regional",
    "rgnl": "regional",
    "regional": "regional",
    "rgl": "regional",
    "reg": "regional",
}
BATCH = frozenset({"batch", "btch", "bt"})
PRIORITY = frozenset({"pp", "prty", "priority", "pri"})
# "text" alone is not a modality word: it begins "text-embedding-3-small".
MODALITY = {"aud": "audio", "audio": "audio", "img": "image", "image": "image", "txt": "text"}
REALTIME = frozenset({"rt", "realtime"})
NOISE = frozenset(
    {"tokens", "token", "1m", "1k", "per", "units", "unit", "data", "zone", "hour", "hours", "hrs"}
    | {"images", "characters", "chars", "character"}
)
# Full words that are part of model names when hyphenated into one ("gpt-image-1", "gpt-realtime").
MODEL_WORDS = frozenset(
    {"image", "audio", "realtime", "text", "mini", "nano", "chat", "pro", "codex", "preview"}
)
NOT_PRICED_HERE = {
    "ft": "fine-tuning (training and hosting are billed per hour, outside this card)",
    "training": "fine-tuning training",
    "hosting": "fine-tuning hosting",
    "grader": "fine-tuning grader",
    "ptu": "provisioned throughput (allocated monthly from deployments.csv)",
    "provisioned": "provisioned throughput (allocated monthly from deployments.csv)",
    "reservation": "reservation",
    "session": "per-session fee",
    "tool": "tool calls",
    "search": "tool calls",
    "container": "code interpreter containers",
    "storage": "storage",
}
# Short versions in meter names -> the version the service reports.
VERSION_ALIASES = {
    "gpt-4o-0513": "gpt-4o-2024-05-13",
    "gpt-4o-0806": "gpt-4o-2024-08-06",
    "gpt-4o-1120": "gpt-4o-2024-11-20",
    "gpt-4o-mini-0718": "gpt-4o-mini-2024-07-18",
    "gpt-35-turbo-0125": "gpt-35-turbo-0125",
}
IMAGE_SIZE = re.compile(r"\d{3,4}x\d{3,4}")
IMAGE_QUALITY = {"hd": "hd", "standard": "standard", "std": "standard", "low": "low", "medium": "medium"}
IMAGE_QUALITY |= {"high": "high"}


@dataclass(frozen=True, slots=True)
class PriceRow:
    """One v2 rate card row."""

    model: str
    deployment_type: str
    effective_from: str
    meter: str
    unit: str
    price: Decimal
    currency: str

    def key(self) -> tuple[str, str, str, str]:
        return (self.model, self.deployment_type, self.meter, self.effective_from)


@dataclass(slots=True)
class Import:
    """What an import produced: the rows, and every item it skipped with the reason."""

    rows: list[PriceRow] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (meterName, reason)
    items: int = 0
    more_pages: bool = False


def load_items(texts: Iterable[tuple[str, str]]) -> tuple[list[dict[str, Any]], bool]:
    """Items of saved API responses ``(source, text)``; True when the last one names a next page."""
    items: list[dict[str, Any]] = []
    more = False
    for source, text in texts:
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{source}: not JSON ({exc}); save the API response as it came") from None
        page = document.get("Items") if isinstance(document, dict) else document
        if not isinstance(page, list):
            raise ConfigError(f"{source}: no Items array; expected a Retail Prices API response")
        items.extend(item for item in page if isinstance(item, dict))
        link = document.get("NextPageLink") if isinstance(document, dict) else None
        # A link with $top=0 asks for nothing more: not a real next page.
        more = isinstance(link, str) and bool(link) and "$top=0" not in link.replace("%24", "$")
    return items, more


def import_retail_prices(items: Sequence[Mapping[str, Any]], *, region: str = "") -> Import:
    """Azure OpenAI items to v2 rows: one row per (model, type, meter, date); conflicts are skipped."""
    result = Import(items=len(items))
    seen: dict[tuple[str, str, str, str], PriceRow] = {}
    for item in items:
        name = str(item.get("meterName") or "")
        service = str(item.get("serviceName") or "").lower()
        product = str(item.get("productName") or "")
        if service not in SERVICES or "openai" not in product.lower().replace(" ", ""):
            continue
        if region and str(item.get("armRegionName") or "").lower() not in (region.lower(), "global", ""):
            continue
        if str(item.get("type") or "Consumption") != "Consumption":
            result.skipped.append(
                (name, f"type {item.get('type')} (only Consumption prices are list prices)")
            )
            continue
        try:
            row = _row(item)
        except _Unmapped as exc:
            result.skipped.append((name, str(exc)))
            continue
        existing = seen.get(row.key())
        if existing is None:
            seen[row.key()] = row
        elif existing.price != row.price:
            result.skipped.append(
                (name, f"price {row.price} differs from {existing.price} for the same meter (pass --region)")
            )
    result.rows = sorted(seen.values(), key=lambda r: (r.model, r.deployment_type, r.meter, r.effective_from))
    return result


class _Unmapped(ValueError):
    """A meter the tables cannot map, with the reason."""


_SPLIT = re.compile(r"[\s_/]+")


def _row(item: Mapping[str, Any]) -> PriceRow:
    name = str(item.get("meterName") or "")
    words = [w for w in _SPLIT.split(name.strip().lower()) if w]
    if not words:
        raise _Unmapped("no meterName")
    direction = scope = modality = ""
    cached = batch = priority = realtime = False
    quality = size = ""
    model_words: list[str] = []
    for word in words:
        # Hyphens join keywords as often as model parts ("gpt-4o-rt-aud", "cchd-inp"): split, and
        # whatever no table claims is the model's ("gpt", "4o").
        split = "-" in word and not IMAGE_SIZE.fullmatch(word)
        parts = word.split("-") if split else [word]
        for part in parts:
            if not part:
                continue
            if split and part in MODEL_WORDS:
                model_words.append(part)  # "gpt-image-1", "gpt-4o-audio-preview", "gpt-realtime"
                continue
            if part in NOT_PRICED_HERE:
                raise _Unmapped(NOT_PRICED_HERE[part])
            if part in CACHE_WRITE:
                raise _Unmapped("cache write (not a meter of this card)")
            if part in DIRECTION:
                direction = DIRECTION[part]
            elif part in CACHED:
                cached = True
            elif part in SCOPE:
                scope = SCOPE[part]
            elif part in BATCH:
                batch = True
            elif part in PRIORITY:
                priority = True
            elif part in MODALITY:
                modality = MODALITY[part]
            elif part in REALTIME:
                realtime = True
            elif IMAGE_SIZE.fullmatch(part):
                size = part
            elif (
                part in IMAGE_QUALITY and model_words and ("image" in name.lower() or IMAGE_SIZE.search(name))
            ):
                quality = IMAGE_QUALITY[part]
            elif part in NOISE:
                if part in ("data", "zone") and "data" in words and "zone" in words:
                    scope = "datazone"
            else:
                model_words.append(part)
    unit, price = _unit(item, name)
    model = _model(
        model_words, str(item.get("productName") or ""), realtime=realtime, audio=modality == "audio"
    )
    meter = _meter(name, unit, direction, modality, cached=cached, quality=quality, size=size)
    deployment_type = _deployment_type(scope, batch=batch, priority=priority)
    start = str(item.get("effectiveStartDate") or "")[:10]
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", start):
        raise _Unmapped(f"effectiveStartDate {item.get('effectiveStartDate')!r} is not a date")
    currency = str(item.get("currencyCode") or "USD").upper()
    return PriceRow(model, deployment_type, start, meter, unit, price, currency)


def _unit(item: Mapping[str, Any], name: str) -> tuple[str, Decimal]:
    raw = str(item.get("unitOfMeasure") or "").strip().lower()
    try:
        price = Decimal(str(item.get("retailPrice")))
    except InvalidOperation:
        raise _Unmapped(f"retailPrice {item.get('retailPrice')!r} is not a number") from None
    if not price.is_finite() or price < 0:
        raise _Unmapped(f"retailPrice {price} is not a price")
    lowered = name.lower()
    if raw in ("1 hour", "1/hour", "1 hours", "hour"):
        return "1 hour", price
    images = re.search(r"\bimages?\b", lowered) and not raw.startswith(("1k", "1m"))
    if IMAGE_SIZE.search(lowered) or images:
        count = {"1": 1, "10": 10, "100": 100, "1k": 1000, "1000": 1000}.get(raw.split(" ")[0])
        if count is None:
            raise _Unmapped(f"unitOfMeasure {raw!r} for images")
        return "1 image", price / count
    kind = "characters" if "char" in lowered else "tokens"
    if raw.startswith("1m"):
        return f"1M {kind}", price
    if raw.startswith("1k"):
        return f"1K {kind}", price
    raise _Unmapped(f"unitOfMeasure {raw!r} is not 1K, 1M, 1 Hour or an image count")


def _model(words: list[str], product: str, *, realtime: bool, audio: bool) -> str:
    if not words:
        raise _Unmapped("no model name")
    joined = "-".join(words)
    joined = re.sub(r"-+", "-", joined)
    if re.match(r"^\d", joined) and "gpt" in product.lower():
        joined = f"gpt-{joined}"  # "5.4 inp Gl" in product "Azure OpenAI GPT5"
    joined = re.sub(r"^gpt-?(\d)", r"gpt-\1", joined)  # "gpt4o" -> "gpt-4o"
    joined = joined.replace("dalle", "dall-e").replace("dall-e3", "dall-e-3")
    joined = VERSION_ALIASES.get(joined, joined)
    base, version = split_model(joined)
    if realtime and "realtime" not in base:
        base = f"{base}-realtime-preview"
    elif (
        audio
        and "audio" not in base
        and "realtime" not in base
        and "transcribe" not in base
        and "tts" not in base
    ):
        base = f"{base}-audio-preview"
    return f"{base}-{version}" if version else base


def _meter(
    name: str, unit: str, direction: str, modality: str, *, cached: bool, quality: str, size: str
) -> str:
    if unit == "1 hour":
        return "audio-seconds"
    if unit == "1 image":
        return f"images:{quality or '*'}:{size or '*'}"
    if unit.endswith("characters"):
        return "characters"
    if not direction and "embedding" in name.lower():
        direction = "input"  # embeddings have one meter, named without a direction
    if not direction:
        raise _Unmapped("no direction (input or output) in the meter name")
    prefix = {"audio": "audio-", "image": "image-"}.get(modality, "")
    if direction == "output":
        if cached:
            raise _Unmapped("a cached output meter")
        return f"{prefix}output"
    return f"cached-{prefix}input" if cached else f"{prefix}input"


def _deployment_type(scope: str, *, batch: bool, priority: bool) -> str:
    scope = scope or "regional"  # meters without a scope word are Standard (regional) deployments
    if batch:
        if scope == "regional":
            raise _Unmapped("batch without a global or data zone scope")
        return f"{scope}-batch"
    if priority:
        return "priority"
    return scope


def rate_card_csv(result: Import, source: str, version: str) -> str:
    """The v2 rate card text: a header naming its source, then one row per price."""
    lines = [
        f"# version: {version}",
        f"# Imported from the Azure Retail Prices API response {source}: {result.items} items,",
        f"# {len(result.rows)} price rows, {len(result.skipped)} items not mapped (the import lists them).",
        "# Check before billing: list prices, one region; agreements and discounts are not in them.",
        ",".join(RATE_CARD_V2_COLUMNS),
    ]
    for row in result.rows:
        price = f"{row.price.normalize():f}"
        lines.append(
            f"{row.model},{row.deployment_type},{row.effective_from},{row.meter},{row.unit},{price},{row.currency}"
        )
    return "\n".join(lines) + "\n"


# --- az cognitiveservices account deployment list --------------------------------------------


@dataclass(frozen=True, slots=True)
class DeploymentRow:
    """One deployments-map row from Azure's deployment list."""

    deployment: str
    model: str
    deployment_type: str
    sku: str


def import_deployments(text: str, source: str) -> tuple[list[DeploymentRow], list[tuple[str, str]]]:
    """Deployments with their model (and dated version) and type; the ones it cannot map, with why."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise ConfigError(
            f"{source}: not JSON ({exc}); save the output of `az ... deployment list`"
        ) from None
    entries = document.get("value") if isinstance(document, dict) else document
    if not isinstance(entries, list):
        raise ConfigError(f"{source}: expected a JSON array of deployments")
    rows: list[DeploymentRow] = []
    skipped: list[tuple[str, str]] = []
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        name = str(entry.get("name") or "")
        properties = _object(entry.get("properties"))
        model = _object(properties.get("model"))
        sku = _object(entry.get("sku"))
        model_name = str(model.get("name") or "").strip()
        version = str(model.get("version") or "").strip()
        sku_name = str(sku.get("name") or "").strip()
        if not name or not model_name:
            skipped.append((name or "?", "no name or no properties.model.name"))
            continue
        deployment_type = deployment_type_of(sku_name)
        if deployment_type is None:
            skipped.append((name, f"sku.name {sku_name!r} is not an Azure OpenAI deployment type we know"))
            continue
        dated = re.fullmatch(r"\d{4}-\d{2}-\d{2}", version)
        priced = f"{model_name}-{version}" if dated else model_name
        rows.append(DeploymentRow(name, priced.lower(), deployment_type, sku_name))
    return rows, skipped


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def deployments_csv(rows: Sequence[DeploymentRow], source: str) -> str:
    """The deployments map text; provisioned rows need their monthly cost filled in."""
    lines = [
        f"# Imported from {source} (az cognitiveservices account deployment list).",
        "# ptu rows: fill ptu_monthly_cost (your invoice's monthly amount) before use.",
        "deployment,model,deployment_type,ptu_monthly_cost,currency",
    ]
    lines += [f"{row.deployment},{row.model},{row.deployment_type},," for row in rows]
    return "\n".join(lines) + "\n"
