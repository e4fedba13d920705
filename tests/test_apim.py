"""The APIM management client against the local stand-in: real azure-core pipeline, real HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chargeback.edges.apim import ApimManagement, check_resource_id
from chargeback.edges.azure_clients import LocalStandInCredential
from chargeback.errors import ConfigError, EnforcementError
from chargeback_dev.apimserver import LocalApim


@pytest.fixture
def apim() -> Iterator[LocalApim]:
    """A running stand-in with two subscriptions."""
    with LocalApim() as server:
        server.add_subscription("team-a", "Team A")
        server.add_subscription("team-b", "Team B")
        yield server


def client(server: LocalApim, **options: object) -> ApimManagement:
    """The real client, signed with the local stand-in credential, quick retries."""
    return ApimManagement(
        server.endpoint,
        server.service_id,
        LocalStandInCredential(),
        retry_backoff_factor=0.01,
        **options,  # type: ignore[arg-type]
    )


def test_suspend_and_reactivate_a_subscription(apim: LocalApim) -> None:
    """PATCH properties.state suspends the subscription and reactivates it; GET reads it back."""
    with client(apim) as api:
        assert api.subscription_state("team-a") == "active"
        assert api.set_subscription_state("team-a", "suspended", "budget spent") == "suspended"
        assert apim.subscription_state("team-a") == "suspended"
        assert api.subscription_state("team-a") == "suspended"
        api.set_subscription_state("team-a", "active")
    assert apim.subscription_state("team-a") == "active"
    assert apim.subscription_state("team-b") == "active"
    patches = [r for r in apim.state.requests if r.method == "PATCH"]
    assert patches[0].body == {"properties": {"state": "suspended", "stateComment": "budget spent"}}


def test_named_value_is_created_then_replaced(apim: LocalApim) -> None:
    """PUT creates the named value, a second PUT replaces it, listValue reads it; absent is None."""
    with client(apim) as api:
        assert api.named_value("aoai-chargeback-throttled") is None
        api.put_named_value("aoai-chargeback-throttled", "e30=")
        api.put_named_value("aoai-chargeback-throttled", "eyJhIjpbXX0=")
        assert api.named_value("aoai-chargeback-throttled") == "eyJhIjpbXX0="
    assert [r.status for r in apim.writes()] == [201, 200]


def test_transient_failures_are_retried(apim: LocalApim) -> None:
    """Two 503s in a row are retried by the pipeline and the change still lands."""
    apim.fail_next(2, 503)
    with client(apim) as api:
        api.set_subscription_state("team-b", "suspended")
    assert apim.subscription_state("team-b") == "suspended"


def test_a_lasting_failure_is_an_enforcement_error_with_the_arm_code(apim: LocalApim) -> None:
    """An unknown subscription and an outage beyond the retries raise EnforcementError, not HTTP errors."""
    with client(apim) as api:
        with pytest.raises(EnforcementError, match="HTTP 404 ResourceNotFound"):
            api.set_subscription_state("nobody", "suspended")
        apim.fail_next(10, 503)
        with pytest.raises(EnforcementError, match="HTTP 503"):
            api.subscription_state("team-a")


def test_the_stand_in_requires_a_token_an_api_version_and_valid_values(apim: LocalApim) -> None:
    """Without a credential the call is 401; a blank named value is ARM's ValidationError."""
    anonymous = ApimManagement(apim.endpoint, apim.service_id, None, retry_total=0)
    with anonymous, pytest.raises(EnforcementError, match="401 AuthenticationFailed"):
        anonymous.subscription_state("team-a")
    with client(apim) as api, pytest.raises(EnforcementError, match="400 ValidationError"):
        api.put_named_value("aoai-chargeback-throttled", "   ")


def test_resource_id_must_name_an_apim_instance() -> None:
    """A storage account id or a bare name is a configuration error naming the expected shape."""
    good = "/subscriptions/x/resourceGroups/rg/providers/Microsoft.ApiManagement/service/apim"
    assert check_resource_id(good + "/") == good
    for bad in ("apim", "/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/s"):
        with pytest.raises(ConfigError, match="APIM_RESOURCE_ID"):
            check_resource_id(bad)


def test_local_gateway_keeps_states_and_named_values_in_a_file(tmp_path: Path) -> None:
    """The demo's stand-in: states and named values survive a new instance; blank values are refused."""
    from chargeback.edges.apim import LocalGateway

    gateway = LocalGateway(tmp_path / "apim.json")
    assert gateway.subscription_state("team-a") == "active"
    assert gateway.named_value("aoai-chargeback-throttled") is None
    gateway.set_subscription_state("team-a", "suspended")
    gateway.put_named_value("aoai-chargeback-throttled", "e30=")
    again = LocalGateway(tmp_path / "apim.json")
    assert again.subscription_state("team-a") == "suspended"
    assert again.named_value("aoai-chargeback-throttled") == "e30="
    with pytest.raises(EnforcementError, match="1 to 4096"):
        again.put_named_value("aoai-chargeback-throttled", " ")
