"""Azure documents to configuration: Retail Prices API items to a v2 card, deployment lists to a map."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chargeback.cli import main
from chargeback.core.azure_import import (
    import_deployments,
    import_retail_prices,
    load_items,
    rate_card_csv,
)
from chargeback.core.pricing import DeploymentMap, Pricer, RateCard
from chargeback.core.schema import Event
from chargeback.core.usage import Usage, UsageSource
from chargeback.errors import ConfigError

FIXTURES = Path(__file__).resolve().parent / "fixtures"
RETAIL = FIXTURES / "retail_prices_aoai.json"
DEPLOYMENTS = FIXTURES / "az_deployment_list.json"


def imported() -> Any:
    items, _ = load_items([(RETAIL.name, RETAIL.read_text(encoding="utf-8"))])
    return import_retail_prices(items)


def test_meter_names_map_to_model_type_and_meter() -> None:
    """Each documented meterName spelling maps to DESIGN's model, deployment type and meter."""
    rows = {(r.model, r.deployment_type, r.meter): (r.unit, r.price) for r in imported().rows}
    assert rows == {
        ("gpt-4.1", "global", "input"): ("1K tokens", Decimal("0.002")),
        ("gpt-4.1", "global", "output"): ("1K tokens", Decimal("0.008")),
        ("gpt-4.1", "global", "cached-input"): ("1K tokens", Decimal("0.0005")),
        ("gpt-4.1", "datazone-batch", "input"): ("1K tokens", Decimal("0.0011")),
        ("gpt-4o-2024-05-13", "regional", "input"): ("1K tokens", Decimal("0.005")),
        ("gpt-4o-2024-05-13", "regional", "output"): ("1K tokens", Decimal("0.015")),
        ("gpt-5-mini", "datazone", "input"): ("1M tokens", Decimal("0.275")),
        ("gpt-5.4", "global", "output"): ("1M tokens", Decimal("15.0")),
        ("gpt-4o-realtime-preview", "global", "audio-input"): ("1K tokens", Decimal("0.04")),
        ("gpt-4o-realtime-preview", "global", "cached-audio-input"): ("1K tokens", Decimal("0.0025")),
        ("gpt-4o-realtime-preview", "global", "audio-output"): ("1K tokens", Decimal("0.08")),
        ("gpt-image-1", "global", "image-output"): ("1K tokens", Decimal("0.04")),
        ("dall-e-3", "regional", "images:hd:1024x1024"): ("1 image", Decimal("0.08")),
        ("whisper", "regional", "audio-seconds"): ("1 hour", Decimal("0.36")),
        ("tts-hd", "regional", "characters"): ("1K characters", Decimal("0.03")),
        ("text-embedding-3-small", "regional", "input"): ("1K tokens", Decimal("0.00002")),
        ("o4-mini", "priority", "input"): ("1K tokens", Decimal("0.0022")),
    }


def test_what_cannot_be_mapped_is_reported_with_its_reason() -> None:
    """Cache writes, fine-tuning hosting and reservation prices are skipped, each with why; other
    Foundry products (Grok) are not Azure OpenAI and are left out."""
    skipped = dict(imported().skipped)
    assert skipped == {
        "gpt 4.1 cd wr Inp glbl Tokens": "cache write (not a meter of this card)",
        "gpt 4.1 FT Hosting Hours": (
            "fine-tuning (training and hosting are billed per hour, outside this card)"
        ),
        "gpt 4.1 Inp glbl Tokens": "type Reservation (only Consumption prices are list prices)",
    }


def test_imported_card_loads_and_prices_by_version_and_unit() -> None:
    """The written card is a valid v2 card: 1K-token prices and the 2024-05-13 version row price exactly."""
    card = RateCard.parse(rate_card_csv(imported(), RETAIL.name, "retail-test").encode())
    pricer = Pricer(card, DeploymentMap.parse(b"deployment,model,deployment_type\nd,gpt-4o,Standard\n"))
    event = Event("r", datetime(2026, 10, 1, tzinfo=UTC), "s", "d", 200, model="gpt-4o-2024-05-13")
    price = pricer.price(event, Usage(1_000_000, 1_000_000, 0, 0, UsageSource.REPORTED))
    assert (price.input_cost, price.output_cost) == (Decimal(5), Decimal(15))


def test_next_page_link_is_reported_unless_it_asks_for_nothing() -> None:
    """A NextPageLink means more pages to save; one with $top=0 (seen in real responses) does not."""
    page = {"Items": [], "NextPageLink": "https://prices.azure.com/api/retail/prices?$skip=100"}
    assert load_items([("p", json.dumps(page))])[1] is True
    page["NextPageLink"] = "https://prices.azure.com/api/retail/prices?$skip=100&$top=0"
    assert load_items([("p", json.dumps(page))])[1] is False
    with pytest.raises(ConfigError, match="no Items array"):
        load_items([("p", json.dumps({"value": 1}))])


def test_deployment_list_maps_azure_sku_names() -> None:
    """GlobalStandard, DataZoneStandard, Standard, GlobalBatch and GlobalProvisionedManaged map to
    DESIGN's types; a dated version becomes the priced version; an unknown SKU is reported."""
    rows, skipped = import_deployments(DEPLOYMENTS.read_text(encoding="utf-8"), DEPLOYMENTS.name)
    assert [(r.deployment, r.model, r.deployment_type) for r in rows] == [
        ("chat-gpt4o", "gpt-4o-2024-11-20", "global"),
        ("chat-eu", "gpt-4.1-2025-04-14", "datazone"),
        ("embed", "text-embedding-3-small", "regional"),
        ("batch", "gpt-4o-mini-2024-07-18", "global-batch"),
        ("ptu", "gpt-4o-2024-08-06", "ptu"),
    ]
    assert [name for name, _ in skipped] == ["odd"]


def test_cli_imports_write_loadable_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`chargeback ratecard import` and `chargeback deployments import` write files the loaders read."""
    card, deployments = tmp_path / "card.csv", tmp_path / "deployments.csv"
    assert main(["ratecard", "import", str(RETAIL), "--out", str(card), "--version", "t1"]) == 0
    assert main(["deployments", "import", str(DEPLOYMENTS), "--out", str(deployments)]) == 0
    out = capsys.readouterr().out
    assert "17 prices from 21 items" in out
    assert "fill ptu_monthly_cost" in out
    assert RateCard.load(card).version.startswith("t1+")
    text = deployments.read_text(encoding="utf-8").replace(
        "ptu,gpt-4o-2024-08-06,ptu,,", "ptu,gpt-4o-2024-08-06,ptu,3900,USD"
    )
    assert len(DeploymentMap.parse(text.encode())) == 5


def test_cli_import_of_a_file_without_prices_is_one_clear_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A response with no Azure OpenAI items exits 2 with one line naming what to save."""
    empty = tmp_path / "empty.json"
    empty.write_text('{"Items": []}', encoding="utf-8")
    assert main(["ratecard", "import", str(empty), "--out", str(tmp_path / "c.csv")]) == 2
    assert "no Azure OpenAI prices" in capsys.readouterr().out
