"""Statement rendering: FOCUS 1.2 columns filled, costs exact, PTU allocated, summary totals right."""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

from chargeback.core.pricing import DeploymentMap
from chargeback.edges.kqlrun import LocalKqlRunner
from chargeback.jobs.budgets import load_budgets
from chargeback.jobs.rollup import run_rollup
from chargeback.jobs.statement import FOCUS_MANDATORY, build_statement
from tests import monthdata
from tests.conftest import make_event

SUMMARY_HEAD = (
    "SubscriptionId,SubscriptionName,CostCenter,Owner,Requests,PromptTokens,CachedTokens,CompletionTokens,"
    "ReasoningTokens,TotalCost,AllocatedCost,Currency,Budget,BudgetUsedPct"
)
NULLABLE = {"ChargeClass", "ChargeDescription", "BillingAccountName", "PricingQuantity", "PricingUnit"}


def statement(store: Any) -> Any:
    """The October statement of a store, with its budgets and PTU deployment."""
    rollup = run_rollup(LocalKqlRunner(store.connection), "2026-10")
    return build_statement(
        rollup,
        load_budgets(store.config["budgets"]),
        DeploymentMap.load(store.config["deployments"]).ptu_deployments(),
    )


def rows(data: bytes) -> list[dict[str, str]]:
    """CSV bytes as dictionaries."""
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def test_focus_has_every_mandatory_column_filled(october_store: Any) -> None:
    """All 21 FOCUS 1.2 mandatory columns are present, and the non-nullable ones are never empty."""
    focus = rows(statement(october_store).focus)
    assert focus
    assert set(FOCUS_MANDATORY) <= set(focus[0])
    for row in focus:
        for column in set(FOCUS_MANDATORY) - NULLABLE:
            assert row[column], column
        assert all(name in FOCUS_MANDATORY or not name[0].islower() or name.startswith("x_") for name in row)


def test_focus_costs_are_quantity_times_unit_price(october_store: Any) -> None:
    """Billed = effective = list = contracted cost = PricingQuantity x ListUnitPrice to 6 decimals."""
    for row in rows(statement(october_store).focus):
        costs = {row["BilledCost"], row["EffectiveCost"], row["ListCost"], row["ContractedCost"]}
        assert len(costs) == 1
        if row["ListUnitPrice"]:
            product = Decimal(row["PricingQuantity"]) * Decimal(row["ListUnitPrice"])
            assert product.quantize(Decimal("0.000001")) == Decimal(row["BilledCost"])
        else:
            assert row["x_PricingStatus"] == "unpriced"
            assert Decimal(row["BilledCost"]) == 0
        assert (row["ChargePeriodStart"], row["ChargePeriodEnd"]) == (
            "2026-10-01T00:00:00Z",
            "2026-11-01T00:00:00Z",
        )


def test_focus_usage_rows_are_one_per_subscription_model_type_meter_and_price(october_store: Any) -> None:
    """No two usage rows share subscription, model, deployment type, meter, status and price."""
    usage = [r for r in rows(statement(october_store).focus) if r["x_Meter"] != "ptu-allocation"]
    keys = [
        (
            r["SubAccountId"],
            r["x_Model"],
            r["x_DeploymentType"],
            r["x_Meter"],
            r["x_PricingStatus"],
            r["ListUnitPrice"],
        )
        for r in usage
    ]
    assert len(keys) == len(set(keys))
    assert {r["x_Meter"] for r in usage} == {"input", "cached-input", "output"}
    for row in usage:
        mix = sum(
            int(row[f"x_Requests{name}"]) for name in ("Reported", "StreamUsage", "Recounted", "Estimated")
        )
        assert mix == int(row["x_Requests"])


def test_ptu_allocation_is_in_both_csvs_and_sums_to_the_ptu_cost(october_store: Any) -> None:
    """FOCUS allocation rows and the summary's AllocatedCost both add up to the 300.00 PTU cost."""
    result = statement(october_store)
    allocation = [r for r in rows(result.focus) if r["x_Meter"] == "ptu-allocation"]
    assert sum(Decimal(r["BilledCost"]) for r in allocation) == Decimal("300")
    assert sum(Decimal(r["AllocatedCost"]) for r in rows(result.summary)) == Decimal("300")


def test_summary_columns_and_totals(october_store: Any) -> None:
    """The summary starts with the finance columns, and its costs match the FOCUS rows to the cent."""
    result = statement(october_store)
    assert result.summary.decode().startswith(SUMMARY_HEAD + ",")
    summary = {row["SubscriptionId"]: row for row in rows(result.summary)}
    assert set(summary) == {"team-a", "team-b", "team-c", "team-z"}
    focus = rows(result.focus)
    for sub, row in summary.items():
        billed = sum(Decimal(r["BilledCost"]) for r in focus if r["SubAccountId"] == sub)
        charged = Decimal(row["TotalCost"]) + Decimal(row["AllocatedCost"])
        assert abs(billed - charged) <= Decimal("0.01")
        if row["Budget"]:
            pct = (charged * 100 / Decimal(row["Budget"])).quantize(Decimal("0.01"))
            assert Decimal(row["BudgetUsedPct"]) == pct
    assert summary["team-z"]["Requests"] == "0"


MULTIMODAL_CARD = """\
model,deployment_type,effective_from,meter,unit,price,currency
gpt-4o-audio-preview,global,2024-12-17,input,1M tokens,2.50,USD
gpt-4o-audio-preview,global,2024-12-17,output,1M tokens,10.00,USD
gpt-4o-audio-preview,global,2024-12-17,audio-input,1M tokens,40.00,USD
gpt-4o-audio-preview,global,2024-12-17,audio-output,1M tokens,80.00,USD
gpt-realtime,global,2025-08-28,input,1M tokens,4.00,USD
gpt-realtime,global,2025-08-28,cached-input,1M tokens,0.40,USD
gpt-realtime,global,2025-08-28,output,1M tokens,16.00,USD
gpt-realtime,global,2025-08-28,audio-input,1M tokens,32.00,USD
gpt-realtime,global,2025-08-28,cached-audio-input,1M tokens,0.40,USD
gpt-realtime,global,2025-08-28,audio-output,1M tokens,64.00,USD
gpt-image-1,global,2025-04-15,input,1M tokens,5.00,USD
gpt-image-1,global,2025-04-15,image-input,1M tokens,10.00,USD
gpt-image-1,global,2025-04-15,image-output,1M tokens,40.00,USD
dall-e-3,regional,2023-11-06,images:hd:1024x1024,1 image,0.08,USD
whisper,regional,2023-09-01,audio-seconds,1 hour,0.36,USD
tts,regional,2024-02-01,characters,1M characters,15.00,USD
"""
MULTIMODAL_MAP = (
    "deployment,model,deployment_type\nimages,dall-e-3,Standard\nstt,whisper,Standard\nspeech,tts,Standard\n"
)


def multimodal_events() -> list[dict[str, Any]]:
    """One call of each non-text shape, in documented payload shapes, on the 10th of October."""
    audio = {
        "prompt_tokens": 28,
        "completion_tokens": 653,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 589},
    }
    realtime = {
        "input_tokens": 132,
        "output_tokens": 121,
        "input_token_details": {
            "text_tokens": 119,
            "audio_tokens": 13,
            "cached_tokens": 64,
            "cached_tokens_details": {"text_tokens": 64, "audio_tokens": 0},
        },
        "output_token_details": {"text_tokens": 30, "audio_tokens": 91},
    }
    image = {
        "input_tokens": 50,
        "output_tokens": 4160,
        "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
    }
    calls: list[tuple[str, str, dict[str, Any]]] = [
        ("audio", "gpt-4o-audio-preview-2024-12-17", {"usage": audio}),
        ("rt", "gpt-realtime-2025-08-28", {"usage": realtime}),
        ("img", "gpt-image-1", {"usage": image}),
        (
            "images",
            "dall-e-3",
            {"usage": None, "billableUnits": {"images": 2, "imageSize": "1024x1024", "imageQuality": "hd"}},
        ),
        ("stt", "whisper", {"usage": {"type": "duration", "seconds": 90}}),
        ("speech", "tts", {"usage": None, "billableUnits": {"characters": 1234}}),
    ]
    events = []
    for n, (deployment, model, fields) in enumerate(calls):
        event = make_event(
            requestId=f"mm-{n}",
            timestamp=f"2026-10-10T10:0{n}:00Z",
            subscriptionId="team-m",
            deployment=deployment,
            model=model,
            **fields,
        )
        events.append(event)
    return events


def test_focus_has_one_row_per_meter_with_its_pricing_unit(tmp_path: Path) -> None:
    """Audio, realtime, image tokens, images, seconds and characters: one FOCUS row per meter and unit,
    quantity x price = cost, and the statement totals the table's TotalCost."""
    from chargeback.edges.store import DuckDBStore

    config = monthdata.write_config(tmp_path / "config")
    config["rate_card"].write_text(MULTIMODAL_CARD, encoding="utf-8")
    config["deployments"].write_text(MULTIMODAL_MAP, encoding="utf-8")
    with DuckDBStore(tmp_path / "mm.duckdb") as store:
        summary = monthdata.ingest(store, config, multimodal_events(), tmp_path / "dl")
        assert summary.written == 6
        total = store.connection.execute('SELECT sum(TotalCost) FROM "AOAIChargeback_CL"').fetchall()[0][0]
        rollup = run_rollup(LocalKqlRunner(store.connection), "2026-10")
    focus = rows(build_statement(rollup, {}, ()).focus)
    units = {
        (r["x_Model"], r["x_Meter"]): (r["PricingUnit"], r["ConsumedQuantity"], r["BilledCost"])
        for r in focus
    }
    assert units == {
        ("gpt-4o-audio-preview", "input"): ("1000000 Tokens", "28.000000", "0.000070"),
        ("gpt-4o-audio-preview", "output"): ("1000000 Tokens", "64.000000", "0.000640"),
        ("gpt-4o-audio-preview", "audio-output"): ("1000000 Tokens", "589.000000", "0.047120"),
        ("gpt-realtime", "input"): ("1000000 Tokens", "55.000000", "0.000220"),
        ("gpt-realtime", "cached-input"): ("1000000 Tokens", "64.000000", "0.000026"),
        ("gpt-realtime", "output"): ("1000000 Tokens", "30.000000", "0.000480"),
        ("gpt-realtime", "audio-input"): ("1000000 Tokens", "13.000000", "0.000416"),
        ("gpt-realtime", "audio-output"): ("1000000 Tokens", "91.000000", "0.005824"),
        ("gpt-image-1", "input"): ("1000000 Tokens", "10.000000", "0.000050"),
        ("gpt-image-1", "image-input"): ("1000000 Tokens", "40.000000", "0.000400"),
        ("gpt-image-1", "image-output"): ("1000000 Tokens", "4160.000000", "0.166400"),
        ("dall-e-3", "images"): ("Images", "2.000000", "0.160000"),
        ("whisper", "audio-seconds"): ("Hours", "90.000000", "0.009000"),
        ("tts", "characters"): ("1000000 Characters", "1234.000000", "0.018510"),
    }
    billed = sum(Decimal(r["BilledCost"]) for r in focus)
    assert billed == Decimal(repr(total)).quantize(Decimal("0.000001"))
