"""The budget alert webhook: one POST of ``{"text": "..."}`` per check that raised something.

That shape is what both Slack and Microsoft Teams incoming webhooks accept. ``post_webhook`` never
raises: a failed POST is logged and not retried, because the alert itself is already recorded in
the alerts table (and an Azure Monitor rule can alert on that table). The URL comes from
ALERT_WEBHOOK_URL, checked by ``Settings`` (https, or http on localhost only).

The text quotes subscription names, which callers choose: each alert line goes through
``core.textsafe.chat_text`` (no mention, link, markup or line break can be formed), at most
``WEBHOOK_MAX_ALERTS`` lines are listed and the whole text is capped at ``WEBHOOK_MAX_TEXT``.

The client (``post_json``) gives a hostile URL or server nothing to abuse:
- https only, except to a loopback host named as such (``localhost``, ``127.0.0.1``, ``[::1]``: the
  local stand-ins), the rule every other endpoint follows;
- the host is resolved once and every address it has is vetted: private, link-local (the
  ``169.254.169.254`` metadata service), shared, multicast, reserved and unspecified addresses
  are refused, and so is loopback unless the URL named it (a public name that resolves to
  ``127.0.0.1`` is DNS rebinding). The connection then goes to the vetted address itself (TLS still
  checks the certificate for the host name), so a second lookup cannot point it elsewhere;
- no redirects: a 3xx answer is a failure, its ``Location`` is never followed;
- a total deadline over the whole call (lookup, connect, TLS, send, answer): a watchdog closes the
  socket when it passes, so a server that trickles one byte a second cannot hold the Function.

``post_json`` never raises for the network's or the server's faults: it returns a
``WebhookOutcome`` saying what happened, which the caller logs.
"""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from chargeback.core.pipeline import Row
from chargeback.core.textsafe import chat_text
from chargeback.errors import ConfigError

log = logging.getLogger("chargeback.edges.webhook")

WEBHOOK_TIMEOUT = 10.0  # the whole call: lookup, connect, send and answer
WEBHOOK_MAX_ALERTS = 20
WEBHOOK_MAX_TEXT = 4000  # Slack shows about 4,000 characters of a message's text before cutting it

DEFAULT_DEADLINE = 10.0
MAX_ANSWER_BYTES = 64 * 1024
_LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    """How one POST ended: ``ok`` on a 2xx answer, else a one-line reason."""

    ok: bool
    detail: str
    status: int | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """A vetted webhook URL: scheme, host, port, path and the addresses it may be reached at."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


def _refused_address(address: Address, loopback_named: bool) -> str | None:
    """Why an address may not be a webhook destination, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_loopback:
        return None if loopback_named else "a loopback address behind a public name"
    for label, flag in (
        ("link-local", address.is_link_local),
        ("private", address.is_private),
        ("multicast", address.is_multicast),
        ("reserved", address.is_reserved),
        ("unspecified", address.is_unspecified),
    ):
        if flag:
            return f"a {label} address"
    if not address.is_global:
        return "not a public address"
    return None


def check_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path) of a webhook URL, or ConfigError when it is not one we would call."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"ALERT_WEBHOOK_URL is not a URL: {exc}") from None
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError("ALERT_WEBHOOK_URL must be an https URL")
    if parts.username or parts.password:
        raise ConfigError("ALERT_WEBHOOK_URL must not carry credentials before the host")
    if parts.scheme == "http" and host not in _LOOPBACK_NAMES:
        raise ConfigError("ALERT_WEBHOOK_URL must use https (plain http only to localhost)")
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return parts.scheme, host, port or (443 if parts.scheme == "https" else 80), path


def resolve(url: str, *, timeout: float = DEFAULT_DEADLINE) -> Target:
    """Check the URL and vet every address of its host; ConfigError names the first refusal."""
    scheme, host, port, path = check_url(url)
    loopback_named = host in _LOOPBACK_NAMES
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    found = [str(literal)] if literal is not None else _lookup(host, port, timeout)
    if not found:
        raise ConfigError(f"ALERT_WEBHOOK_URL host {host} has no address")
    for text in found:
        why = _refused_address(ipaddress.ip_address(text.split("%", 1)[0]), loopback_named)
        if why is not None:
            raise ConfigError(f"ALERT_WEBHOOK_URL host {host} resolves to {text}, {why}: refused")
    return Target(scheme, host, port, path, tuple(found))


def _lookup(host: str, port: int, timeout: float) -> list[str]:
    """The host's addresses; the lookup runs in a thread so that it, too, is under the deadline."""
    answer: list[str] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            answer.extend(dict.fromkeys(str(info[4][0]) for info in infos))
        except OSError as exc:
            failure.append(exc)

    worker = threading.Thread(target=run, name="webhook-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise ConfigError(f"ALERT_WEBHOOK_URL host {host}: no DNS answer in {timeout:g}s")
    if failure:
        raise ConfigError(f"ALERT_WEBHOOK_URL host {host} cannot be resolved: {failure[0]}")
    return answer


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to a vetted address, with the URL's host in the Host header."""

    def __init__(self, target: Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = target.addresses[0]

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to a vetted address; TLS verifies the certificate for the URL's host name."""

    def __init__(self, target: Target, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=context)
        self._address = target.addresses[0]
        self._tls = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)


def post_json(
    url: str,
    payload: Any,
    *,
    deadline: float = DEFAULT_DEADLINE,
    context: ssl.SSLContext | None = None,
) -> WebhookOutcome:
    """POST ``payload`` as JSON under one total deadline; never follows a redirect, never raises."""
    started = time.monotonic()
    try:
        target = resolve(url, timeout=deadline)
    except ConfigError as exc:
        return WebhookOutcome(False, exc.detail)
    body = json.dumps(payload, ensure_ascii=True).encode("ascii")
    remaining = max(0.001, deadline - (time.monotonic() - started))
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = _PinnedHTTPSConnection(target, remaining, context or ssl.create_default_context())
    else:
        connection = _PinnedHTTPConnection(target, remaining)
    expired = threading.Event()

    def watchdog() -> None:
        expired.set()
        sock = connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(remaining, watchdog)
    timer.daemon = True
    timer.start()
    response: http.client.HTTPResponse | None = None
    try:
        connection.request(
            "POST", target.path, body=body, headers={"Content-Type": "application/json; charset=utf-8"}
        )
        response = connection.getresponse()
        status = response.status
        response.read(MAX_ANSWER_BYTES)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # The socket's own timeout (set to the time left) and the watchdog end the same wait.
        if expired.is_set() or isinstance(exc, TimeoutError) or time.monotonic() - started >= deadline:
            return WebhookOutcome(False, f"no answer within the {deadline:g}s deadline")
        return WebhookOutcome(False, f"{type(exc).__name__}: {str(exc)[:200]}")
    finally:
        timer.cancel()
        if response is not None:
            response.close()
        connection.close()
    if expired.is_set():
        return WebhookOutcome(False, f"no answer within the {deadline:g}s deadline", status)
    if 300 <= status < 400:
        return WebhookOutcome(False, f"HTTP {status}: redirects are not followed", status)
    if not 200 <= status < 300:
        return WebhookOutcome(False, f"HTTP {status}", status)
    return WebhookOutcome(True, f"HTTP {status}", status)


def webhook_payload(rows: Sequence[Row]) -> dict[str, str]:
    """``{"text": ...}``: one line per alert, accepted by Slack and Teams incoming webhooks."""
    lines = [f"Azure OpenAI chargeback: {len(rows)} new alert(s)"]
    lines += [
        f"- [{chat_text(row['AlertKind'], 40)}] {chat_text(row['Message'])}"
        for row in rows[:WEBHOOK_MAX_ALERTS]
    ]
    if len(rows) > WEBHOOK_MAX_ALERTS:
        lines.append(f"- and {len(rows) - WEBHOOK_MAX_ALERTS} more in AOAIChargebackAlerts_CL")
    text = "\n".join(lines)
    if len(text) > WEBHOOK_MAX_TEXT:
        text = text[: text.rfind("\n", 0, WEBHOOK_MAX_TEXT - 40)] + "\n- more in AOAIChargebackAlerts_CL"
    return {"text": text}


def post_webhook(url: str, rows: Sequence[Row], timeout: float = WEBHOOK_TIMEOUT) -> bool:
    """POST the alerts as JSON through ``post_json``; True on a 2xx answer, False (logged) otherwise."""
    outcome = post_json(url, webhook_payload(rows), deadline=timeout)
    if not outcome.ok:
        log.error("alert webhook failed: %s", outcome.detail)
    return outcome.ok
