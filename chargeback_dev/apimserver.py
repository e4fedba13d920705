"""A local API Management management-plane stand-in: subscriptions and named values (not deployed).

Speaks the documented ARM REST shape of the two resources budget enforcement uses, so the real
client (``chargeback.edges.apim``, an azure-core pipeline) talks to it unchanged::

    {service} = /subscriptions/{azureSubscriptionId}/resourceGroups/{rg}/providers/
                Microsoft.ApiManagement/service/{serviceName}

    GET   {service}/subscriptions/{sid}?api-version=...            -> 200 SubscriptionContract (+ ETag)
    PATCH {service}/subscriptions/{sid}?api-version=...            If-Match required;
          {"properties": {"state": "active|suspended|...", "stateComment": "..."}} -> 200 contract
    GET   {service}/namedValues/{id}?api-version=...               -> 200 NamedValueContract (+ ETag)
    POST  {service}/namedValues/{id}/listValue?api-version=...     -> 200 {"value": "..."}
    PUT   {service}/namedValues/{id}?api-version=...               -> 201 created / 200 updated
          {"properties": {"displayName": id, "value": "...", "secret": false}}

Errors are ARM's ``{"error": {"code", "message"}}``: 400 ``ValidationError`` (bad state, blank or
over-4096-character value, no api-version), 401 without a bearer token (the token is not verified),
404 ``ResourceNotFound``, 412 ``PreconditionFailed`` on a stale If-Match. Tests make the next
requests fail (``fail_next``) to exercise retries. Binds to 127.0.0.1 and logs no bodies::

    python -m chargeback_dev.apimserver --port 8090 --subscription support-bot --subscription marketing
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

log = logging.getLogger("chargeback_dev.apimserver")

SUBSCRIPTION_STATES = ("active", "suspended", "submitted", "rejected", "cancelled", "expired")
NAMED_VALUE_MAX = 4096
_DISPLAY_NAME = re.compile(r"^[A-Za-z0-9-._]+$")
_SERVICE = (
    r"^(?P<service>/subscriptions/(?P<azsub>[^/]+)/resourceGroups/(?P<rg>[^/]+)"
    r"/providers/Microsoft\.ApiManagement/service/(?P<name>[^/]+))"
)
_SUBSCRIPTION = re.compile(_SERVICE + r"/subscriptions/(?P<sid>[^/]+)$", re.IGNORECASE)
_NAMED_VALUE = re.compile(_SERVICE + r"/namedValues/(?P<nv>[^/]+)(?P<list>/listValue)?$", re.IGNORECASE)


class ArmError(Exception):
    """An error answer in ARM's shape."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class ApimSubscription:
    """One APIM subscription (the keys are never modelled: enforcement never reads them)."""

    sid: str
    display_name: str
    state: str = "active"
    state_comment: str | None = None
    version: int = 1

    @property
    def etag(self) -> str:
        return f'"{self.sid}-{self.version}"'


@dataclass
class NamedValue:
    """One named value (plain, not a secret)."""

    name: str
    value: str
    secret: bool = False
    version: int = 1

    @property
    def etag(self) -> str:
        return f'"{self.name}-{self.version}"'


@dataclass
class Recorded:
    """A request the stand-in answered (method, path, status): what the tests assert on."""

    method: str
    path: str
    status: int
    body: dict[str, Any] | None = None


@dataclass
class ApimState:
    """The service's subscriptions and named values, plus the fault plan and the request log."""

    subscriptions: dict[str, ApimSubscription] = field(default_factory=dict)
    named_values: dict[str, NamedValue] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class LocalApim(ThreadingHTTPServer):
    """The stand-in server; ``with LocalApim() as apim: apim.endpoint``."""

    daemon_threads = True

    def __init__(self, port: int = 0, *, service_id: str = "") -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state = ApimState()
        self.service_id = service_id or (
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-chargeback"
            "/providers/Microsoft.ApiManagement/service/apim-chargeback"
        )
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:{port}``: the management endpoint to configure."""
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add_subscription(self, sid: str, display_name: str = "", state: str = "active") -> None:
        """Create an APIM subscription in the given state."""
        with self.state.lock:
            self.state.subscriptions[sid] = ApimSubscription(sid, display_name or sid, state)

    def subscription_state(self, sid: str) -> str:
        """The subscription's current state."""
        with self.state.lock:
            return self.state.subscriptions[sid].state

    def set_named_value(self, name: str, value: str) -> None:
        """Create or replace a named value (as the Bicep deployment does)."""
        with self.state.lock:
            self.state.named_values[name] = NamedValue(name, value)

    def named_value(self, name: str) -> str | None:
        """A named value's text, or None when it does not exist."""
        with self.state.lock:
            found = self.state.named_values.get(name)
            return found.value if found else None

    def fail_next(self, count: int, status: int = 503) -> None:
        """Answer the next ``count`` requests with ``status`` (a transient outage by default)."""
        with self.state.lock:
            self.state.failures.extend([status] * count)

    def writes(self) -> list[Recorded]:
        """The successful PATCH and PUT requests so far."""
        return [r for r in self.state.requests if r.method in ("PATCH", "PUT") and r.status < 300]

    def start(self) -> LocalApim:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(target=self.serve_forever, name="local-apim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalApim:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- resources ------------------------------------------------------------------------

    def subscription_contract(self, service: str, item: ApimSubscription) -> dict[str, Any]:
        """The SubscriptionContract of the REST reference (keys omitted, as with listSecrets)."""
        return {
            "id": f"{service}/subscriptions/{item.sid}",
            "type": "Microsoft.ApiManagement/service/subscriptions",
            "name": item.sid,
            "properties": {
                "ownerId": None,
                "scope": f"{service}/apis",
                "displayName": item.display_name,
                "state": item.state,
                "createdDate": "2026-01-05T09:00:00Z",
                "stateComment": item.state_comment,
                "allowTracing": False,
            },
        }

    def named_value_contract(self, service: str, item: NamedValue) -> dict[str, Any]:
        """The NamedValueContract of the REST reference (value shown unless secret)."""
        properties: dict[str, Any] = {"displayName": item.name, "secret": item.secret, "tags": []}
        if not item.secret:
            properties["value"] = item.value
        return {
            "id": f"{service}/namedValues/{item.name}",
            "type": "Microsoft.ApiManagement/service/namedValues",
            "name": item.name,
            "properties": properties,
        }

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Answer one request: (status, JSON body, extra headers); raises ArmError."""
        state = self.state
        if match := _SUBSCRIPTION.match(path):
            service, sid = match["service"], unquote(match["sid"])
            item = state.subscriptions.get(sid)
            if item is None:
                raise ArmError(404, "ResourceNotFound", f"Subscription not found: {sid}")
            if method == "GET":
                return 200, self.subscription_contract(service, item), {"ETag": item.etag}
            if method == "PATCH":
                self._check_if_match(headers, item.etag)
                properties = (body or {}).get("properties")
                if not isinstance(properties, dict):
                    raise ArmError(400, "ValidationError", "properties is required")
                new_state = properties.get("state", item.state)
                if new_state not in SUBSCRIPTION_STATES:
                    raise ArmError(400, "ValidationError", f"'{new_state}' is not a valid subscription state")
                item.state = new_state
                if "stateComment" in properties:
                    item.state_comment = properties["stateComment"]
                if "displayName" in properties:
                    item.display_name = str(properties["displayName"])
                item.version += 1
                return 200, self.subscription_contract(service, item), {"ETag": item.etag}
            raise ArmError(405, "MethodNotAllowed", f"{method} is not supported on a subscription")
        if match := _NAMED_VALUE.match(path):
            service, name = match["service"], unquote(match["nv"])
            found = state.named_values.get(name)
            if match["list"]:
                if method != "POST":
                    raise ArmError(405, "MethodNotAllowed", "listValue is a POST")
                if found is None:
                    raise ArmError(404, "ResourceNotFound", f"NamedValue not found: {name}")
                return 200, {"value": found.value}, {"ETag": found.etag}
            if method == "GET":
                if found is None:
                    raise ArmError(404, "ResourceNotFound", f"NamedValue not found: {name}")
                return 200, self.named_value_contract(service, found), {"ETag": found.etag}
            if method == "PUT":
                if found is not None and "if-match" in headers:
                    self._check_if_match(headers, found.etag)
                properties = (body or {}).get("properties") or {}
                display = properties.get("displayName")
                value = properties.get("value")
                if not isinstance(display, str) or not _DISPLAY_NAME.match(display) or len(display) > 256:
                    raise ArmError(400, "ValidationError", "displayName: letters, digits, '.', '-', '_' only")
                if not isinstance(value, str) or not value.strip():
                    raise ArmError(400, "ValidationError", "value must not be empty or whitespace")
                if len(value) > NAMED_VALUE_MAX:
                    raise ArmError(400, "ValidationError", f"value exceeds {NAMED_VALUE_MAX} characters")
                if found is None:
                    found = state.named_values[name] = NamedValue(name, value, bool(properties.get("secret")))
                    status = 201
                else:
                    found.value, found.version = value, found.version + 1
                    status = 200
                return status, self.named_value_contract(service, found), {"ETag": found.etag}
            raise ArmError(405, "MethodNotAllowed", f"{method} is not supported on a named value")
        raise ArmError(404, "InvalidResourceType", f"no such resource: {path}")

    @staticmethod
    def _check_if_match(headers: dict[str, str], etag: str) -> None:
        given = headers.get("if-match")
        if not given:
            raise ArmError(400, "ValidationError", "If-Match header is required for this operation")
        if given not in ("*", etag):
            raise ArmError(412, "PreconditionFailed", "the entity has changed (ETag mismatch)")


class _Handler(BaseHTTPRequestHandler):
    server: LocalApim
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("local apim: " + format, *args)

    def _dispatch(self, method: str) -> None:
        parsed = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        body: dict[str, Any] | None = None
        state = self.server.state
        try:
            with state.lock:
                if state.failures:
                    status = state.failures.pop(0)
                    raise ArmError(status, "ServiceUnavailable", "injected failure")
                if not headers.get("authorization", "").startswith("Bearer "):
                    raise ArmError(401, "AuthenticationFailed", "a bearer token is required")
                if not parse_qs(parsed.query).get("api-version"):
                    raise ArmError(
                        400, "MissingApiVersionParameter", "The api-version query parameter is required"
                    )
                if raw:
                    try:
                        loaded = json.loads(raw)
                    except json.JSONDecodeError:
                        raise ArmError(400, "InvalidRequestContent", "the body is not JSON") from None
                    body = loaded if isinstance(loaded, dict) else None
                status, answer, extra = self.server.handle(method, parsed.path, headers, body)
        except ArmError as error:
            status, answer, extra = (
                error.status,
                {"error": {"code": error.code, "message": error.message}},
                {},
            )
            if status in (429, 503):
                extra = {"Retry-After": "0"}
        with state.lock:
            state.requests.append(Recorded(method, parsed.path, status, body))
        data = json.dumps(answer).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-ms-request-id", f"local-{len(state.requests)}")
        self.send_header("Date", datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"))
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_POST(self) -> None:
        self._dispatch("POST")


def main(argv: list[str] | None = None) -> int:
    """Run the stand-in in the foreground."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--subscription", action="append", default=[], help="an APIM subscription id")
    args = parser.parse_args(argv)
    server = LocalApim(args.port)
    for sid in args.subscription:
        server.add_subscription(sid)
    print(f"local APIM management stand-in on {server.endpoint}{server.service_id}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
