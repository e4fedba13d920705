"""The alert webhook: one JSON {"text": ...} POST; a refusal or no answer is False, never an exception."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from chargeback.edges.webhook import post_webhook, webhook_payload

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
