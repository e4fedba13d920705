"""The timer functions, called directly: exports land in Azurite, alerts in the store, once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.functions.timer import TimerRequest

from chargeback.core.schema import ALERTS_TABLE
from chargeback.edges.store import DuckDBStore
from chargeback.jobs.alerts import budget_check_months
from chargeback.jobs.exports import due_month
from chargeback.jobs.rollup import month_of, month_window, previous_month
from tests import monthdata

pytestmark = pytest.mark.azurite


@pytest.fixture
def due_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A store with usage in the month the monthly timer is due for and this month, and the settings."""

    config = monthdata.write_config(tmp_path / "config")
    start, _ = month_window(due_month(datetime.now(UTC), 48))
    path = tmp_path / "store.duckdb"
    this_month, _ = month_window(month_of(datetime.now(UTC)))
    with DuckDBStore(path) as store:
        monthdata.ingest(store, config, monthdata.month_events(start), tmp_path / "dl")
        current = monthdata.month_events(this_month, prefix="cur")
        if month_window(previous_month(month_of(this_month)))[0] != start:  # early in a month
            current += monthdata.month_events(
                month_window(previous_month(month_of(this_month)))[0], prefix="prev"
            )
        monthdata.ingest(store, config, current, tmp_path / "dl")
    for name, value in {
        "CHARGEBACK_DUCKDB_PATH": str(path),
        "RATE_CARD_PATH": str(config["rate_card"]),
        "DEPLOYMENTS_PATH": str(config["deployments"]),
        "BUDGETS_PATH": str(config["budgets"]),
        "ROLLUP_GRACE_HOURS": "48",
        "EXPORTS_PATH": str(tmp_path / "exports"),
    }.items():
        monkeypatch.setenv(name, value)
    return path


def test_monthly_timer_publishes_the_due_month_to_azurite_once(
    due_store: Path, azurite: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The monthly timer writes both CSVs, the manifest and the HTML report to the container, then nothing."""
    from azure.storage.blob import BlobServiceClient

    import function_app

    container = f"exports{datetime.now(UTC):%H%M%S%f}"
    monkeypatch.setenv("STORAGE_CONNECTION_STRING", azurite.connection_string)
    monkeypatch.setenv("EXPORTS_CONTAINER", container)
    timer = function_app.monthly_rollup.build().get_user_function()
    timer(TimerRequest(past_due=False))
    client = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        container
    )
    month = due_month(datetime.now(UTC), 48)
    names = sorted(blob.name for blob in client.list_blobs())
    assert names == [
        f"chargeback-{month}.focus.csv",
        f"chargeback-{month}.manifest.json",
        f"chargeback-{month}.report.html",
        f"chargeback-{month}.summary.csv",
    ]
    report = client.get_blob_client(f"chargeback-{month}.report.html")
    assert report.get_blob_properties().content_settings.content_type == "text/html; charset=utf-8"
    assert b"Content-Security-Policy" in report.download_blob().readall()
    summary = client.download_blob(f"chargeback-{month}.summary.csv").readall().decode()
    assert summary.startswith("SubscriptionId,SubscriptionName,CostCenter,Owner,Requests,")
    etags = {blob.name: blob.etag for blob in client.list_blobs()}
    timer(TimerRequest(past_due=True))
    assert {blob.name: blob.etag for blob in client.list_blobs()} == etags


def test_budget_timer_raises_alerts_once(due_store: Path) -> None:
    """The daily budget timer writes the month's alerts to the alerts table, and nothing on a rerun."""
    import duckdb

    import function_app
    from chargeback.settings import Settings
    from chargeback.wiring import build_writer

    timer = function_app.daily_budget_check.build().get_user_function()
    timer(TimerRequest(past_due=False))
    timer(TimerRequest(past_due=False))
    store = build_writer(Settings.from_env())
    assert isinstance(store, DuckDBStore)
    store.close()  # the cached store: release the file before reading it
    build_writer.cache_clear()
    with duckdb.connect(str(due_store), read_only=True) as connection:
        ids = [row[0] for row in connection.execute(f'SELECT "AlertId" FROM "{ALERTS_TABLE}"').fetchall()]
    now = datetime.now(UTC)
    # This month, and last month while its grace lasts (the first days of a month check both).
    checked = (*budget_check_months(now, 48), due_month(now, 48))
    assert ids
    assert len(ids) == len(set(ids))
    assert all(i.startswith(tuple(f"{month}/" for month in checked)) for i in ids)
