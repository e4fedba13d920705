"""Late usage of streams: the gateway's counts read strictly, and the row that supersedes a waiting one."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from chargeback.core.late_usage import GatewayCounts, gateway_counts, gateway_revision, is_waiting
from chargeback.core.usage import UNKNOWN_COMPLETION
from chargeback.errors import Reason, RejectedEvent


def waiting_row(**overrides: Any) -> dict[str, Any]:
    """A stored usage row charged for its prompt only, waiting for APIM's LLM log."""
    row: dict[str, Any] = {
        "RequestId": "req-1",
        "TimeGenerated": datetime(2026, 10, 20, 9, 30, tzinfo=UTC),
        "SubscriptionId": "team-a",
        "SubscriptionName": "Team A",
        "Deployment": "chat-gpt4o",
        "Model": "gpt-4o",
        "ModelVersion": "2024-08-06",
        "StatusCode": 200,
        "Streamed": True,
        "Tags": '{"project": "alpha"}',
        "UsageUnknown": UNKNOWN_COMPLETION,
        "UsageRevision": 0,
    }
    row.update(overrides)
    return row


def test_only_rows_with_an_unknown_completion_wait():
    """A row flagged completion-unknown waits; a reported row does not."""
    assert is_waiting(waiting_row())
    assert not is_waiting(waiting_row(UsageUnknown=""))
    assert not is_waiting(waiting_row(UsageUnknown=None))


def test_counts_are_whole_in_range_numbers_or_not_yet_logged():
    """No counts yet is None; floats that are whole are taken; anything else is a rejection with a reason."""
    assert gateway_counts({"GatewayPromptTokens": None, "GatewayCompletionTokens": math.nan}) is None
    counts = gateway_counts(
        {"GatewayPromptTokens": 120.0, "GatewayCompletionTokens": 30, "GatewaySubscriptionId": "team-a"}
    )
    assert counts == GatewayCounts(120, 30, "", "team-a")
    with pytest.raises(RejectedEvent) as wrong:
        gateway_counts({"GatewayPromptTokens": "12", "GatewayCompletionTokens": 1})
    assert wrong.value.reason == Reason.WRONG_TYPE
    with pytest.raises(RejectedEvent) as negative:
        gateway_counts({"GatewayPromptTokens": -1, "GatewayCompletionTokens": 1})
    assert negative.value.reason == Reason.INVALID_VALUE


def test_the_revision_prices_the_gateway_counts_one_revision_higher(pricer):
    """The superseding row carries the gateway's tokens, the gateway-log source and revision + 1."""
    row = gateway_revision(waiting_row(UsageRevision=2), GatewayCounts(1000, 200, "", "team-a"), pricer)
    assert (row["RequestId"], row["SubscriptionId"], row["UsageRevision"]) == ("req-1", "team-a", 3)
    assert (row["PromptTokens"], row["CompletionTokens"]) == (1000, 200)
    assert row["UsageSource"] == "gateway-log"


def test_counts_logged_for_another_subscription_are_refused(pricer):
    """A correlation id names one call: counts on another subscription are a mismatch, not a charge."""
    with pytest.raises(RejectedEvent) as caught:
        gateway_revision(waiting_row(), GatewayCounts(10, 2, "", "team-b"), pricer)
    assert caught.value.reason == Reason.GATEWAY_LOG_MISMATCH


def test_an_unversioned_gateway_model_keeps_the_stored_version(pricer):
    """APIM's log naming plain gpt-4o does not drop the stored version the call is priced by."""
    stored = waiting_row(ModelVersion="2024-05-13")
    from_log = gateway_revision(stored, GatewayCounts(1000, 200, "gpt-4o", "team-a"), pricer)
    exact = gateway_revision(stored, GatewayCounts(1000, 200, "", "team-a"), pricer)
    assert from_log["ModelVersion"] == "2024-05-13"
    assert from_log["TotalCost"] == exact["TotalCost"]


def test_the_gateway_model_fills_a_version_the_row_lacks(pricer):
    """A stored row without a version takes the versioned model name APIM's log gives."""
    row = gateway_revision(
        waiting_row(ModelVersion=""), GatewayCounts(1000, 200, "gpt-4o-2024-05-13", "team-a"), pricer
    )
    assert row["ModelVersion"] == "2024-05-13"
