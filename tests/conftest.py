"""Shared fixtures: valid sample events, a small rate card and deployments map, fresh stores."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

RATE_CARD = """\
# version: test-card
model,deployment_type,effective_from,input_per_1m,cached_input_per_1m,output_per_1m,currency
gpt-4o,global,2024-01-01,5.00,2.50,15.00,USD
gpt-4o,global,2026-10-15,2.50,1.25,10.00,USD
gpt-4o,datazone,2024-01-01,2.75,1.375,11.00,USD
gpt-4o-mini,global,2024-01-01,0.15,,0.60,USD
gpt-4o-mini,global-batch,2024-01-01,0.075,,0.30,USD
o4-mini,global,2024-01-01,1.10,0.275,4.40,USD
text-embedding-3-small,global,2024-01-01,0.022,,,USD
"""

DEPLOYMENTS = """\
deployment,model,deployment_type
chat,gpt-4o,global
chat-eu,gpt-4o,datazone
mini,gpt-4o-mini,global
mini-batch,gpt-4o-mini,global-batch
reason,o4-mini,global
embed,text-embedding-3-small,global
"""


def make_event(**overrides: Any) -> dict[str, Any]:
    """A valid v1 event (non-streamed chat on deployment ``chat``), with fields overridden or removed."""
    event: dict[str, Any] = {
        "schemaVersion": "1",
        "requestId": str(uuid.uuid4()),
        "timestamp": "2026-10-20T10:15:30.1234567Z",
        "subscriptionId": "team-a",
        "subscriptionName": "Team A",
        "deployment": "chat",
        "model": "gpt-4o-2024-11-20",
        "statusCode": 200,
        "stream": False,
        "usage": {
            "prompt_tokens": 1000,
            "completion_tokens": 200,
            "total_tokens": 1200,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
    for key, value in overrides.items():
        if value is ...:
            event.pop(key, None)
        else:
            event[key] = value
    return event


def to_body(event: dict[str, Any]) -> bytes:
    """An Event Hub message body for an event."""
    return json.dumps(event).encode("utf-8")


@pytest.fixture
def event_factory() -> Callable[..., dict[str, Any]]:
    """Builds valid events; pass field=... to drop a field."""
    return make_event


@pytest.fixture
def config_files(tmp_path: Path) -> tuple[Path, Path]:
    """A small rate card (with a gpt-4o price change on 2026-10-15) and deployments map on disk."""
    card = tmp_path / "rate_card.csv"
    card.write_text(RATE_CARD, encoding="utf-8")
    deployments = tmp_path / "deployments.csv"
    deployments.write_text(DEPLOYMENTS, encoding="utf-8")
    return card, deployments


@pytest.fixture
def pricer(config_files: tuple[Path, Path]) -> Any:
    """A Pricer over the small test rate card."""
    from chargeback.core.pricing import Pricer

    return Pricer.from_files(*config_files)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Azurite's published development account: public, documented, accepted only by the emulator.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
REPO = Path(__file__).resolve().parent.parent


def need_tool(path: Path, what: str) -> None:
    """Skip when a local stand-in is missing on a developer machine; in CI it must be there."""
    import os

    if path.exists():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing at {path}; .ci/run (scripts/test) must install it")
    pytest.skip(f"{what} is not installed (run scripts/test)")


class Azurite:
    """A running Azurite blob emulator on a free loopback port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.process: Any = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
            f"BlobEndpoint={self.endpoint};"
        )

    def start(self) -> None:
        import socket
        import subprocess
        import time

        binary = REPO / "node_modules" / ".bin" / "azurite-blob"
        self.process = subprocess.Popen(
            [
                str(binary),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                "--location",
                str(self.workdir),
                "--skipApiVersionCheck",
                "--silent",
                "--loose",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(300):  # up to about 30 s of 0.1 s waits
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("Azurite did not start within 30 s")

    def stop(self) -> None:
        import subprocess

        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:  # a loaded machine: do not let a slow exit fail a test
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real Azurite blob emulator for the session (from node_modules, installed by scripts/test)."""
    need_tool(REPO / "node_modules" / ".bin" / "azurite-blob", "Azurite")
    server = Azurite(tmp_path_factory.mktemp("azurite"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def log_analytics(tmp_path: Path) -> Any:
    """A local Log Analytics stand-in (Logs Ingestion + query APIs) on a fresh DuckDB file."""
    from chargeback_dev.localserver import LocalLogAnalytics

    server = LocalLogAnalytics(tmp_path / "loganalytics.duckdb").start()
    yield server
    server.stop()


def la_writer(server: Any, stream: str = "Custom-AOAIChargeback_CL", **options: Any) -> Any:
    """A LogAnalyticsWriter on the real LogsIngestionClient, pointed at a local server; fast retries."""
    from azure.monitor.ingestion import LogsIngestionClient

    from chargeback.edges.azure_clients import LocalStandInCredential
    from chargeback.edges.loganalytics import LogAnalyticsWriter

    client = LogsIngestionClient(server.endpoint, LocalStandInCredential())
    options = {"backoff": 0.05, "max_backoff": 0.2, "timeout": 2.0, **options}
    return LogAnalyticsWriter(client, "dcr-local", stream, **options)


@pytest.fixture
def october_store(tmp_path: Path) -> Any:
    """A DuckDB store with tests.monthdata's October 2026 usage, and its config files (``.config``)."""
    from datetime import UTC, datetime

    from chargeback.edges.store import DuckDBStore
    from tests import monthdata

    config = monthdata.write_config(tmp_path / "config")
    store = DuckDBStore(tmp_path / "store.duckdb")
    events = monthdata.month_events(datetime(2026, 10, 1, tzinfo=UTC))
    monthdata.ingest(store, config, events, tmp_path / "dl")
    store.config = config  # type: ignore[attr-defined]
    yield store
    store.close()
