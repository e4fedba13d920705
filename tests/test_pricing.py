"""Pricing: rate card and deployments-map loading, effective dating, statuses and exact Decimal costs."""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chargeback.core.pricing import (
    DEPLOYMENT_TYPES,
    TOKEN_METERS,
    DeploymentMap,
    Pricer,
    PricingStatus,
    RateCard,
    meter_quantities,
    split_model,
)
from chargeback.core.schema import BillableUnits, Event
from chargeback.core.usage import Usage, UsageSource
from chargeback.errors import ConfigError
from chargeback.settings import default_config_path

HEADER = "model,deployment_type,effective_from,input_per_1m,cached_input_per_1m,output_per_1m,currency\n"
CARD = (
    "# version: test-1\n"
    + HEADER
    + "gpt-4o,global,2024-10-01,2.50,1.25,10.00,USD\n"
    + "gpt-4o,datazone,2024-10-01,2.75,1.375,11.00,USD\n"
    + "gpt-4o,global-batch,2024-10-01,1.25,,5.00,USD\n"
    + "gpt-4o-mini,global,2024-07-18,0.15,0.075,0.60,USD\n"
    + "gpt-4o-mini,global,2026-03-15,0.12,0.06,0.48,USD\n"
    + "o4-mini,global,2025-04-16,1.10,0.275,4.40,USD\n"
    + "text-embedding-3-small,global,2024-01-25,0.02,,,USD\n"
    + "mistral-large,global,2025-01-01,2.00,,6.00,EUR\n"
)
DEPLOYMENTS = (
    "deployment,model,deployment_type,ptu_monthly_cost,currency\n"
    "chat-gpt4o,gpt-4o,global,,\n"
    "chat-gpt4o-eu,gpt-4o,datazone,,\n"
    "batch-gpt4o,gpt-4o,global-batch,,\n"
    "ptu-gpt4o,gpt-4o,ptu,3900.00,EUR\n"
    "embed-small,text-embedding-3-small,global,,\n"
    "mistral-eu,mistral-large,datazone,,\n"
)
WHEN = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def pricer(tmp_path: Path) -> Pricer:
    return Pricer.from_files(
        write(tmp_path, "card.csv", CARD), write(tmp_path, "deployments.csv", DEPLOYMENTS)
    )


def event(
    deployment: str = "chat-gpt4o",
    model: str = "gpt-4o-2024-08-06",
    *,
    status: int = 200,
    when: datetime = WHEN,
    cache_hit: bool = False,
) -> Event:
    return Event(
        request_id="00000000-0000-0000-0000-000000000001",
        timestamp=when,
        subscription_id="sub-1",
        deployment=deployment,
        status_code=status,
        model=model,
        served_from_cache=cache_hit,
    )


def usage(prompt: int = 1200, completion: int = 300, cached: int = 200, reasoning: int = 0) -> Usage:
    return Usage(prompt, completion, cached, reasoning, UsageSource.REPORTED)


def test_costs_are_exact_decimals_computed_by_hand(pricer: Pricer) -> None:
    """gpt-4o global: (1200-200)x2.50 + 200x1.25 + 300x10.00 per 1M, as exact Decimals."""
    price = pricer.price(event(), usage())
    assert price.status is PricingStatus.PRICED
    assert price.input_cost == Decimal("0.0025")
    assert price.cached_input_cost == Decimal("0.00025")
    assert price.output_cost == Decimal("0.003")
    assert price.total_cost == Decimal("0.00575")
    assert all(isinstance(c, Decimal) for c in (price.input_cost, price.cached_input_cost, price.output_cost))
    assert (price.model, price.model_version, price.deployment_type, price.currency) == (
        "gpt-4o",
        "2024-08-06",
        "global",
        "USD",
    )
    assert price.rate_card_version.startswith("test-1+")


def test_price_change_inside_a_month_applies_from_its_effective_instant(pricer: Pricer) -> None:
    """An event just before effective_from gets the old row, one at or after it the new row."""
    change = datetime(2026, 3, 15, tzinfo=UTC)
    before = pricer.price(
        event("x", "gpt-4o-mini", when=change - timedelta(microseconds=1)), usage(1_000_000, 0, 0)
    )
    at = pricer.price(event("x", "gpt-4o-mini", when=change), usage(1_000_000, 0, 0))
    after = pricer.price(event("x", "gpt-4o-mini", when=change + timedelta(days=3)), usage(1_000_000, 0, 0))
    assert before.input_cost == Decimal("0.15")
    assert at.input_cost == Decimal("0.12")
    assert after.input_cost == Decimal("0.12")


def test_event_before_the_first_effective_date_is_unpriced(pricer: Pricer) -> None:
    """No row in force yet (the model's first price starts later) means unpriced, not the next row."""
    price = pricer.price(event(when=datetime(2024, 9, 30, 23, 59, tzinfo=UTC)), usage())
    assert price.status is PricingStatus.UNPRICED
    assert price.total_cost is None


def test_effective_from_datetime_with_offset_is_compared_in_utc(tmp_path: Path) -> None:
    """effective_from 2026-03-15T02:00+02:00 starts at 00:00 UTC; a bare date means 00:00 UTC."""
    card = RateCard.load(
        write(
            tmp_path,
            "card.csv",
            HEADER + "m,global,2026-03-01,1,,1,USD\nm,global,2026-03-15T02:00:00+02:00,2,,2,USD\n",
        )
    )
    just_before = card.lookup("M", "global", datetime(2026, 3, 14, 23, 59, 59, tzinfo=UTC))
    at = card.lookup("m", "global", datetime(2026, 3, 15, tzinfo=UTC))
    assert just_before is not None
    assert at is not None
    assert (just_before.price, at.price) == (Decimal(1), Decimal(2))


def test_global_batch_deployment_uses_batch_prices_and_blank_cached_means_input(pricer: Pricer) -> None:
    """batch-gpt4o prices at the global-batch row; its blank cached price is the batch input price."""
    price = pricer.price(event("batch-gpt4o"), usage())
    assert price.deployment_type == "global-batch"
    assert price.input_cost == Decimal("0.00125")  # 1000 x 1.25 / 1M
    assert price.cached_input_cost == Decimal("0.00025")  # 200 x 1.25 (= input) / 1M
    assert price.output_cost == Decimal("0.0015")  # 300 x 5.00 / 1M


def test_data_zone_deployment_uses_data_zone_prices(pricer: Pricer) -> None:
    """chat-gpt4o-eu is a datazone deployment: 2.75 / 1.375 / 11.00 per 1M."""
    price = pricer.price(event("chat-gpt4o-eu"), usage())
    assert price.deployment_type == "datazone"
    assert price.input_cost == Decimal("0.00275")
    assert price.cached_input_cost == Decimal("0.000275")
    assert price.output_cost == Decimal("0.0033")
    assert price.total_cost == Decimal("0.006325")


def test_cached_and_reasoning_tokens_are_never_counted_twice(pricer: Pricer) -> None:
    """Cached tokens leave the input meter; reasoning tokens are inside completion, billed once."""
    price = pricer.price(
        event("r", "o4-mini-2025-04-16"),
        usage(prompt=10_000, completion=5_000, cached=4_000, reasoning=3_000),
    )
    assert price.input_cost == Decimal("0.0066")  # 6000 x 1.10 / 1M
    assert price.cached_input_cost == Decimal("0.0011")  # 4000 x 0.275 / 1M
    assert price.output_cost == Decimal("0.022")  # 5000 (reasoning included) x 4.40 / 1M
    assert price.total_cost == Decimal("0.0297")


def test_cached_count_above_prompt_never_makes_a_negative_meter(pricer: Pricer) -> None:
    """A cached count larger than the prompt (never valid) is capped at the prompt."""
    price = pricer.price(event(), usage(prompt=100, completion=0, cached=150))
    assert price.input_cost == Decimal(0)
    assert price.cached_input_cost == Decimal("0.000125")


def test_embeddings_blank_output_price_means_zero(pricer: Pricer) -> None:
    """An embeddings row with a blank output price prices input only."""
    price = pricer.price(event("embed-small", "text-embedding-3-small"), usage(5_000, 0, 0))
    assert price.input_cost == Decimal("0.0001")
    assert price.output_cost == Decimal(0)
    assert price.status is PricingStatus.PRICED


def test_unknown_model_is_unpriced_with_null_costs(pricer: Pricer) -> None:
    """A model absent from the card is unpriced: None costs, the card's predominant currency."""
    price = pricer.price(event("my-custom", "gpt-9-ultra-2027-01-01"), usage())
    assert price.status is PricingStatus.UNPRICED
    assert (price.input_cost, price.cached_input_cost, price.output_cost, price.total_cost) == (None,) * 4
    assert (price.model, price.model_version, price.deployment_type) == (
        "gpt-9-ultra",
        "2027-01-01",
        "global",
    )
    assert price.currency == "USD"


def test_unpriced_type_of_a_known_model_keeps_that_models_currency(pricer: Pricer) -> None:
    """mistral-large has only a EUR global row; its datazone deployment is unpriced in EUR."""
    price = pricer.price(event("mistral-eu", "mistral-large"), usage())
    assert price.status is PricingStatus.UNPRICED
    assert price.currency == "EUR"


def test_non_2xx_is_not_billable_with_zero_costs(pricer: Pricer) -> None:
    """A 429 is written with Decimal zero costs (not None), status not-billable."""
    price = pricer.price(event(status=429), usage())
    assert price.status is PricingStatus.NOT_BILLABLE
    assert (price.input_cost, price.cached_input_cost, price.output_cost) == (Decimal(0),) * 3
    assert price.total_cost == Decimal(0)
    assert price.currency == "USD"


def test_not_billable_wins_over_cache_hit_and_unknown_model(pricer: Pricer) -> None:
    """Status precedence: a non-2xx response is not-billable even if cached or unpriced."""
    assert pricer.price(event(status=500, cache_hit=True), usage()).status is PricingStatus.NOT_BILLABLE
    assert pricer.price(event("nope", "nope", status=400), usage()).status is PricingStatus.NOT_BILLABLE


def test_cache_hit_costs_zero(pricer: Pricer) -> None:
    """A response served from APIM's semantic cache is cache-hit with zero costs."""
    price = pricer.price(event(cache_hit=True), usage())
    assert price.status is PricingStatus.CACHE_HIT
    assert price.total_cost == Decimal(0)
    assert price.model == "gpt-4o"


def test_ptu_deployment_has_zero_per_token_cost_and_exposes_its_monthly_cost(pricer: Pricer) -> None:
    """ptu-gpt4o: status ptu, zero per-token costs in the map's currency; the map lists its monthly cost."""
    price = pricer.price(event("ptu-gpt4o"), usage())
    assert price.status is PricingStatus.PTU
    assert price.deployment_type == "ptu"
    assert price.total_cost == Decimal(0)
    assert price.currency == "EUR"
    (ptu,) = pricer.deployments.ptu_deployments()
    assert (ptu.deployment, ptu.model, ptu.ptu_monthly_cost, ptu.currency) == (
        "ptu-gpt4o",
        "gpt-4o",
        Decimal("3900.00"),
        "EUR",
    )


def test_unmapped_deployment_is_priced_by_event_model_without_date_suffix(pricer: Pricer) -> None:
    """An unmapped deployment: gpt-4o-2024-08-06 → gpt-4o, type global, version 2024-08-06."""
    price = pricer.price(event("team-a-4o", "gpt-4o-2024-08-06"), usage())
    assert (price.model, price.model_version, price.deployment_type) == ("gpt-4o", "2024-08-06", "global")
    assert price.total_cost == Decimal("0.00575")


def test_no_model_and_no_mapping_prices_the_deployment_name(pricer: Pricer) -> None:
    """With no model and no map row, the deployment name is the model."""
    price = pricer.price(event("GPT-4o-mini", ""), usage(1_000_000, 0, 0))
    assert (price.model, price.model_version, price.deployment_type) == ("gpt-4o-mini", "", "global")
    assert price.input_cost == Decimal("0.15")


def test_mapped_deployment_model_version_comes_from_the_event_model(pricer: Pricer) -> None:
    """Map model gpt-4o: event gpt-4o-2024-11-20 → version 2024-11-20; event gpt-4o → ""; no model → ""."""
    assert pricer.resolve("chat-gpt4o", "gpt-4o-2024-11-20") == ("gpt-4o", "2024-11-20", "global")
    assert pricer.resolve("chat-gpt4o", "GPT-4o") == ("gpt-4o", "", "global")
    assert pricer.resolve("CHAT-GPT4O", "") == ("gpt-4o", "", "global")


def test_model_names_compare_case_insensitively(pricer: Pricer) -> None:
    """GPT-4O-2024-08-06 prices like gpt-4o-2024-08-06."""
    assert pricer.price(event("x", "GPT-4O-2024-08-06"), usage()).total_cost == Decimal("0.00575")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt-4o-2024-08-06", ("gpt-4o", "2024-08-06")),
        ("o3-mini-2025-01-31", ("o3-mini", "2025-01-31")),
        ("gpt-35-turbo-0125", ("gpt-35-turbo", "0125")),
        ("gpt-4.1", ("gpt-4.1", "")),
        ("text-embedding-ada-002", ("text-embedding-ada-002", "")),
        ("gpt-4-32k", ("gpt-4-32k", "")),
    ],
)
def test_split_model_strips_date_and_legacy_version_suffixes(name: str, expected: tuple[str, str]) -> None:
    """Date (YYYY-MM-DD) and legacy MMDD suffixes are versions; other name parts are kept."""
    assert split_model(name) == expected


def test_rate_card_version_is_declared_name_plus_file_hash(tmp_path: Path) -> None:
    """RateCardVersion = declared version + first 8 hex of sha256; an edit changes it."""
    path = write(tmp_path, "card.csv", CARD)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    assert RateCard.load(path).version == f"test-1+{digest}"
    edited = write(tmp_path, "edited.csv", CARD.replace("2.50,1.25", "2.40,1.20"))
    assert RateCard.load(edited).version.startswith("test-1+")
    assert RateCard.load(edited).version != RateCard.load(path).version


def test_rate_card_without_declared_version_is_named_by_hash(tmp_path: Path) -> None:
    """No '# version:' comment → 'sha256:<8 hex>'."""
    path = write(tmp_path, "card.csv", "# a comment\n" + HEADER + "m,global,2026-01-01,1,,1,USD\n")
    assert RateCard.load(path).version == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:8]


BAD_CARDS = [
    (
        "model,deployment_type,effective_from,input_per_1m,cached_input_per_1m,output_per_1m,currency,tier\n",
        1,
        "unknown column 'tier'",
    ),
    (
        "model,deployment_type,effective_from,input_per_1m,,output_per_1m,currency\n",
        1,
        "column 5 of the header is blank",
    ),
    (
        "model,deployment_type,effective_from,input_per_1m,output_per_1m,currency\n",
        1,
        "missing column(s) cached_input_per_1m",
    ),
    (HEADER + "m,global,2026-01-01,abc,,1,USD\n", 2, "input_per_1m 'abc' is not a decimal number"),
    (HEADER + "m,global,2026-01-01,1,,-0.5,USD\n", 2, "output_per_1m -0.5 is negative"),
    (HEADER + "m,global,2026-01-01,1,NaN,1,USD\n", 2, "cached_input_per_1m 'NaN' is not a finite number"),
    (HEADER + "m,global,2026-13-01,1,,1,USD\n", 2, "effective_from '2026-13-01' is not a real date"),
    (HEADER + "m,global,01/02/2026,1,,1,USD\n", 2, "effective_from '01/02/2026'"),
    (HEADER + "m,global,2026-01-01T00:00:00,1,,1,USD\n", 2, "UTC offset"),
    (
        HEADER + "m,global,2026-01-01,1,,1,USD\nm,global,2026-01-01T00:00:00Z,2,,2,USD\n",
        3,
        "duplicate price for m global",
    ),
    (
        HEADER + "m,global,2026-01-01,1,,1,USD\nm,global,2026-02-01,1,,1,EUR\n",
        3,
        "currency EUR for m global differs from USD on line 3",
    ),
    (HEADER + "m,premium,2026-01-01,1,,1,USD\n", 2, "deployment_type 'premium' is not one of"),
    (HEADER + "m,global,2026-01-01,1,,,USD\n", 2, "output_per_1m is blank"),
    (HEADER + "m,global,2026-01-01,,,1,USD\n", 2, "input_per_1m is blank"),
    (HEADER + ",global,2026-01-01,1,,1,USD\n", 2, "model is blank"),
    (HEADER + "m,global,2026-01-01,1,,1,US Dollar\n", 2, "currency 'US Dollar'"),
    (HEADER + "m,global,2026-01-01,1,,1\n", 2, "6 fields; the header has 7"),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD_CARDS)
def test_rate_card_loader_names_each_error_with_its_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    """Every rate card validation error is a ConfigError naming the file line."""
    with pytest.raises(ConfigError) as excinfo:
        RateCard.load(write(tmp_path, "bad.csv", "# version: x\n" + text))
    assert f"line {line + 1}: " in str(excinfo.value)  # +1: the version comment above
    assert message in str(excinfo.value)


def test_rate_card_loader_reports_every_faulty_line_at_once(tmp_path: Path) -> None:
    """One ConfigError lists all faulty rows, not just the first."""
    text = (
        HEADER + "m,global,2026-01-01,x,,1,USD\nok,global,2026-01-01,1,,1,USD\nn,bogus,2026-01-01,1,,1,USD\n"
    )
    with pytest.raises(ConfigError, match=r"2 error\(s\)") as excinfo:
        RateCard.load(write(tmp_path, "bad.csv", text))
    assert "line 2: " in str(excinfo.value)
    assert "line 4: " in str(excinfo.value)


def test_rate_card_header_only_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    """A card without rows or header, or a path that does not exist, is a ConfigError."""
    with pytest.raises(ConfigError, match="no price rows"):
        RateCard.load(write(tmp_path, "empty.csv", HEADER))
    with pytest.raises(ConfigError, match="no header row"):
        RateCard.load(write(tmp_path, "comments.csv", "# version: x\n# nothing else\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        RateCard.load(tmp_path / "missing.csv")


def test_a_header_of_neither_format_is_told_the_current_one(tmp_path: Path) -> None:
    """A card whose header is neither v1 nor v2 is refused naming v2's columns (meter, unit, price)."""
    with pytest.raises(ConfigError, match="missing column") as excinfo:
        RateCard.load(write(tmp_path, "odd.csv", "model,deployment_type,cost\ngpt-4o,global,1\n"))
    assert "meter" in str(excinfo.value)
    assert "input_per_1m" not in str(excinfo.value)


BAD_MAPS = [
    ("deployment,model,deployment_type,owner\n", 1, "unknown column 'owner'"),
    ("deployment,model\n", 1, "missing column(s) deployment_type"),
    ("deployment,model,deployment_type\nd1,gpt-4o,reserved\n", 2, "deployment_type 'reserved'"),
    (
        "deployment,model,deployment_type\nd1,gpt-4o,global\nD1,gpt-4o,datazone\n",
        3,
        "already mapped on line 2",
    ),
    ("deployment,model,deployment_type\nd1,,global\n", 2, "model is blank"),
    ("deployment,model,deployment_type\n,gpt-4o,global\n", 2, "deployment is blank"),
    ("deployment,model,deployment_type,ptu_monthly_cost\nd1,gpt-4o,ptu,\n", 2, "needs ptu_monthly_cost"),
    (
        "deployment,model,deployment_type,ptu_monthly_cost\nd1,gpt-4o,global,100\n",
        2,
        "deployment_type is global",
    ),
    ("deployment,model,deployment_type,ptu_monthly_cost\nd1,gpt-4o,ptu,lots\n", 2, "ptu_monthly_cost 'lots'"),
    (
        "deployment,model,deployment_type,ptu_monthly_cost,currency\nd1,gpt-4o,ptu,1,euro\n",
        2,
        "currency 'euro'",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD_MAPS)
def test_deployments_loader_names_each_error_with_its_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    """Every deployments-map validation error is a ConfigError naming the file line."""
    with pytest.raises(ConfigError) as excinfo:
        DeploymentMap.load(write(tmp_path, "bad.csv", text))
    assert f"line {line}: " in str(excinfo.value)
    assert message in str(excinfo.value)


def test_pricer_without_deployments_map_prices_by_event_model(tmp_path: Path) -> None:
    """Pricer.from_files with no deployments file treats every deployment as unmapped."""
    pricer = Pricer.from_files(write(tmp_path, "card.csv", CARD))
    assert pricer.price(event("chat-gpt4o-eu"), usage()).deployment_type == "global"


def test_vocabulary_has_the_six_deployment_types() -> None:
    """The deployment types are exactly global, datazone, regional, the two batch types, priority and ptu."""
    assert DEPLOYMENT_TYPES == (
        "global",
        "datazone",
        "regional",
        "global-batch",
        "datazone-batch",
        "priority",
        "ptu",
    )


def test_shipped_default_card_prices_gpt4o_at_design_numbers() -> None:
    """The packaged rate_card.csv loads and prices gpt-4o global at 2.50 / 1.25 / 10.00 per 1M."""
    pricer = Pricer.from_files(default_config_path("rate_card.csv"), default_config_path("deployments.csv"))
    assert pricer.rate_card_version.split("+")[0] == "2026-11-30"
    now = datetime(2026, 11, 1, tzinfo=UTC)
    price = pricer.price(event("chat-gpt4o", "gpt-4o-2024-08-06", when=now), usage(1_000_000, 1_000_000, 0))
    assert (price.input_cost, price.output_cost) == (Decimal("2.50"), Decimal("10.00"))
    cached = pricer.price(event("chat-gpt4o", when=now), usage(1_000_000, 0, 1_000_000))
    assert cached.cached_input_cost == Decimal("1.25")
    assert cached.input_cost == Decimal(0)


@pytest.mark.parametrize(
    ("model", "input_price", "cached_price", "output_price"),
    [
        ("gpt-4o", "2.50", "1.25", "10.00"),
        ("gpt-4o-mini", "0.15", "0.075", "0.60"),
        ("gpt-4.1", "2.00", "0.50", "8.00"),
        ("gpt-4.1-mini", "0.40", "0.10", "1.60"),
        ("o3-mini", "1.10", "0.55", "4.40"),
        ("o4-mini", "1.10", "0.275", "4.40"),
        ("gpt-5", "1.25", "0.125", "10.00"),
    ],
)
def test_shipped_default_card_matches_design_global_prices(
    model: str, input_price: str, cached_price: str, output_price: str
) -> None:
    """The packaged card's current global rows equal DESIGN's verified list."""
    card = RateCard.load(default_config_path("rate_card.csv"))
    when = datetime(2026, 11, 1, tzinfo=UTC)
    prices = [card.lookup(model, "global", when, meter) for meter in ("input", "cached-input", "output")]
    assert [row.per_1m if row else None for row in prices] == [
        Decimal(input_price),
        Decimal(cached_price),
        Decimal(output_price),
    ]


def test_shipped_default_card_prices_gpt4o_2024_05_13_by_version() -> None:
    """The packaged card prices gpt-4o version 2024-05-13 at 5.00/15.00 for its whole life, by version."""
    pricer = Pricer(RateCard.load(default_config_path("rate_card.csv")))
    late = event("any", "gpt-4o-2024-05-13", when=datetime(2026, 11, 1, tzinfo=UTC))
    price = pricer.price(late, usage(1_000_000, 1_000_000, 0))
    assert (price.input_cost, price.output_cost) == (Decimal(5), Decimal(15))
    newer = pricer.price(
        event("any", "gpt-4o-2024-11-20", when=late.timestamp), usage(1_000_000, 1_000_000, 0)
    )
    assert (newer.input_cost, newer.output_cost) == (Decimal("2.5"), Decimal(10))


def test_shipped_deployments_map_covers_every_type_it_uses() -> None:
    """Every mapped deployment of the packaged map has a price row or is PTU with a monthly cost."""
    card = RateCard.load(default_config_path("rate_card.csv"))
    deployments = DeploymentMap.load(default_config_path("deployments.csv"))
    now = datetime(2026, 11, 1, tzinfo=UTC)
    for deployment in deployments.deployments:
        if deployment.deployment_type == "ptu":
            assert deployment.ptu_monthly_cost is not None
        else:
            assert card.lookup(deployment.model, deployment.deployment_type, now) is not None, deployment
    assert {d.deployment for d in deployments.ptu_deployments()} == {"ptu-gpt4o"}


# --- Rate card v2: one price per meter ------------------------------------------------------------

V2_HEADER = "model,deployment_type,effective_from,meter,unit,price,currency\n"
V2_CARD = V2_HEADER + (
    # gpt-4o-audio-preview: text and audio tokens at their own rates
    "gpt-4o-audio-preview,global,2024-12-17,input,1M tokens,2.50,USD\n"
    "gpt-4o-audio-preview,global,2024-12-17,output,1M tokens,10.00,USD\n"
    "gpt-4o-audio-preview,global,2024-12-17,audio-input,1M tokens,40.00,USD\n"
    "gpt-4o-audio-preview,global,2024-12-17,audio-output,1M tokens,80.00,USD\n"
    # realtime: cached text and cached audio
    "gpt-realtime,global,2025-08-28,input,1M tokens,4.00,USD\n"
    "gpt-realtime,global,2025-08-28,cached-input,1M tokens,0.40,USD\n"
    "gpt-realtime,global,2025-08-28,output,1M tokens,16.00,USD\n"
    "gpt-realtime,global,2025-08-28,audio-input,1M tokens,32.00,USD\n"
    "gpt-realtime,global,2025-08-28,cached-audio-input,1M tokens,,USD\n"
    "gpt-realtime,global,2025-08-28,audio-output,1M tokens,64.00,USD\n"
    # gpt-image-1 in 1K units, as the Retail Prices API gives some of them
    "gpt-image-1,global,2025-04-15,input,1K tokens,0.005,USD\n"
    "gpt-image-1,global,2025-04-15,image-input,1M tokens,10.00,USD\n"
    "gpt-image-1,global,2025-04-15,image-output,1M tokens,40.00,USD\n"
    # per-unit meters
    "dall-e-3,regional,2023-11-06,images:standard:1024x1024,1 image,0.04,USD\n"
    "dall-e-3,regional,2023-11-06,images:hd:*,1 image,0.08,USD\n"
    "dall-e-3,regional,2023-11-06,images:hd:1792x1024,1 image,0.12,USD\n"
    "whisper,regional,2023-09-01,audio-seconds,1 hour,0.36,USD\n"
    "gpt-4o-transcribe,global,2025-03-20,input,1M tokens,2.50,USD\n"
    "gpt-4o-transcribe,global,2025-03-20,audio-input,1M tokens,6.00,USD\n"
    "gpt-4o-transcribe,global,2025-03-20,output,1M tokens,10.00,USD\n"
    "tts,regional,2024-02-01,characters,1M characters,15.00,USD\n"
    # version precedence: the version row wins over the base model's, whatever the dates
    "gpt-4o,global,2024-08-06,input,1M tokens,2.50,USD\n"
    "gpt-4o,global,2024-08-06,cached-input,1M tokens,1.25,USD\n"
    "gpt-4o,global,2024-08-06,output,1M tokens,10.00,USD\n"
    "gpt-4o-2024-05-13,global,2024-05-13,input,1M tokens,5.00,USD\n"
    "gpt-4o-2024-05-13,global,2024-05-13,output,1M tokens,15.00,USD\n"
    # batch with cached prices, and priority
    "gpt-4.1,global-batch,2025-04-14,input,1M tokens,1.00,USD\n"
    "gpt-4.1,global-batch,2025-04-14,cached-input,1M tokens,0.25,USD\n"
    "gpt-4.1,global-batch,2025-04-14,output,1M tokens,4.00,USD\n"
    "gpt-4.1,priority,2025-04-14,input,1M tokens,4.00,USD\n"
    "gpt-4.1,priority,2025-04-14,cached-input,1M tokens,1.00,USD\n"
    "gpt-4.1,priority,2025-04-14,output,1M tokens,16.00,USD\n"
)
V2_MAP = (
    "deployment,model,deployment_type\n"
    "images,dall-e-3,Standard\n"
    "stt,whisper,standard\n"
    "speech,tts,regional\n"
    "batch41,gpt-4.1,GlobalBatch\n"
    "prio41,gpt-4.1,priority\n"
)
LATE = datetime(2026, 10, 1, tzinfo=UTC)


@pytest.fixture
def v2(tmp_path: Path) -> Pricer:
    return Pricer.from_files(write(tmp_path, "card2.csv", V2_CARD), write(tmp_path, "map2.csv", V2_MAP))


def meters_usage(**fields: int | Decimal) -> Usage:
    base: dict[str, Any] = {
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
    }
    base.update(fields)
    return Usage(source=UsageSource.REPORTED, **base)


def units_event(deployment: str, model: str, **units: Any) -> Event:
    return dataclasses.replace(event(deployment, model, when=LATE), units=BillableUnits(**units))


def test_audio_output_is_priced_at_the_audio_meter_not_as_text(v2: Pricer) -> None:
    """gpt-4o-audio-preview, 653 completion tokens of which 589 audio: 589 x 80 + 64 x 10 per 1M."""
    usage = meters_usage(prompt_tokens=28, completion_tokens=653, audio_completion_tokens=589)
    price = v2.price(event("any", "gpt-4o-audio-preview-2024-12-17", when=LATE), usage)
    assert price.status is PricingStatus.PRICED
    assert price.costs == {
        "input": Decimal("0.00007000"),
        "output": Decimal("0.00064000"),
        "audio-output": Decimal("0.04712000"),
    }
    assert price.output_cost == Decimal("0.04776")
    assert price.total_cost == Decimal("0.04783")


def test_realtime_cached_audio_blank_price_is_the_audio_input_price(v2: Pricer) -> None:
    """Realtime: 80 cached text, 220 cached audio (blank → audio-input 32.00), 20 text, 180 audio, 10 out."""
    usage = meters_usage(
        prompt_tokens=500,
        completion_tokens=10,
        cached_tokens=300,
        audio_prompt_tokens=400,
        cached_audio_tokens=220,
    )
    price = v2.price(event("any", "gpt-realtime-2025-08-28", when=LATE), usage)
    assert dict(price.quantities or {}) == {
        "input": 20,
        "cached-input": 80,
        "output": 10,
        "audio-input": 180,
        "cached-audio-input": 220,
    }
    # by hand: 20x4 + 80x0.40 + 10x16 + 180x32 + 220x32 = 80 + 32 + 160 + 5760 + 7040 = 13072 per 1M
    assert price.total_cost == Decimal("0.013072")
    assert price.input_cost == Decimal("0.00584")  # 20x4 + 180x32
    assert price.cached_input_cost == Decimal("0.007072")  # 80x0.40 + 220x32


def test_image_generation_tokens_priced_by_modality_with_1k_units(v2: Pricer) -> None:
    """gpt-image-1: 10 text (0.005 per 1K) + 40 image input (10 per 1M) + 4160 image output (40 per 1M)."""
    usage = meters_usage(
        prompt_tokens=50, completion_tokens=4160, image_prompt_tokens=40, image_completion_tokens=4160
    )
    price = v2.price(event("any", "gpt-image-1", when=LATE), usage)
    assert price.costs == {
        "input": Decimal("0.00005"),
        "image-input": Decimal("0.0004"),
        "image-output": Decimal("0.1664"),
    }
    assert price.total_cost == Decimal("0.16685")


@pytest.mark.parametrize(
    ("quality", "size", "expected"),
    [
        ("standard", "1024x1024", Decimal("0.08")),
        ("hd", "1024x1024", Decimal("0.16")),  # images:hd:* applies to any size
        ("hd", "1792x1024", Decimal("0.24")),  # the exact quality and size wins
    ],
)
def test_images_are_priced_per_image_by_quality_and_size(
    v2: Pricer, quality: str, size: str, expected: Decimal
) -> None:
    """dall-e-3, 2 images: the most specific images row (quality and size, then quality) prices them."""
    price = v2.price(
        units_event("images", "dall-e-3", images=2, image_quality=quality, image_size=size),
        meters_usage(images=2),
    )
    assert (price.status, price.total_cost, price.deployment_type) == (
        PricingStatus.PRICED,
        expected,
        "regional",
    )


def test_images_with_no_row_for_their_quality_are_unpriced(v2: Pricer) -> None:
    """dall-e-3 standard 1792x1024 has no row (nor a plain images row): unpriced, never another meter."""
    price = v2.price(
        units_event("images", "dall-e-3", images=1, image_quality="standard", image_size="1792x1024"),
        meters_usage(images=1),
    )
    assert price.status is PricingStatus.UNPRICED
    assert price.total_cost is None
    assert price.unpriced_meters == ("images",)


def test_transcription_by_duration_is_priced_per_hour(v2: Pricer) -> None:
    """whisper, 90 seconds at 0.36 per hour: 90 x 0.36 / 3600 = 0.009."""
    price = v2.price(event("stt", "whisper", when=LATE), meters_usage(audio_seconds=Decimal(90)))
    assert price.total_cost == Decimal("0.009")
    assert price.unit_cost == Decimal("0.009")


def test_transcription_by_tokens_prices_audio_input(v2: Pricer) -> None:
    """gpt-4o-transcribe: 14 audio input tokens at 6.00 and 45 text output at 10.00 per 1M."""
    usage = meters_usage(prompt_tokens=14, completion_tokens=45, audio_prompt_tokens=14)
    price = v2.price(event("any", "gpt-4o-transcribe", when=LATE), usage)
    assert price.costs == {"output": Decimal("0.00045"), "audio-input": Decimal("0.000084")}


def test_text_to_speech_is_priced_per_character(v2: Pricer) -> None:
    """tts, 1,234 characters at 15.00 per 1M characters."""
    price = v2.price(event("speech", "tts", when=LATE), meters_usage(characters=1234))
    assert price.total_cost == Decimal("0.01851")


def test_version_row_wins_over_the_base_model_whatever_the_date(v2: Pricer) -> None:
    """gpt-4o-2024-05-13 in 2026 is 5.00/15.00 (version row); -08-06 takes the base 2.50/10.00."""
    usage = meters_usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)
    old = v2.price(event("any", "gpt-4o-2024-05-13", when=LATE), usage)
    new = v2.price(event("any", "gpt-4o-2024-08-06", when=LATE), usage)
    assert (old.input_cost, old.output_cost) == (Decimal(5), Decimal(15))
    assert (new.input_cost, new.output_cost) == (Decimal("2.5"), Decimal(10))


def test_version_row_without_a_meter_falls_back_to_the_base_model_for_that_meter(v2: Pricer) -> None:
    """Cached tokens of gpt-4o-2024-05-13 (no cached row on the version) take the base model's price."""
    usage = meters_usage(prompt_tokens=1_000_000, cached_tokens=1_000_000)
    price = v2.price(event("any", "gpt-4o-2024-05-13", when=LATE), usage)
    assert price.cached_input_cost == Decimal("1.25")


def test_batch_rows_have_cached_prices_and_azure_sku_names_map(v2: Pricer) -> None:
    """GlobalBatch maps to global-batch, whose cached price (0.25) is its own, not the input price."""
    usage = meters_usage(prompt_tokens=2_000_000, cached_tokens=1_000_000, completion_tokens=1_000_000)
    price = v2.price(event("batch41", "gpt-4.1-2025-04-14", when=LATE), usage)
    assert (price.deployment_type, price.input_cost, price.cached_input_cost, price.output_cost) == (
        "global-batch",
        Decimal(1),
        Decimal("0.25"),
        Decimal(4),
    )


def test_priority_deployments_are_priced_at_their_own_rows(v2: Pricer) -> None:
    """A priority deployment is priced at the priority rows."""
    price = v2.price(event("prio41", "gpt-4.1", when=LATE), meters_usage(prompt_tokens=1_000_000))
    assert (price.deployment_type, price.total_cost) == ("priority", Decimal(4))


def test_a_quantity_on_a_meter_without_a_price_makes_the_row_unpriced(v2: Pricer) -> None:
    """gpt-4o with audio input tokens has no audio-input row: unpriced, not priced as text input."""
    usage = meters_usage(prompt_tokens=100, completion_tokens=10, audio_prompt_tokens=60)
    price = v2.price(event("any", "gpt-4o-2024-08-06", when=LATE), usage)
    assert price.status is PricingStatus.UNPRICED
    assert (price.input_cost, price.total_cost) == (None, None)
    assert price.unpriced_meters == ("audio-input",)


def test_every_token_lands_in_exactly_one_meter() -> None:
    """The meters' token quantities add up to prompt + completion, whatever the split."""
    usage = meters_usage(
        prompt_tokens=1000,
        completion_tokens=500,
        cached_tokens=400,
        audio_prompt_tokens=300,
        cached_audio_tokens=100,
        image_prompt_tokens=200,
        cached_image_tokens=50,
        audio_completion_tokens=120,
        image_completion_tokens=80,
        reasoning_tokens=100,
    )
    quantities = meter_quantities(usage)
    assert sum(q for m, q in quantities.items() if m in TOKEN_METERS) == 1500
    assert quantities == {
        "input": 250,
        "cached-input": 250,
        "output": 300,
        "audio-input": 200,
        "cached-audio-input": 100,
        "audio-output": 120,
        "image-input": 150,
        "cached-image-input": 50,
        "image-output": 80,
    }


V1_EQUIVALENT = V2_HEADER + (
    "gpt-4o,global,2024-10-01,input,1M tokens,2.50,USD\n"
    "gpt-4o,global,2024-10-01,cached-input,1M tokens,1.25,USD\n"
    "gpt-4o,global,2024-10-01,output,1M tokens,10.00,USD\n"
)


def test_v1_and_v2_cards_price_the_same_event_the_same(tmp_path: Path) -> None:
    """A v1 row and its three v2 meter rows give the same Decimal costs."""
    v1 = Pricer.from_files(
        write(tmp_path, "v1.csv", HEADER + "gpt-4o,global,2024-10-01,2.50,1.25,10.00,USD\n")
    )
    v2_card = Pricer.from_files(write(tmp_path, "v2.csv", V1_EQUIVALENT))
    one, two = v1.price(event("x"), usage()), v2_card.price(event("x"), usage())
    assert (one.input_cost, one.cached_input_cost, one.output_cost) == (
        two.input_cost,
        two.cached_input_cost,
        two.output_cost,
    )
    assert (v1.rate_card.shape, v2_card.rate_card.shape) == ("v1", "v2")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("m,global,2026-01-01,speech,1M tokens,1,USD\n", "meter 'speech' is not one of"),
        (
            "m,global,2026-01-01,input,1 image,1,USD\n",
            "unit '1 image' counts images, but meter input counts tokens",
        ),
        ("m,global,2026-01-01,input,per token,1,USD\n", "unit 'per token' is not one of"),
        ("m,global,2026-01-01,output,1M tokens,,USD\n", "price is blank (only a cached meter"),
        ("m,global,2026-01-01,input,1M tokens,-1,USD\n", "price -1 is negative"),
    ],
)
def test_v2_rate_card_errors_name_their_line(tmp_path: Path, row: str, message: str) -> None:
    """Every v2 validation error is a ConfigError naming the file line."""
    with pytest.raises(ConfigError) as excinfo:
        RateCard.load(write(tmp_path, "bad.csv", V2_HEADER + row))
    assert "line 2" in str(excinfo.value)
    assert message in str(excinfo.value)
