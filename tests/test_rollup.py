"""The monthly rollup: totals, meters and unit prices, and the PTU allocation arithmetic."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chargeback.core.pricing import Deployment, DeploymentMap
from chargeback.edges.kqlrun import LocalKqlRunner
from chargeback.errors import ConfigError
from chargeback.jobs.rollup import (
    allocate_ptu,
    largest_remainder,
    meter_charges,
    month_window,
    ptu_weighted_tokens,
    rollup_ptu_lines,
    run_rollup,
    subscription_totals,
)
from tests import monthdata

DEDUPED = """SELECT * FROM (SELECT DISTINCT ON ("RequestId") * FROM "AOAIChargeback_CL"
                            ORDER BY "RequestId", "TimeGenerated" DESC)"""


def test_rollup_totals_equal_the_sum_of_the_deduplicated_rows(october_store: Any) -> None:
    """Requests, tokens and cost of the rollup equal SQL over one row per RequestId (redeliveries in)."""
    connection = monthdata.duplicated_copy(october_store)
    rollup = run_rollup(LocalKqlRunner(connection), "2026-10")
    charges = meter_charges(rollup)
    totals = subscription_totals(rollup, charges)
    expected = connection.execute(
        f"""SELECT SubscriptionId, count(*), sum(PromptTokens), sum(CompletionTokens), sum(ReasoningTokens),
                   sum(coalesce(TotalCost, 0)) FROM ({DEDUPED}) GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    assert [key[0] for key in totals] == [row[0] for row in expected]
    for (sub, requests, prompt, completion, reasoning, cost), entry in zip(
        expected, totals.values(), strict=True
    ):
        assert (entry.subscription_id, entry.requests, entry.prompt_tokens) == (sub, requests, prompt)
        assert (entry.completion_tokens, entry.reasoning_tokens) == (completion, reasoning)
        assert abs(entry.cost - Decimal(repr(cost))) < Decimal("0.000001")


def test_meter_tokens_split_prompt_into_input_and_cached(october_store: Any) -> None:
    """Input + cached input tokens = prompt tokens and output = completion tokens, for charged calls."""
    rollup = run_rollup(LocalKqlRunner(october_store.connection), "2026-10")
    charges = meter_charges(rollup)
    prompt, cached, completion = october_store.connection.execute(
        """SELECT sum(PromptTokens), sum(CachedTokens), sum(CompletionTokens) FROM "AOAIChargeback_CL"
           WHERE PricingStatus IN ('priced', 'unpriced')"""
    ).fetchone()
    by_meter = {
        meter: sum(c.tokens for c in charges if c.meter == meter)
        for meter in ("input", "cached-input", "output")
    }
    assert by_meter == {"input": prompt - cached, "cached-input": cached, "output": completion}


def test_each_meter_charge_is_quantity_times_unit_price(october_store: Any) -> None:
    """Every priced charge's cost is tokens / 1M x the unit price, within a float sum's noise of KQL."""
    charges = meter_charges(run_rollup(LocalKqlRunner(october_store.connection), "2026-10"))
    priced = [c for c in charges if c.unit_price is not None]
    assert priced
    for charge in priced:
        assert charge.unit_price is not None
        assert charge.cost == Decimal(charge.tokens) / Decimal(1_000_000) * charge.unit_price
        assert abs(charge.cost - charge.kql_cost) < Decimal("0.000001")


def test_a_mid_month_price_change_gives_one_row_per_price(october_store: Any) -> None:
    """The test card reprices gpt-4o global on 2026-10-15: its input meter appears at 5.00 and 2.50."""
    charges = meter_charges(run_rollup(LocalKqlRunner(october_store.connection), "2026-10"))
    prices = {
        c.unit_price
        for c in charges
        if (c.model, c.deployment_type, c.meter) == ("gpt-4o", "global", "input")
    }
    assert prices == {Decimal("5"), Decimal("2.5")}


def test_unpriced_usage_is_a_zero_cost_row_without_price(october_store: Any) -> None:
    """Calls to a model the card does not price are kept, with no unit price and zero cost."""
    charges = meter_charges(run_rollup(LocalKqlRunner(october_store.connection), "2026-10"))
    unpriced = [c for c in charges if c.pricing_status == "unpriced"]
    assert unpriced
    assert all(c.unit_price is None and c.cost == 0 and c.tokens > 0 for c in unpriced)


def test_ptu_allocation_sums_exactly_to_the_ptu_cost(october_store: Any) -> None:
    """The PTU deployment's 300.00 is split between the subscriptions that called it, to the cent."""
    rollup = run_rollup(LocalKqlRunner(october_store.connection), "2026-10")
    ptu = DeploymentMap.load(october_store.config["deployments"]).ptu_deployments()
    allocations = allocate_ptu(ptu, ptu_weighted_tokens(rollup_ptu_lines(rollup)))
    assert len(allocations) >= 2
    assert sum(a.amount for a in allocations) == Decimal("300.00")
    assert all(a.amount == a.amount.quantize(Decimal("0.01")) for a in allocations)


def test_output_tokens_weigh_more_in_the_allocation() -> None:
    """With weight 4, a subscription with 100 output tokens counts as 400 input tokens."""
    weighted = ptu_weighted_tokens([("PTU", "a", 400, 0), ("ptu", "b", 0, 100)], Decimal(4))
    assert weighted == {"ptu": {"a": Decimal(400), "b": Decimal(400)}}
    deployment = Deployment("ptu", "gpt-4o", "", "ptu", Decimal("100.01"), "USD")
    split = {a.subscription_id: a.amount for a in allocate_ptu([deployment], weighted)}
    assert split == {"a": Decimal("50.01"), "b": Decimal("50.00")}


def test_an_unused_ptu_deployment_stays_on_an_unallocated_row() -> None:
    """A PTU nobody called keeps its whole cost on one row without subscription."""
    deployment = Deployment("idle", "gpt-4o", "", "ptu", Decimal("3900"), "USD")
    (allocation,) = allocate_ptu([deployment], {})
    assert allocation.unallocated
    assert allocation.amount == Decimal("3900.00")


@given(
    st.integers(min_value=0, max_value=10_000_000),
    st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=12),
)
def test_largest_remainder_always_sums_to_the_total(cents: int, weights: list[int]) -> None:
    """Whatever the weights, the shares are whole cents that add up to the total exactly."""
    total = Decimal(cents) / 100
    shares = largest_remainder(total, {f"s{i}": Decimal(w) for i, w in enumerate(weights)})
    if any(weights):
        assert sum(shares.values()) == total
        assert all(share >= 0 and share == share.quantize(Decimal("0.01")) for share in shares.values())
    else:
        assert shares == {}


def test_month_window_validates_the_month() -> None:
    """YYYY-MM gives the month's UTC bounds; anything else is refused."""
    start, end = month_window("2024-02")
    assert (start.day, end.month, (end - start).days) == (1, 3, 29)
    with pytest.raises(ConfigError):
        month_window("2024-13")


class _AlwaysDeduplicate(LocalKqlRunner):
    """The local runner with the RequestId dedupe forced on, as Log Analytics runs it."""

    def run(self, name: str, params: Any, *, window: Any = None) -> Any:
        return super().run(name, {**params, "Deduplicate": True}, window=window)

    def records(self, name: str, params: Any, *, window: Any = None) -> list[dict[str, Any]]:
        return super().records(name, {**params, "Deduplicate": True}, window=window)


def test_the_keyed_store_rollup_skips_the_dedupe_and_equals_the_deduplicated_one(october_store: Any) -> None:
    """On the store (RequestId primary key) the rollup runs without the dedupe; every line is the same."""
    from chargeback.jobs.statement import build_statement

    runner = LocalKqlRunner(october_store.connection)
    assert runner.unique_request_ids()
    skipped = run_rollup(runner, "2026-10")
    deduped = run_rollup(_AlwaysDeduplicate(october_store.connection), "2026-10")
    assert skipped.lines == deduped.lines
    assert skipped.rate_card_versions == deduped.rate_card_versions
    ptu = DeploymentMap.load(october_store.config["deployments"]).ptu_deployments()
    assert build_statement(skipped, {}, ptu).focus == build_statement(deduped, {}, ptu).focus


def _text_record(**modality: Any) -> dict[str, Any]:
    """A result record of the text leg (modality columns null), with ``modality`` overriding."""
    from chargeback.jobs.rollup import _METER_COLUMNS

    record: dict[str, Any] = dict.fromkeys(
        column for columns in _METER_COLUMNS.values() for column in columns
    )
    record.update(
        SubscriptionId="s", SubscriptionName="S", Model="gpt-4o", DeploymentType="global", PtuDeployment="",
        PricingStatus="priced", Currency="USD", UsageSource="reported", Region="", TagsText="",
        InputPricePer1M=2.5, CachedInputPricePer1M=None, OutputPricePer1M=10.0, Requests=2,
        PromptTokens=300, CachedTokens=0, InputTokens=300, CompletionTokens=100, ReasoningTokens=0,
        InputCost=0.00075, CachedInputCost=0.0, OutputCost=0.001,
    )  # fmt: skip
    record.update(modality)
    return record


def test_a_text_line_has_the_text_meters_and_a_modality_quantity_adds_its_meter() -> None:
    """Null modality columns give only the text meters; a modality quantity adds its meter, a zero none."""
    from chargeback.jobs.rollup import RollupLine

    text = RollupLine.from_record(_text_record())
    assert [meter for meter, *_ in text.meters] == ["input", "output"]
    assert text.meter("input") == (300, Decimal("0.00075"), Decimal("2.5"))
    audio = RollupLine.from_record(
        _text_record(
            AudioSecondsQuantity=90.0, AudioSecondsCost=0.15, AudioSecondsPrice=6.0, ImagesQuantity=0
        )
    )
    assert [meter for meter, *_ in audio.meters] == ["input", "output", "audio-seconds"]
    assert audio.meter("audio-seconds") == (Decimal("90.0"), Decimal("0.15"), Decimal("6"))
