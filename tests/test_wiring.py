"""The wiring: the one place settings become edges; each setting picks the edge it names."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chargeback import wiring
from chargeback.edges.alertsinks import StoreAlertSink, WriterAlertSink
from chargeback.edges.deadletter import LocalDeadLetterStore
from chargeback.edges.exportstore import BlobExportStore, FolderExportStore
from chargeback.edges.kqlrun import LocalKqlRunner, LogAnalyticsKqlRunner
from chargeback.settings import Settings

AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)


@pytest.fixture
def local(tmp_path: Path) -> Any:
    """Settings of the embedded default in a temporary folder; the cached store is released after."""
    wiring.build_writer.cache_clear()
    yield Settings.from_env(
        {
            "CHARGEBACK_DUCKDB_PATH": str(tmp_path / "c.duckdb"),
            "EXPORTS_PATH": str(tmp_path / "exports"),
            "DEADLETTER_PATH": str(tmp_path / "dl"),
        }
    )
    wiring.build_writer.cache_clear()


def test_the_embedded_default_queries_and_alerts_on_the_local_store(local: Settings):
    """No workspace: KQL runs on the DuckDB store, alerts go to its table, exports to EXPORTS_PATH."""
    runner = wiring.build_runner(local)
    assert isinstance(runner, LocalKqlRunner)
    assert runner.connection is wiring.build_writer(local).connection  # type: ignore[attr-defined]
    assert isinstance(wiring.build_alert_sink(local), StoreAlertSink)
    store = wiring.build_export_store(local)
    assert isinstance(store, FolderExportStore)
    assert store.path == Path(local.exports_path)
    source = wiring.build_replay_source(local)
    assert isinstance(source, LocalDeadLetterStore)
    assert source.root == Path(local.deadletter_path)


def test_azure_settings_pick_the_azure_edges(log_analytics: Any):
    """A workspace, the loganalytics sink and an exports container pick Log Analytics and Blob."""
    settings = Settings.from_env(
        {
            "CHARGEBACK_SINK": "loganalytics",
            "LOGS_INGESTION_ENDPOINT": log_analytics.endpoint,
            "LOGS_DCR_IMMUTABLE_ID": "dcr-local",
            "LOG_ANALYTICS_WORKSPACE_ID": "ws-local",
            "LOG_ANALYTICS_QUERY_ENDPOINT": log_analytics.endpoint,
            "STORAGE_CONNECTION_STRING": AZURITE,
            "EXPORTS_CONTAINER": "exports",
        }
    )
    runner = wiring.build_runner(settings)
    assert isinstance(runner, LogAnalyticsKqlRunner)
    assert runner.options == {"enforce_https": False}  # a localhost stand-in
    sink = wiring.build_alert_sink(settings)
    assert isinstance(sink, WriterAlertSink)
    assert sink.writer.stream_name == "Custom-AOAIChargebackAlerts_CL"  # type: ignore[attr-defined]
    store = wiring.build_export_store(settings)
    assert isinstance(store, BlobExportStore)
    assert store.container.container_name == "exports"


def test_the_webhook_notifier_exists_only_when_a_url_is_set():
    """ALERT_WEBHOOK_URL unset: no notifier; set: a poster bound to that URL."""
    assert wiring.build_alert_notifier(Settings.from_env({})) is None
    notifier = wiring.build_alert_notifier(
        Settings.from_env({"ALERT_WEBHOOK_URL": "https://hooks.example.com/x"})
    )
    assert notifier is not None
    assert notifier.args == ("https://hooks.example.com/x",)  # type: ignore[attr-defined]


def test_config_files_and_weights_come_from_the_settings(config_files: Any, tmp_path: Path):
    """PTU deployments are read from DEPLOYMENTS_PATH; PTU_OUTPUT_WEIGHT is a Decimal."""
    _, deployments = config_files
    ptu = tmp_path / "ptu.csv"
    ptu.write_text(
        "deployment,model,deployment_type,ptu_monthly_cost,currency\nptu-1,gpt-4o,ptu,1000,USD\n",
        encoding="utf-8",
    )
    settings = Settings.from_env({"DEPLOYMENTS_PATH": str(ptu), "PTU_OUTPUT_WEIGHT": "3.5"})
    assert [d.deployment for d in wiring.load_ptu_deployments(settings)] == ["ptu-1"]
    assert wiring.output_weight(settings) == Decimal("3.5")
    assert wiring.load_ptu_deployments(Settings.from_env({"DEPLOYMENTS_PATH": str(deployments)})) == ()
