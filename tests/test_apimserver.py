"""The local APIM management stand-in speaks ARM's wire shape: bearer token, api-version, ETags, errors."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from chargeback_dev.apimserver import LocalApim

API = "?api-version=2024-05-01"


@pytest.fixture
def apim() -> Iterator[LocalApim]:
    """A running stand-in with one active subscription."""
    with LocalApim() as server:
        server.add_subscription("team-a")
        yield server


def call(
    apim: LocalApim, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """One raw HTTP request: (status, JSON body, headers), errors included."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{apim.endpoint}{apim.service_id}{path}",
        data=data,
        method=method,
        headers={"Authorization": "Bearer local", "Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}"), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), dict(error.headers)


def test_a_subscription_is_read_with_its_etag_and_changed_only_with_it(apim: LocalApim):
    """GET gives the contract and an ETag; PATCH without If-Match is refused, with a stale one 412."""
    status, contract, headers = call(apim, "GET", "/subscriptions/team-a" + API)
    assert status == 200
    assert contract["properties"]["state"] == "active"
    change = {"properties": {"state": "suspended", "stateComment": "budget"}}
    assert call(apim, "PATCH", "/subscriptions/team-a" + API, change)[0] == 400
    assert call(apim, "PATCH", "/subscriptions/team-a" + API, change, {"If-Match": '"stale"'})[0] == 412
    status, _, _ = call(apim, "PATCH", "/subscriptions/team-a" + API, change, {"If-Match": headers["ETag"]})
    assert status == 200
    assert apim.subscription_state("team-a") == "suspended"


def test_requests_need_a_token_and_an_api_version_and_errors_are_arm_shaped(apim: LocalApim):
    """No bearer token is 401; no api-version 400; an unknown subscription 404 ResourceNotFound."""
    request = urllib.request.Request(f"{apim.endpoint}{apim.service_id}/subscriptions/team-a{API}")
    with pytest.raises(urllib.error.HTTPError) as unauthorised:
        urllib.request.urlopen(request, timeout=5)
    assert unauthorised.value.code == 401
    assert call(apim, "GET", "/subscriptions/team-a")[0] == 400
    status, body, _ = call(apim, "GET", "/subscriptions/nobody" + API)
    assert (status, body["error"]["code"]) == (404, "ResourceNotFound")


def test_named_values_are_created_then_replaced_and_failures_can_be_injected(apim: LocalApim):
    """PUT creates (201) then replaces (200) a named value; fail_next answers the next call with 503."""
    body = {"properties": {"displayName": "throttled", "value": "team-a", "secret": False}}
    assert call(apim, "PUT", "/namedValues/throttled" + API, body)[0] == 201
    assert call(apim, "PUT", "/namedValues/throttled" + API, body)[0] == 200
    assert apim.named_value("throttled") == "team-a"
    apim.fail_next(1)
    assert call(apim, "GET", "/namedValues/throttled" + API)[0] == 503
    assert call(apim, "GET", "/namedValues/throttled" + API)[0] == 200
