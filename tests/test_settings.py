"""Settings: read on demand from an environment mapping, validated, the same names everywhere."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

from chargeback.errors import ConfigError
from chargeback.settings import Settings, default_config_path

REPO = Path(__file__).resolve().parent.parent


def test_defaults_are_the_embedded_local_store_and_shipped_config():
    """With an empty environment the app runs on DuckDB, local folders and the shipped CSVs."""
    settings = Settings.from_env({})
    assert settings.chargeback_sink == "duckdb"
    assert settings.deadletter_path
    assert settings.exports_path
    assert settings.rate_card == default_config_path("rate_card.csv")
    assert settings.rate_card.exists()
    assert settings.deployments.exists()


def test_values_come_from_upper_case_names_and_blank_means_default():
    """Each field reads its UPPER_CASE variable; a blank value keeps the default."""
    settings = Settings.from_env(
        {
            "CHARGEBACK_DUCKDB_PATH": "/data/x.duckdb",
            "ROLLUP_GRACE_HOURS": "12",
            "EVENTHUB_CONSUMER_GROUP": " ",
        }
    )
    assert settings.chargeback_duckdb_path == "/data/x.duckdb"
    assert settings.rollup_grace_hours == 12
    assert settings.eventhub_consumer_group == "$Default"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CHARGEBACK_SINK": "s3"}, "CHARGEBACK_SINK"),
        ({"ROLLUP_GRACE_HOURS": "two"}, "ROLLUP_GRACE_HOURS"),
        ({"ROLLUP_GRACE_HOURS": "-1"}, "ROLLUP_GRACE_HOURS"),
        ({"CHARGEBACK_SINK": "loganalytics"}, "LOGS_INGESTION_ENDPOINT"),
        ({"LOGS_INGESTION_ENDPOINT": "http://dce.example.com"}, "https"),
        ({"STORAGE_BLOB_ENDPOINT": "ftp://x"}, "http(s)"),
        ({"ALERT_WEBHOOK_URL": "http://hooks.example.com/x"}, "https"),
    ],
)
def test_invalid_settings_are_config_errors_naming_the_setting(env: dict[str, str], message: str):
    """Bad values fail fast with a ConfigError that says which setting and why."""
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.from_env(env)


def test_mixed_case_names_are_read_as_the_functions_host_spells_them():
    """EVENTHUB__fullyQualifiedNamespace (mixed case, as in Bicep and the sample) is read on Linux too."""
    settings = Settings.from_env({"EVENTHUB__fullyQualifiedNamespace": "ns.servicebus.windows.net"})
    assert settings.eventhub__fullyqualifiednamespace == "ns.servicebus.windows.net"


def test_reading_the_module_does_not_read_the_environment(monkeypatch: pytest.MonkeyPatch):
    """Settings are read when asked, so a changed environment is seen by the next call."""
    monkeypatch.setenv("CHARGEBACK_DUCKDB_PATH", "/a.duckdb")
    first = Settings.from_env()
    monkeypatch.setenv("CHARGEBACK_DUCKDB_PATH", "/b.duckdb")
    assert (first.chargeback_duckdb_path, Settings.from_env().chargeback_duckdb_path) == (
        "/a.duckdb",
        "/b.duckdb",
    )


def test_local_settings_sample_lists_and_explains_every_setting():
    """local.settings.sample.json has every Settings name in Values, each with a description."""
    sample = json.loads((REPO / "local.settings.sample.json").read_text())
    names = {f.name.upper() for f in fields(Settings)}
    values = {k.upper() for k in sample["Values"]}
    assert names <= values
    assert {k.upper() for k in sample["Descriptions"]} >= names
    assert Settings.from_env(sample["Values"]).chargeback_sink == "duckdb"
