"""The pure pipeline: one message, one outcome; the row carries DESIGN's columns and exact costs."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from chargeback.core.pipeline import Charge, Message, Rejection, Source, process_batch, process_message
from chargeback.core.schema import table_columns
from chargeback.errors import Reason
from tests.conftest import make_event, to_body

NOW = datetime(2026, 11, 1, tzinfo=UTC)
SRC = Source("file", "t.jsonl", "1")


def test_row_has_exactly_the_table_columns(pricer):
    """A charged row has every column of AOAIChargeback_CL and nothing else."""
    outcome = process_message(Message(to_body(make_event()), SRC), pricer, NOW)
    assert isinstance(outcome, Charge)
    assert list(outcome.row) == [c.name for c in table_columns()]


def test_row_values_follow_the_event_usage_and_price(pricer):
    """Reported usage is priced at the card in force (after the 2026-10-15 gpt-4o change)."""
    event = make_event(
        tags={"project": "alpha"},
        usage={
            "prompt_tokens": 1000,
            "completion_tokens": 200,
            "prompt_tokens_details": {"cached_tokens": 400},
        },
    )
    row = process_message(Message(to_body(event), SRC), pricer, NOW).row  # type: ignore[union-attr]
    assert row["TimeGenerated"] == datetime(2026, 10, 20, 10, 15, 30, 123456, tzinfo=UTC)
    assert (row["PromptTokens"], row["CachedTokens"], row["CompletionTokens"], row["TotalTokens"]) == (
        1000,
        400,
        200,
        1200,
    )
    assert row["UsageSource"] == "reported"
    assert (row["Model"], row["ModelVersion"], row["DeploymentType"]) == ("gpt-4o", "2024-11-20", "global")
    assert row["InputCost"] == Decimal("600") * Decimal("2.50") / Decimal(1_000_000)
    assert row["CachedInputCost"] == Decimal("400") * Decimal("1.25") / Decimal(1_000_000)
    assert row["OutputCost"] == Decimal("200") * Decimal("10.00") / Decimal(1_000_000)
    assert row["TotalCost"] == Decimal("0.0015") + Decimal("0.0005") + Decimal("0.002")
    assert (row["PricingStatus"], row["Currency"]) == ("priced", "USD")
    assert row["RateCardVersion"].startswith("test-card+")
    assert json.loads(row["Tags"]) == {"project": "alpha"}
    assert row["EventSchemaVersion"] == "1"


def test_rejection_keeps_the_message_and_names_the_field(pricer):
    """A bad event becomes a Rejection with its reason, field and untouched body."""
    body = to_body(make_event(statusCode="oops"))
    outcome = process_message(Message(body, SRC), pricer, NOW)
    assert isinstance(outcome, Rejection)
    assert (outcome.reason, outcome.field, outcome.message.body) == (Reason.WRONG_TYPE, "statusCode", body)


def test_a_refused_event_names_the_request_id_it_claims(pricer):
    """A refused event keeps its body's requestId on the rejection, so its dead-letter can be found."""
    body = to_body(make_event(requestId="req-42", statusCode="oops"))
    outcome = process_message(Message(body, SRC), pricer, NOW)
    assert isinstance(outcome, Rejection)
    assert outcome.request_id == "req-42"


@pytest.mark.parametrize("claimed", [None, 42, "", "   ", "a\x00b", "\u202eevil", "x" * 257])
def test_a_refused_event_names_no_request_id_the_contract_would_refuse(pricer, claimed: Any):
    """A missing, mistyped, blank, control-bearing or over-long requestId is not repeated on the rejection."""
    body = to_body(make_event(requestId=claimed, statusCode="oops"))
    outcome = process_message(Message(body, SRC), pricer, NOW)
    assert isinstance(outcome, Rejection)
    assert outcome.request_id == ""


def test_batch_has_one_outcome_per_message_in_order(pricer):
    """Good and bad messages are split, none dropped, none doubled."""
    bodies = [to_body(make_event()), b"garbage", to_body(make_event(usage={"prompt_tokens": -1}))]
    result = process_batch([Message(b, SRC) for b in bodies], pricer, NOW)
    assert len(result.charges) == 1
    assert [r.reason for r in result.rejections] == [Reason.INVALID_JSON, Reason.NEGATIVE_TOKENS]


class ExplodingPricer:
    def price(self, event, usage):
        raise ZeroDivisionError("bug")


def test_an_unforeseen_fault_is_an_internal_error_rejection_not_a_crash():
    """A bug downstream of parsing dead-letters the event with internal-error and its request id."""
    event = make_event()
    outcome = process_message(Message(to_body(event), SRC), ExplodingPricer(), NOW)  # type: ignore[arg-type]
    assert isinstance(outcome, Rejection)
    assert outcome.reason == Reason.INTERNAL_ERROR
    assert outcome.request_id == event["requestId"]
    assert "ZeroDivisionError" in outcome.detail


def real_tiktoken_panic() -> BaseException:
    """The BaseException tiktoken's Rust core raises on a megabyte of alternating whitespace."""
    from chargeback.core.tokens import get_encoding

    try:
        get_encoding("o200k_base").encode_ordinary(" \t" * 500_000)
    except BaseException as exc:  # pyo3_runtime.PanicException is not an Exception
        return exc
    pytest.fail("tiktoken no longer panics here; pick another native fault")


class FaultyPricer:
    """The real pricer, except that pricing one RequestId raises a given BaseException."""

    def __init__(self, inner: Any, poison: str, fault: BaseException) -> None:
        self.inner, self.poison, self.fault = inner, poison, fault

    def price(self, event: Any, usage: Any) -> Any:
        if event.request_id == self.poison:
            raise self.fault
        return self.inner.price(event, usage)


def test_a_native_panic_dead_letters_its_event_and_never_its_neighbours(pricer):
    """A PanicException (BaseException) while handling one event is that event's native-fault."""
    panic = real_tiktoken_panic()
    assert not isinstance(panic, Exception)
    events = [make_event() for _ in range(3)]
    faulty = FaultyPricer(pricer, events[1]["requestId"], panic)
    result = process_batch([Message(to_body(e), SRC) for e in events], faulty, NOW)  # type: ignore[arg-type]
    assert [c.row["RequestId"] for c in result.charges] == [events[0]["requestId"], events[2]["requestId"]]
    [rejection] = result.rejections
    assert (rejection.reason, rejection.request_id) == (Reason.NATIVE_FAULT, events[1]["requestId"])
    assert rejection.detail.startswith("PanicException")


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), SystemExit(3)])
def test_interpreter_exit_still_propagates(pricer, stop: BaseException):
    """KeyboardInterrupt and SystemExit are the process stopping, not an event's fault: they go on."""
    event = make_event()
    with pytest.raises(type(stop)):
        process_message(Message(to_body(event), SRC), FaultyPricer(pricer, event["requestId"], stop), NOW)  # type: ignore[arg-type]
