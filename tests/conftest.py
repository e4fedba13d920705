"""Shared fixtures: valid sample events, a small rate card and deployments map, fresh stores."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

RATE_CARD = """\
# version: test-card
model,deployment_type,effective_from,input_per_1m,cached_input_per_1m,output_per_1m,currency
gpt-4o,global,2024-01-01,5.00,2.50,15.00,USD
gpt-4o,global,2026-10-15,2.50,1.25,10.00,USD
gpt-4o,datazone,2024-01-01,2.75,1.375,11.00,USD
gpt-4o-mini,global,2024-01-01,0.15,,0.60,USD
gpt-4o-mini,global-batch,2024-01-01,0.075,,0.30,USD
o4-mini,global,2024-01-01,1.10,0.275,4.40,USD
text-embedding-3-small,global,2024-01-01,0.022,,,USD
"""

DEPLOYMENTS = """\
deployment,model,deployment_type
chat,gpt-4o,global
chat-eu,gpt-4o,datazone
mini,gpt-4o-mini,global
mini-batch,gpt-4o-mini,global-batch
reason,o4-mini,global
embed,text-embedding-3-small,global
"""


def make_event(**overrides: Any) -> dict[str, Any]:
    """A valid v1 event (non-streamed chat on deployment ``chat``), with fields overridden or removed."""
    event: dict[str, Any] = {
        "schemaVersion": "1",
        "requestId": str(uuid.uuid4()),
        "timestamp": "2026-10-20T10:15:30.1234567Z",
        "subscriptionId": "team-a",
        "subscriptionName": "Team A",
        "deployment": "chat",
        "model": "gpt-4o-2024-11-20",
        "statusCode": 200,
        "stream": False,
        "usage": {
            "prompt_tokens": 1000,
            "completion_tokens": 200,
            "total_tokens": 1200,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
    for key, value in overrides.items():
        if value is ...:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def to_body(event: dict[str, Any]) -> bytes:
    """An Event Hub message body for an event."""
    return json.dumps(event).encode("utf-8")


@pytest.fixture
def event_factory() -> Callable[..., dict[str, Any]]:
    """Builds valid events; pass field=... to drop a field."""
    return make_event


@pytest.fixture
def config_files(tmp_path: Path) -> tuple[Path, Path]:
    """A small rate card (with a gpt-4o price change on 2026-10-15) and deployments map on disk."""
    card = tmp_path / "rate_card.csv"
    card.write_text(RATE_CARD, encoding="utf-8")
    deployments = tmp_path / "deployments.csv"
    deployments.write_text(DEPLOYMENTS, encoding="utf-8")
    return card, deployments


@pytest.fixture
def pricer(config_files: tuple[Path, Path]) -> Any:
    """A Pricer over the small test rate card."""
    from chargeback.pricing import Pricer

    return Pricer.from_files(*config_files)
