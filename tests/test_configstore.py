"""Config from a Blob container (CONFIG_CONTAINER): read at run time, by content hash, on Azurite."""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import duckdb
import pytest
from azure.storage.blob import BlobServiceClient

from chargeback import wiring
from chargeback.core.schema import ALERTS_TABLE, USAGE_TABLE
from chargeback.edges.configstore import CONFIG_FILES, BlobConfigSource
from chargeback.errors import ConfigError
from chargeback.settings import Settings, default_config_path


def upload_examples(service: BlobServiceClient, container: str, **changed: bytes) -> None:
    """The shipped example files (or ``changed`` contents) uploaded to ``container``."""
    client = service.get_container_client(container)
    if not client.exists():
        client.create_container()
    for name in CONFIG_FILES:
        data = changed.get(name.replace(".csv", ""), default_config_path(name).read_bytes())
        client.upload_blob(name, data, overwrite=True)


@pytest.mark.azurite
def test_config_is_read_from_the_container_by_content_hash(azurite: Any, tmp_path: Path) -> None:
    """The three files are copied under content-addressed names; a changed upload is a new file."""
    service = BlobServiceClient.from_connection_string(azurite.connection_string, api_version="2021-12-02")
    name = f"config-{uuid.uuid4().hex[:12]}"
    upload_examples(service, name)
    source = BlobConfigSource(service.get_container_client(name), tmp_path / "cache")
    first = source.fetch()
    assert sorted(first.paths) == sorted(CONFIG_FILES)
    for file, path in first.paths.items():
        assert path.read_bytes() == default_config_path(file).read_bytes()
        assert path.name == f"{first.versions[file]}-{file}"
    card = (
        default_config_path("rate_card.csv").read_bytes()
        + b"gpt-4o,global,2030-01-01,input,1M tokens,9,USD\n"
    )
    upload_examples(service, name, rate_card=card)
    second = source.fetch()
    assert second.versions["rate_card.csv"] != first.versions["rate_card.csv"]
    assert second.versions["budgets.csv"] == first.versions["budgets.csv"]
    assert second.paths["rate_card.csv"].read_bytes() == card
    assert first.paths["rate_card.csv"].exists()  # the old content stays for a run still using it


@pytest.mark.azurite
def test_a_file_missing_from_the_container_is_a_config_error_naming_it(azurite: Any, tmp_path: Path) -> None:
    """No budgets.csv in the container: ConfigError that says which file and where to upload it."""
    service = BlobServiceClient.from_connection_string(azurite.connection_string, api_version="2021-12-02")
    name = f"config-{uuid.uuid4().hex[:12]}"
    upload_examples(service, name)
    service.get_container_client(name).delete_blob("budgets.csv")
    with pytest.raises(ConfigError, match=r"budgets\.csv is not in the config container"):
        BlobConfigSource(service.get_container_client(name), tmp_path / "cache").fetch()


@pytest.mark.azurite
def test_resolve_config_points_the_settings_at_the_container_files(azurite: Any) -> None:
    """With CONFIG_CONTAINER the pricer prices with the admin's rate card, re-read after the refresh."""
    service = BlobServiceClient.from_connection_string(azurite.connection_string, api_version="2021-12-02")
    name = f"config-{uuid.uuid4().hex[:12]}"
    upload_examples(service, name)
    settings = Settings.from_env(
        {"STORAGE_CONNECTION_STRING": azurite.connection_string, "CONFIG_CONTAINER": name}
    )
    ticks = iter([0.0, 1.0, 1000.0])
    resolved = wiring.resolve_config(settings, {"WEBSITE_INSTANCE_ID": "x"}, clock=lambda: next(ticks))
    assert Path(resolved.rate_card_path).read_bytes() == default_config_path("rate_card.csv").read_bytes()
    assert wiring.resolve_config(settings, {}, clock=lambda: next(ticks)) == resolved  # cached
    card = (
        default_config_path("rate_card.csv").read_bytes()
        + b"gpt-4o,global,2030-01-01,input,1M tokens,9,USD\n"
    )
    upload_examples(service, name, rate_card=card)
    refreshed = wiring.resolve_config(settings, {}, clock=lambda: next(ticks))
    assert Path(refreshed.rate_card_path).read_bytes() == card
    assert wiring.build_pricer(refreshed).rate_card.version != wiring.build_pricer(resolved).rate_card.version


def test_in_azure_the_shipped_examples_are_refused() -> None:
    """In a Function App without CONFIG_CONTAINER or explicit paths, pricing is refused with the fix."""
    settings = Settings.from_env({})
    with pytest.raises(ConfigError, match="refusing to price with the shipped example") as caught:
        wiring.resolve_config(settings, {"WEBSITE_INSTANCE_ID": "abc"})
    assert "CONFIG_CONTAINER" in caught.value.detail
    assert wiring.resolve_config(settings, {}) == settings  # locally the examples are the demo's default
    explicit = dataclasses.replace(settings, rate_card_path="a", deployments_path="b", budgets_path="c")
    assert wiring.resolve_config(explicit, {"WEBSITE_INSTANCE_ID": "abc"}) == explicit


def test_a_refused_configuration_dead_letters_the_batch_as_config_invalid(tmp_path: Path) -> None:
    """In Azure without CONFIG_CONTAINER, the trigger prices nothing: every event is dead-lettered
    as config-invalid (replayable), none is written."""
    import azure.functions as func

    from chargeback.edges.deadletter import LocalDeadLetterStore
    from tests.conftest import make_event, to_body

    environ = {
        "WEBSITE_INSTANCE_ID": "instance-1",
        "CHARGEBACK_DUCKDB_PATH": str(tmp_path / "store.duckdb"),
        "DEADLETTER_PATH": str(tmp_path / "dl"),
    }
    events = [func.EventHubEvent(body=to_body(make_event(requestId=f"r-{n}"))) for n in range(3)]
    summary = wiring.handle_event_hub_batch(events, environ)
    assert (summary.received, summary.written, summary.dead_lettered) == (3, 0, 3)
    records = list(LocalDeadLetterStore(tmp_path / "dl").records())
    assert [r.reason.value for r in records] == ["config-invalid"] * 3
    assert "CONFIG_CONTAINER" in records[0].detail
    store = duckdb.connect(str(tmp_path / "store.duckdb"))
    try:  # nothing priced; the only row is the day's config-refused alert
        assert store.execute(f'SELECT count(*) FROM "{USAGE_TABLE}"').fetchone() == (0,)
        kinds = store.execute(f'SELECT "AlertKind" FROM "{ALERTS_TABLE}"').fetchall()
        assert kinds == [("config-refused",)]
    finally:
        store.close()


class _Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []  # noqa: RUF012  # collected by the test

    def do_POST(self) -> None:
        _Hook.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        return


def test_a_refused_configuration_alerts_once_a_day_not_once_per_batch(tmp_path: Path) -> None:
    """Three refused batches raise one config-refused alert row and one webhook POST naming the fix."""
    import azure.functions as func

    from tests.conftest import make_event, to_body

    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received.clear()
    wiring._config_alerted.clear()  # a fresh Function instance
    environ = {
        "WEBSITE_INSTANCE_ID": "instance-1",
        "CHARGEBACK_DUCKDB_PATH": str(tmp_path / "store.duckdb"),
        "DEADLETTER_PATH": str(tmp_path / "dl"),
        "ALERT_WEBHOOK_URL": f"http://127.0.0.1:{server.server_address[1]}/hook",
    }
    try:
        for batch in range(3):
            events = [func.EventHubEvent(body=to_body(make_event(requestId=f"r-{batch}")))]
            assert wiring.handle_event_hub_batch(events, environ).dead_lettered == 1
            wiring._config_alerted.clear()  # even another instance asks the alerts table first
    finally:
        server.shutdown()
        server.server_close()
    store = duckdb.connect(str(tmp_path / "store.duckdb"))
    try:
        rows = store.execute(f'SELECT "AlertKind", "Message" FROM "{ALERTS_TABLE}"').fetchall()
    finally:
        store.close()
    assert len(rows) == 1
    assert rows[0][0] == "config-refused"
    assert "CONFIG_CONTAINER" in rows[0][1]
    assert len(_Hook.received) == 1
    assert "[config-refused]" in _Hook.received[0]["text"]  # chat text escapes the message's markdown


def test_the_config_alert_fires_again_on_the_next_day(tmp_path: Path) -> None:
    """raise_config_alert records one alert per day: twice on day one is one row, day two adds one."""
    from chargeback.edges.alertsinks import StoreAlertSink
    from chargeback.edges.kqlrun import LocalKqlRunner
    from chargeback.edges.store import DuckDBStore
    from chargeback.jobs.alerts import raise_config_alert

    day1, day2 = datetime(2026, 11, 3, 8, tzinfo=UTC), datetime(2026, 11, 4, 0, 5, tzinfo=UTC)
    announced: list[str] = []
    with DuckDBStore(tmp_path / "store.duckdb") as store:
        runner, sink = LocalKqlRunner(store.connection), StoreAlertSink(store)
        for now in (day1, day1, day2):
            assert raise_config_alert(
                "example files",
                runner,
                sink,
                now=now,
                notify=lambda rows: announced.extend(r["AlertId"] for r in rows),
            )
        ids = [
            r[0]
            for r in store.connection.execute(f'SELECT "AlertId" FROM "{ALERTS_TABLE}" ORDER BY 1').fetchall()
        ]
    assert ids == ["2026-11-03/config/config-refused", "2026-11-04/config/config-refused"]
    assert announced == ids
