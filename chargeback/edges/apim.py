"""The APIM management API: suspend or reactivate a subscription, read and write a named value.

The documented ARM REST calls (API Management ``2024-05-01``), through an azure-core pipeline
(bearer token for ``https://management.azure.com/.default`` from the Function's managed identity,
azure-core's retry policy for 408/429/5xx with ``Retry-After``)::

    GET   {service}/subscriptions/{sid}?api-version=...                 state of a subscription
    PATCH {service}/subscriptions/{sid}?api-version=...  If-Match: *     {"properties": {"state": ...}}
    POST  {service}/namedValues/{id}/listValue?api-version=...           a named value's text
    PUT   {service}/namedValues/{id}?api-version=...     If-Match: *     create or replace it

``{service}`` is the APIM instance's resource id (``APIM_RESOURCE_ID``). The role that allows these
calls is "API Management Service Contributor", assigned on that instance only (infra/app/rbac.bicep).
A call that still fails after the retries raises ``EnforcementError`` with the status and ARM's
error code, so the budget job can alert on it and try again on its next run.

The local stand-in (``chargeback_dev.apimserver``) speaks the same shape on http://127.0.0.1;
only there is plain http allowed (``enforce_https=False`` per call, as the Log Analytics edge does).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from chargeback.edges.endpoints import is_local_endpoint
from chargeback.errors import ConfigError, EnforcementError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

log = logging.getLogger("chargeback.edges.apim")

API_VERSION = "2024-05-01"
MANAGEMENT_SCOPE = "https://management.azure.com/.default"
DEFAULT_ENDPOINT = "https://management.azure.com"
ACTIVE, SUSPENDED = "active", "suspended"


def check_resource_id(resource_id: str) -> str:
    """``/subscriptions/{id}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{name}``."""
    parts = resource_id.strip().strip("/").split("/")
    if (
        len(parts) != 8
        or parts[0].lower() != "subscriptions"
        or parts[2].lower() != "resourcegroups"
        or parts[4].lower() != "providers"
        or parts[5].lower() != "microsoft.apimanagement"
        or parts[6].lower() != "service"
        or not all(parts)
    ):
        raise ConfigError(
            f"APIM_RESOURCE_ID={resource_id!r} is not an API Management resource id "
            "(/subscriptions/{id}/resourceGroups/{rg}/providers/Microsoft.ApiManagement/service/{name})"
        )
    return "/" + "/".join(parts)


class ApimManagement:
    """A client for the few APIM management calls that budget enforcement makes."""

    def __init__(
        self,
        endpoint: str,
        resource_id: str,
        credential: TokenCredential | None,
        *,
        api_version: str = API_VERSION,
        retry_total: int = 4,
        retry_backoff_factor: float = 0.8,
        timeout: float = 30.0,
        **client_options: Any,
    ) -> None:
        from azure.core import PipelineClient
        from azure.core.pipeline.policies import (
            BearerTokenCredentialPolicy,
            HeadersPolicy,
            HttpLoggingPolicy,
            RetryPolicy,
            UserAgentPolicy,
        )

        self.endpoint = endpoint.rstrip("/")
        self.resource_id = check_resource_id(resource_id)
        self.api_version = api_version
        self.timeout = timeout
        # enforce_https is consumed by the bearer policy only: pass it when that policy is there.
        local = is_local_endpoint(self.endpoint)
        self._local = local and credential is not None
        policies: list[Any] = [
            HeadersPolicy({"Accept": "application/json"}),
            UserAgentPolicy(sdk_moniker="aoai-chargeback-enforcement"),
            RetryPolicy(retry_total=retry_total, retry_backoff_factor=retry_backoff_factor),
        ]
        if credential is not None:
            policies.append(BearerTokenCredentialPolicy(credential, MANAGEMENT_SCOPE))
        policies.append(HttpLoggingPolicy())
        self._client = PipelineClient(base_url=self.endpoint, policies=policies, **client_options)

    def close(self) -> None:
        """Close the HTTP session."""
        self._client.close()

    def __enter__(self) -> ApimManagement:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, *, what: str) -> Any:
        from azure.core.exceptions import AzureError
        from azure.core.rest import HttpRequest

        headers = {"If-Match": "*"} if method in ("PATCH", "PUT") else {}
        request = HttpRequest(
            method,
            f"{self.endpoint}{self.resource_id}{path}",
            params={"api-version": self.api_version},
            headers=headers,
            json=body,
        )
        options: dict[str, Any] = {"connection_timeout": self.timeout, "read_timeout": self.timeout}
        if self._local:
            options["enforce_https"] = False
        try:
            response = self._client.send_request(request, **options)
            response.read()
        except AzureError as exc:
            raise EnforcementError(f"{what}: {type(exc).__name__}: {exc}") from None
        if response.status_code >= 300:
            raise EnforcementError(f"{what}: HTTP {response.status_code} {_arm_error(response.text())}")
        text = response.text()
        if response.status_code == 202:
            return None
        try:
            return json.loads(text) if text else None
        except json.JSONDecodeError:
            raise EnforcementError(f"{what}: the answer is not JSON") from None

    def subscription_state(self, sid: str) -> str:
        """The APIM subscription's state (active, suspended, ...)."""
        found = self._call("GET", f"/subscriptions/{quote(sid, safe='')}", what=f"read subscription {sid}")
        state = ((found or {}).get("properties") or {}).get("state")
        if not isinstance(state, str):
            raise EnforcementError(f"read subscription {sid}: the answer has no properties.state")
        return state

    def set_subscription_state(self, sid: str, state: str, comment: str = "") -> str:
        """PATCH the subscription's state; returns the state the service reports afterwards."""
        properties: dict[str, Any] = {"state": state}
        if comment:
            properties["stateComment"] = comment[:1000]
        answer = self._call(
            "PATCH",
            f"/subscriptions/{quote(sid, safe='')}",
            {"properties": properties},
            what=f"set subscription {sid} {state}",
        )
        if answer is None:  # 204/202 in some api-versions: read it back
            return self.subscription_state(sid)
        reported = (answer.get("properties") or {}).get("state")
        if reported != state:
            raise EnforcementError(f"set subscription {sid} {state}: the service reports {reported!r}")
        return str(reported)

    def named_value(self, name: str) -> str | None:
        """A named value's text (``listValue``, which also works for secrets), or None if absent."""
        from azure.core.exceptions import AzureError
        from azure.core.rest import HttpRequest

        request = HttpRequest(
            "POST",
            f"{self.endpoint}{self.resource_id}/namedValues/{quote(name, safe='')}/listValue",
            params={"api-version": self.api_version},
        )
        options: dict[str, Any] = {"connection_timeout": self.timeout, "read_timeout": self.timeout}
        if self._local:
            options["enforce_https"] = False
        try:
            response = self._client.send_request(request, **options)
            response.read()
        except AzureError as exc:
            raise EnforcementError(f"read named value {name}: {type(exc).__name__}: {exc}") from None
        if response.status_code == 404:
            return None
        if response.status_code >= 300:
            raise EnforcementError(
                f"read named value {name}: HTTP {response.status_code} {_arm_error(response.text())}"
            )
        try:
            value = json.loads(response.text()).get("value")
        except (json.JSONDecodeError, AttributeError):
            value = None
        if not isinstance(value, str):
            raise EnforcementError(f"read named value {name}: the answer has no value")
        return value

    def put_named_value(self, name: str, value: str, *, wait: float = 60.0) -> None:
        """Create or replace a plain named value; waits for an accepted (202) write to show."""
        self._call(
            "PUT",
            f"/namedValues/{quote(name, safe='')}",
            {"properties": {"displayName": name, "value": value, "secret": False}},
            what=f"write named value {name}",
        )
        deadline = time.monotonic() + wait
        while self.named_value(name) != value:
            if time.monotonic() > deadline:
                raise EnforcementError(f"write named value {name}: still not visible after {wait:.0f} s")
            time.sleep(2)


def _arm_error(text: str) -> str:
    """``code: message`` of an ARM error body (or the start of the text)."""
    try:
        error = json.loads(text).get("error") or {}
        return f"{error.get('code', '')}: {error.get('message', '')}".strip(": ")
    except (json.JSONDecodeError, AttributeError):
        return text[:200]


class LocalGateway:
    """A JSON file standing in for an APIM instance's subscriptions and named values (the demo).

    Same calls as ``ApimManagement``; as the DuckDB store stands in for Log Analytics, this lets
    ``chargeback demo`` show a throttle applied and lifted without an APIM instance.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def _load(self) -> dict[str, dict[str, str]]:
        if not self.path.exists():
            return {"subscriptions": {}, "namedValues": {}}
        loaded: dict[str, dict[str, str]] = json.loads(self.path.read_text(encoding="utf-8"))
        return loaded

    def _save(self, state: dict[str, dict[str, str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")

    def subscription_state(self, sid: str) -> str:
        """The subscription's state (active unless set)."""
        return self._load()["subscriptions"].get(sid, ACTIVE)

    def set_subscription_state(self, sid: str, state: str, comment: str = "") -> str:
        """Set the subscription's state."""
        current = self._load()
        current["subscriptions"][sid] = state
        self._save(current)
        return state

    def named_value(self, name: str) -> str | None:
        """A named value's text, or None."""
        return self._load()["namedValues"].get(name)

    def put_named_value(self, name: str, value: str) -> None:
        """Create or replace a named value (1 to 4,096 characters, as APIM requires)."""
        if not value.strip() or len(value) > 4096:
            raise EnforcementError(f"write named value {name}: APIM takes 1 to 4096 characters")
        current = self._load()
        current["namedValues"][name] = value
        self._save(current)

    def close(self) -> None:
        """Nothing to close."""
