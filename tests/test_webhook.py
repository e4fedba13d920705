"""The alert webhook on real local HTTP servers: JSON {"text"} POSTs, no redirects, one deadline, no SSRF."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer
from typing import Any

import pytest

from chargeback.edges.webhook import (
    WEBHOOK_MAX_TEXT,
    _refused_address,
    post_json,
    post_webhook,
    resolve,
    webhook_payload,
)
from chargeback.errors import ConfigError

ROWS = [
    {"AlertKind": "actual", "Message": "Team A has spent 60.00 USD"},
    {"AlertKind": "forecast", "Message": "Team B is on course for 120.00 USD"},
]


class _Hook(BaseHTTPRequestHandler):
    status = 200
    received: list[dict[str, Any]] = []  # noqa: RUF012  (shared with the test on purpose)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"type": self.headers["Content-Type"], "json": json.loads(body)})
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def hook() -> Iterator[str]:
    """A real local HTTP server standing in for a Slack/Teams incoming webhook."""
    _Hook.received, _Hook.status = [], 200
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def test_payload_is_one_text_line_per_alert():
    """The payload is {"text": ...}: a heading and one line per alert, kind first."""
    text = webhook_payload(ROWS)["text"]
    assert text.splitlines() == [
        "Azure OpenAI chargeback: 2 new alert(s)",
        "- [actual] Team A has spent 60.00 USD",
        "- [forecast] Team B is on course for 120.00 USD",
    ]


def test_a_2xx_answer_is_true_and_the_body_is_json(hook: str):
    """The POST carries the payload as UTF-8 JSON and a 2xx answer reports success."""
    assert post_webhook(hook, ROWS) is True
    assert _Hook.received == [{"type": "application/json; charset=utf-8", "json": webhook_payload(ROWS)}]


def test_a_refusal_is_false_not_an_exception(hook: str):
    """A non-2xx answer is logged and reported as False."""
    _Hook.status = 500
    assert post_webhook(hook, ROWS) is False


def test_no_listener_is_false_not_an_exception():
    """Nothing listening on the port: False, the check goes on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert post_webhook(f"http://127.0.0.1:{port}/hook", ROWS, timeout=1) is False


@contextmanager
def local_server(answer: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[tuple[str, list[bytes]]]:
    """A real HTTP server on 127.0.0.1 that answers every POST with ``answer``; yields its URL and bodies."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
            answer(self)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", bodies
    finally:
        server.shutdown()
        server.server_close()


def ok(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("Content-Length", "2")
    handler.end_headers()
    handler.wfile.write(b"ok")


def test_a_post_to_a_local_server_delivers_the_json():
    """A 2xx answer is ok and the server got the payload as JSON."""
    with local_server(ok) as (url, bodies):
        outcome = post_json(url, {"text": "hello"})
    assert outcome.ok
    assert outcome.status == 200
    assert [json.loads(body) for body in bodies] == [{"text": "hello"}]


def test_a_redirect_is_not_followed():
    """A 302 to another server (here a second local one) is a failure; the target is never called."""
    with local_server(ok) as (target_url, target_bodies):

        def redirect(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(302)
            handler.send_header("Location", target_url)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        with local_server(redirect) as (url, bodies):
            outcome = post_json(url, {"text": "x"})
    assert not outcome.ok
    assert outcome.status == 302
    assert "redirect" in outcome.detail
    assert len(bodies) == 1
    assert target_bodies == []


def test_a_redirect_to_the_metadata_address_is_not_followed():
    """A 307 to 169.254.169.254 (the cloud metadata service) is reported, not followed."""

    def redirect(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(307)
        handler.send_header("Location", "http://169.254.169.254/metadata/identity/oauth2/token")
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    with local_server(redirect) as (url, _):
        outcome = post_json(url, {"text": "x"})
    assert (outcome.ok, outcome.status) == (False, 307)


def test_a_server_that_trickles_its_answer_is_cut_at_the_total_deadline():
    """A byte every 0.2 s keeps a socket timeout happy forever; the total deadline still ends the call."""
    done = threading.Event()

    def trickle(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", "1000")
        handler.end_headers()
        for _ in range(100):  # bounded: at most 20 s, and it stops once the test has its answer
            if done.is_set():
                return
            try:
                handler.wfile.write(b"x")
                handler.wfile.flush()
            except OSError:
                return
            time.sleep(0.2)

    with local_server(trickle) as (url, _):
        outcome = post_json(url, {"text": "x"}, deadline=1.0)
        done.set()
    assert not outcome.ok
    assert "deadline" in outcome.detail


def test_a_server_that_never_answers_is_cut_at_the_deadline():
    """Accepting the connection and saying nothing ends as a deadline failure, not a hang."""

    done = threading.Event()

    def silent(handler: BaseHTTPRequestHandler) -> None:
        done.wait(10)  # bounded; released as soon as the test has its answer

    with local_server(silent) as (url, _):
        outcome = post_json(url, {"text": "x"}, deadline=0.5)
        done.set()
    assert not outcome.ok
    assert "deadline" in outcome.detail


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.1/hook",
        "https://172.16.5.4/hook",
        "https://192.168.1.10/hook",
        "https://169.254.169.254/metadata",
        "https://[fe80::1]/hook",
        "https://[fd00::1]/hook",
        "https://[::ffff:10.0.0.1]/hook",
        "https://0.0.0.0/hook",
        "https://100.64.0.1/hook",
        "http://example.com/hook",
        "ftp://example.com/hook",
        "https://user:pw@example.com/hook",
    ],
)
def test_private_link_local_and_plain_http_destinations_are_refused(url: str):
    """Private, link-local, shared, unspecified and non-https destinations fail before any connection."""
    with pytest.raises(ConfigError):
        resolve(url)
    outcome = post_json(url, {"text": "x"})
    assert not outcome.ok


def test_loopback_is_refused_behind_a_name_that_is_not_local():
    """127.0.0.1 is a destination only when the URL names it: behind a public name it is DNS rebinding."""
    assert _refused_address(ipaddress.ip_address("127.0.0.1"), loopback_named=True) is None
    assert _refused_address(ipaddress.ip_address("127.0.0.1"), loopback_named=False) is not None
    assert _refused_address(ipaddress.ip_address("20.50.2.1"), loopback_named=False) is None


def test_webhook_text_is_inert_and_capped() -> None:
    """A hostile subscription name cannot mention @channel, link, fake a line or flood the channel."""
    hostile = "<!channel> [pay here](http://evil) \nFAKE: all budgets fine " + "x" * 5000
    rows = [{"AlertKind": "actual", "Message": f"{hostile} has spent 10 USD"} for _ in range(50)]
    text = webhook_payload(rows)["text"]
    assert "<!channel>" not in text
    assert "](http" not in text
    assert not any(line.startswith("FAKE") for line in text.split("\n"))
    assert len(text) <= WEBHOOK_MAX_TEXT
