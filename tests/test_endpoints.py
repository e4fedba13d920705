"""Endpoint rules: plain http and no credential only for local stand-ins, https everywhere else."""

from __future__ import annotations

import pytest

from chargeback.edges.endpoints import check_endpoint, is_local_endpoint
from chargeback.errors import ConfigError


def test_plain_http_is_allowed_only_for_localhost_stand_ins():
    """http://127.0.0.1 and localhost are accepted (Azurite, local Log Analytics), https elsewhere."""
    assert check_endpoint("X", "http://127.0.0.1:8089/") == "http://127.0.0.1:8089"
    assert check_endpoint("X", "http://localhost:10000") == "http://localhost:10000"
    assert (
        check_endpoint("X", "https://dce.ingest.monitor.azure.com") == "https://dce.ingest.monitor.azure.com"
    )


def test_only_loopback_hosts_are_local():
    """localhost, 127.0.0.1 and ::1 are stand-ins; a public host, even one named localhost.*, is not."""
    assert is_local_endpoint("http://127.0.0.1:10000/devstoreaccount1")
    assert is_local_endpoint("http://LOCALHOST:8089")
    assert is_local_endpoint("http://[::1]:8089")
    assert not is_local_endpoint("https://localhost.example.com")
    assert not is_local_endpoint("https://dce.ingest.monitor.azure.com")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://dce.ingest.monitor.azure.com", "must use https"),
        ("ftp://127.0.0.1", "not an http"),
        ("127.0.0.1:8089", "not an http"),
    ],
)
def test_everything_else_is_a_config_error_naming_the_setting(url: str, message: str):
    """Plain http to a real host, another scheme or no scheme: ConfigError with the setting's name."""
    with pytest.raises(ConfigError, match=f"LOGS_INGESTION_ENDPOINT=.*{message}"):
        check_endpoint("LOGS_INGESTION_ENDPOINT", url)
