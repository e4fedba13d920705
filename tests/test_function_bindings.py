"""The Function app as the Functions host sees it: the binding metadata function_app.py indexes to.

The Python worker indexes ``function_app.app`` and sends the host, per function, its raw bindings
(``Function.get_raw_bindings()``: the JSON of each binding) and its retry options (the
``retry_policy`` setting). These tests read that same metadata and hold it against the binding
properties the host documents for the Event Hubs and timer triggers and for retries
(``tests/functions_host/bindings.schema.json``, written from Microsoft's pages), then check what
the schema cannot: the app settings the bindings name exist, schedules are valid six-field
NCRONTAB at the cadence the docstrings promise, and the retry policy holds the checkpoint.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import function_app
from chargeback.settings import Settings

REPO = Path(__file__).resolve().parent.parent
SCHEMA = json.loads((REPO / "tests" / "functions_host" / "bindings.schema.json").read_text(encoding="utf-8"))
SAMPLE = json.loads((REPO / "local.settings.sample.json").read_text(encoding="utf-8"))["Values"]
# The azure-functions library writes enum values in upper case (IN, MANY); the host reads them
# case-insensitively, so they are compared in the documented (lower) case.
CASE_FREE = ("direction", "cardinality", "dataType")
# Python's retry_policy setting names -> the host's retry option names (the worker's mapping).
RETRY_NAMES = {
    "strategy": "strategy",
    "max_retry_count": "maxRetryCount",
    "delay_interval": "delayInterval",
    "minimum_interval": "minimumInterval",
    "maximum_interval": "maximumInterval",
}
RETRY_STRATEGIES = {"fixed_delay": "fixedDelay", "exponential_backoff": "exponentialBackoff"}


def host_metadata() -> dict[str, dict[str, Any]]:
    """Per function name: the bindings and retry options the worker sends the host."""
    functions: dict[str, dict[str, Any]] = {}
    indexed = function_app.app.get_functions()  # indexes once: a second call refuses the names
    for function in indexed:
        bindings = []
        for raw in function.get_raw_bindings():
            binding = json.loads(raw)
            for key in CASE_FREE:
                if isinstance(binding.get(key), str):
                    binding[key] = binding[key].lower()
            bindings.append(binding)
        metadata: dict[str, Any] = {"bindings": bindings}
        policy = function.get_settings_dict("retry_policy")
        if policy:
            retry = {RETRY_NAMES[k]: v for k, v in policy.items() if k in RETRY_NAMES}
            retry["strategy"] = RETRY_STRATEGIES[retry["strategy"]]
            retry["maxRetryCount"] = int(retry["maxRetryCount"])
            metadata["retry"] = retry
        functions[str(function.get_function_name())] = metadata
    assert len(functions) == len(indexed), "function names are unique"
    return functions


METADATA = host_metadata()


def test_the_app_indexes_the_expected_functions() -> None:
    """The Event Hub ingest and the timers, each under a unique name."""
    assert set(METADATA) >= {"on_usage_events", "monthly_rollup", "daily_budget_check", "gateway_usage"}


@pytest.mark.parametrize("name", sorted(METADATA))
def test_every_function_matches_the_documented_binding_schema(name: str) -> None:
    """Each function's bindings and retry options validate against the host's documented properties."""
    jsonschema.Draft202012Validator(SCHEMA).validate(METADATA[name])


def test_the_event_hub_trigger_is_batched_identity_based_and_settings_driven() -> None:
    """cardinality many, connection EVENTHUB (identity), hub and consumer group from app settings."""
    (binding,) = METADATA["on_usage_events"]["bindings"]
    assert binding["type"] == "eventHubTrigger"
    assert binding["cardinality"] == "many"
    assert binding["connection"] == "EVENTHUB"
    assert binding["eventHubName"] == "%EVENTHUB_NAME%"
    assert binding["consumerGroup"] == "%EVENTHUB_CONSUMER_GROUP%"
    fields = {field.upper() for field in Settings.__dataclass_fields__}
    sample = {key.upper() for key in SAMPLE}
    for reference in re.findall(r"%([^%]+)%", binding["eventHubName"] + binding["consumerGroup"]):
        assert reference in fields
        assert reference in sample
    # An identity-based connection is the prefix of <connection>__fullyQualifiedNamespace.
    assert f"{binding['connection']}__FULLYQUALIFIEDNAMESPACE" in sample
    assert f"{binding['connection']}__FULLYQUALIFIEDNAMESPACE" in fields


def test_the_retry_policy_holds_the_checkpoint_until_the_batch_is_persisted() -> None:
    """Exponential backoff, retried indefinitely (-1), 5 s to 10 min: never checkpoint past a loss."""
    retry = METADATA["on_usage_events"]["retry"]
    assert retry == {
        "strategy": "exponentialBackoff",
        "maxRetryCount": -1,
        "minimumInterval": "00:00:05",
        "maximumInterval": "00:10:00",
    }


def _seconds(timespan: str) -> int:
    hours, minutes, seconds = (int(part) for part in timespan.split(":"))
    return hours * 3600 + minutes * 60 + seconds


def test_the_backoff_interval_bounds_are_ordered() -> None:
    """The minimum interval is below the maximum one."""
    retry = METADATA["on_usage_events"]["retry"]
    assert 0 < _seconds(retry["minimumInterval"]) < _seconds(retry["maximumInterval"])


@pytest.mark.parametrize(
    ("name", "schedule"),
    [
        ("monthly_rollup", "0 30 2 * * *"),
        ("daily_budget_check", "0 0 6 * * *"),
        ("gateway_usage", "0 */5 * * * *"),
    ],
)
def test_timers_have_six_field_schedules_and_no_startup_run(name: str, schedule: str) -> None:
    """NCRONTAB {second} {minute} {hour} {day} {month} {day-of-week}; no run on every restart."""
    (binding,) = METADATA[name]["bindings"]
    assert binding["type"] == "timerTrigger"
    assert binding["schedule"] == schedule
    assert len(binding["schedule"].split()) == 6
    assert binding["runOnStartup"] is False
    assert binding["useMonitor"] is True
    assert "retry" not in METADATA[name]
