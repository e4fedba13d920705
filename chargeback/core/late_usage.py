"""Late usage of streams: the superseding row built from APIM's LLM log (``UsageSource = gateway-log``).

A stream the policy let through unread (so that APIM did not buffer it) is first charged for its
prompt only, flagged (``UsageUnknown`` starts with ``completion-tokens``, ``UsageRevision`` 0). When
the gateway's own counts for the call arrive (``ApiManagementGatewayLlmLog``, one count per
CorrelationId = our RequestId), ``gateway_revision`` rebuilds the call from the waiting row,
prices the gateway's counts with the same ``Pricer`` and returns the next revision of the row.

The LLM log has prompt, completion and total tokens only: no cached or reasoning split. The new
row says so (``UsageUnknown = cached-tokens,reasoning-tokens``): cached input is priced as input,
which can only overstate, never understate, the cost. Nothing here does I/O.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from chargeback.core.pipeline import Row, build_row
from chargeback.core.pricing import Pricer
from chargeback.core.schema import MAX_TOKENS_PER_REQUEST, Event
from chargeback.core.usage import GATEWAY_LOG_UNKNOWN, UNKNOWN_COMPLETION, Usage, UsageSource
from chargeback.errors import Reason, RejectedEvent


@dataclass(frozen=True, slots=True)
class GatewayCounts:
    """What APIM's LLM log recorded for one call."""

    prompt_tokens: int
    completion_tokens: int
    model: str = ""
    subscription_id: str = ""  # ApimSubscriptionId from the gateway log, when it has arrived


def is_waiting(record: Mapping[str, Any]) -> bool:
    """True for a row whose completion is unknown until APIM's LLM log arrives."""
    return str(record.get("UsageUnknown") or "").startswith(UNKNOWN_COMPLETION)


def gateway_counts(record: Mapping[str, Any]) -> GatewayCounts | None:
    """The gateway's counts joined to a waiting row (``gateway_llm_usage.kql``), or None if not yet logged.

    Raises RejectedEvent when the log holds counts no call can have (negative, absurd, not whole).
    """
    prompt, completion = record.get("GatewayPromptTokens"), record.get("GatewayCompletionTokens")
    if _missing(prompt) and _missing(completion):
        return None
    counts = []
    for name, value in (("PromptTokens", prompt), ("CompletionTokens", completion)):
        number = 0 if _missing(value) else value
        if isinstance(number, float) and number.is_integer():
            number = int(number)
        if isinstance(number, bool) or not isinstance(number, int):
            raise RejectedEvent(Reason.WRONG_TYPE, f"LLM log {name} is not a whole number: {value!r}")
        if not 0 <= number <= MAX_TOKENS_PER_REQUEST:
            raise RejectedEvent(Reason.INVALID_VALUE, f"LLM log {name} is out of range: {number}")
        counts.append(number)
    return GatewayCounts(
        counts[0],
        counts[1],
        _text(record.get("GatewayModel")),
        _text(record.get("GatewaySubscriptionId")),
    )


def _model_of(stored_model: str, version: str, gateway_model: str) -> str:
    """The model a revision is priced as: the stored model and version first.

    APIM's LLM log may name the model without its version (``gpt-4o``); taking that over a stored
    ``gpt-4o`` + ``2024-05-13`` would drop the version and price the call at another model's rate.
    """
    if stored_model and version:
        return f"{stored_model}-{version}"
    if gateway_model and (not stored_model or gateway_model.startswith(stored_model)):
        return gateway_model  # it adds what the row lacks: the model, or its version
    return stored_model or gateway_model


def event_of_row(record: Mapping[str, Any], model: str = "") -> Event:
    """The call a stored usage row describes, as the pricer needs it (bodies are never stored)."""
    tags = record.get("Tags")
    if isinstance(tags, str):
        try:
            tags = json.loads(tags) if tags.strip() else {}
        except ValueError:
            tags = {}
    version = _text(record.get("ModelVersion"))
    stored_model = _text(record.get("Model"))
    return Event(
        request_id=_text(record.get("RequestId")),
        timestamp=_utc(record.get("TimeGenerated")),
        subscription_id=_text(record.get("SubscriptionId")),
        deployment=_text(record.get("Deployment")),
        status_code=int(record.get("StatusCode") or 200),
        schema_version=_text(record.get("EventSchemaVersion")) or "1",
        subscription_name=_text(record.get("SubscriptionName")),
        product_id=_text(record.get("ProductId")),
        user_id=_text(record.get("UserId")),
        api_id=_text(record.get("ApiId")),
        operation_id=_text(record.get("OperationId")),
        model=_model_of(stored_model, version, model),
        api_version=_text(record.get("ApiVersion")),
        region=_text(record.get("Region")),
        backend_id=_text(record.get("BackendId")),
        stream=bool(record.get("Streamed")),
        tags={str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {},
    )


def gateway_revision(record: Mapping[str, Any], counts: GatewayCounts, pricer: Pricer) -> Row:
    """The row that supersedes a waiting one: the gateway's counts, priced, one revision higher.

    Raises RejectedEvent (``gateway-log-mismatch``) when the gateway log names another
    subscription: a correlation id belongs to one call, so the counts are not this row's.
    """
    subscription = _text(record.get("SubscriptionId"))
    if counts.subscription_id and counts.subscription_id != subscription:
        raise RejectedEvent(
            Reason.GATEWAY_LOG_MISMATCH,
            f"the gateway log puts {record.get('RequestId')} on subscription {counts.subscription_id!r}, "
            f"the usage row on {subscription!r}",
        )
    event = event_of_row(record, counts.model)
    usage = Usage(
        counts.prompt_tokens, counts.completion_tokens, 0, 0, UsageSource.GATEWAY_LOG, GATEWAY_LOG_UNKNOWN
    )
    row = build_row(event, usage, pricer.price(event, usage))
    row["UsageRevision"] = int(record.get("UsageRevision") or 0) + 1
    return row


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))  # null, or NaN from pandas


def _text(value: Any) -> str:
    return "" if _missing(value) else str(value)


def _utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise RejectedEvent(Reason.BAD_TIMESTAMP, f"stored TimeGenerated is not a time: {value!r}")
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
