"""The one place settings become objects: writers, stores, runners, sinks, clients and config.

The Function App, the command line and the demo all build their edges here, so they cannot drift;
the jobs (ingest, replay, monthly statement, budget check) take what is built here as arguments
and never read settings themselves. Built objects are cached per process (a warm Function instance
reuses its DuckDB connection and its parsed rate card) and keyed by the settings and the config
files' modification times, so an edited rate card is picked up without a restart.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from chargeback.core.pipeline import Message, Row, Source
from chargeback.core.pricing import Deployment, Pricer
from chargeback.edges.endpoints import is_local_endpoint
from chargeback.edges.kqlrun import KqlRunner
from chargeback.edges.sinks import AlertSink, DeadLetterStore, RevisionWriter, UsageWriter
from chargeback.errors import ConfigError
from chargeback.jobs.ingest import IngestSummary, ingest_batch
from chargeback.settings import Settings

if TYPE_CHECKING:
    from azure.eventhub import EventHubProducerClient
    from azure.storage.blob import BlobServiceClient

    from chargeback.edges.blob import BlobDeadLetterStore
    from chargeback.edges.exportstore import ExportStore
    from chargeback.edges.loganalytics import LogAnalyticsWriter
    from chargeback.jobs.budgets import Budget, BudgetCheck
    from chargeback.jobs.exports import Publication
    from chargeback.jobs.gateway_usage import GatewayUsageResult
    from chargeback.jobs.reconcile import ReconcileRun
    from chargeback.jobs.replay import ReplaySource
    from chargeback.jobs.report import ReportRun

log = logging.getLogger("chargeback.wiring")


class EventHubEventLike(Protocol):
    """What the pipeline reads of ``azure.functions.EventHubEvent``."""

    def get_body(self) -> bytes: ...

    @property
    def partition_key(self) -> str | None: ...

    @property
    def sequence_number(self) -> int | None: ...

    @property
    def offset(self) -> str | None: ...

    @property
    def enqueued_time(self) -> datetime | None: ...


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


@lru_cache(maxsize=4)
def _pricer(rate_card: Path, deployments: Path, _rate_mtime: float, _map_mtime: float) -> Pricer:
    return Pricer.from_files(rate_card, deployments)


def build_pricer(settings: Settings) -> Pricer:
    """The rate card and deployments map of the settings, reloaded when either file changes."""
    rate_card, deployments = settings.rate_card, settings.deployments
    return _pricer(rate_card, deployments, _mtime(rate_card), _mtime(deployments))


@lru_cache(maxsize=4)
def build_writer(settings: Settings) -> UsageWriter:
    """The usage writer chosen by CHARGEBACK_SINK."""
    if settings.chargeback_sink == "duckdb":
        from chargeback.edges.store import DuckDBStore

        return DuckDBStore(settings.chargeback_duckdb_path)
    if settings.chargeback_sink == "loganalytics":
        return build_log_analytics_writer(settings, settings.logs_stream_name)
    raise ConfigError(f"CHARGEBACK_SINK={settings.chargeback_sink} is not available in this build")


def build_log_analytics_writer(settings: Settings, stream_name: str, **options: Any) -> LogAnalyticsWriter:
    """A Logs Ingestion writer on LOGS_INGESTION_ENDPOINT / LOGS_DCR_IMMUTABLE_ID for one stream."""
    from chargeback.edges.azure_clients import logs_ingestion_client
    from chargeback.edges.loganalytics import LogAnalyticsWriter

    if not settings.logs_dcr_immutable_id:
        raise ConfigError("LOGS_DCR_IMMUTABLE_ID is not set")
    endpoint = settings.logs_ingestion_endpoint
    return LogAnalyticsWriter(
        logs_ingestion_client(endpoint, settings.azure_client_id),
        settings.logs_dcr_immutable_id,
        stream_name,
        enforce_https=not is_local_endpoint(endpoint),
        **options,
    )


def build_blob_service(settings: Settings, **client_options: Any) -> BlobServiceClient:
    """The Blob service of STORAGE_BLOB_ENDPOINT (identity) or STORAGE_CONNECTION_STRING (Azurite)."""
    from chargeback.edges.azure_clients import blob_service

    return blob_service(
        settings.storage_blob_endpoint,
        settings.storage_connection_string,
        settings.azure_client_id,
        **client_options,
    )


def build_blob_deadletter(settings: Settings, **client_options: Any) -> BlobDeadLetterStore:
    """The dead-letter store on DEADLETTER_CONTAINER.

    Retries are bounded (3 retries, a few seconds apart) so that an unreachable account fails a
    batch in seconds and the trigger's own retry policy takes over.
    """
    from azure.storage.blob import ExponentialRetry

    from chargeback.edges.blob import BlobDeadLetterStore

    if not settings.deadletter_container:
        raise ConfigError("DEADLETTER_CONTAINER is not set")
    options: dict[str, Any] = {
        "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=3),
        "connection_timeout": 10,
        "read_timeout": 30,
    }
    options.update(client_options)
    service = build_blob_service(settings, **options)
    return BlobDeadLetterStore(service.get_container_client(settings.deadletter_container))


@lru_cache(maxsize=4)
def build_deadletter(settings: Settings) -> DeadLetterStore:
    """The dead-letter store: a Blob container when one is configured, else the local folder.

    DEADLETTER_REDACT_BODIES=true wraps it so that no request or response body is kept.
    """
    from chargeback.edges.deadletter import LocalDeadLetterStore, RedactingDeadLetterStore

    store: DeadLetterStore
    if settings.deadletter_container:
        if not settings.uses_blob:
            raise ConfigError(
                "DEADLETTER_CONTAINER needs STORAGE_BLOB_ENDPOINT (or STORAGE_CONNECTION_STRING for Azurite)"
            )
        store = build_blob_deadletter(settings)
    else:
        store = LocalDeadLetterStore(settings.deadletter_path)
    return RedactingDeadLetterStore(store) if settings.redact_bodies else store


def build_replay_source(settings: Settings) -> ReplaySource:
    """The dead-letters to replay: DEADLETTER_CONTAINER when set, else the DEADLETTER_PATH folder."""
    if settings.deadletter_container:
        return build_blob_deadletter(settings)
    from chargeback.edges.deadletter import LocalDeadLetterStore

    return LocalDeadLetterStore(settings.deadletter_path)


def build_event_hub_producer(settings: Settings) -> EventHubProducerClient:
    """Producer on EVENTHUB__fullyQualifiedNamespace / EVENTHUB_NAME with the app's identity."""
    from azure.eventhub import EventHubProducerClient

    from chargeback.edges.azure_clients import credential

    namespace = settings.eventhub__fullyqualifiednamespace
    if not namespace or not settings.eventhub_name:
        raise ConfigError("replay to Event Hub needs EVENTHUB__fullyQualifiedNamespace and EVENTHUB_NAME")
    return EventHubProducerClient(
        fully_qualified_namespace=namespace,
        eventhub_name=settings.eventhub_name,
        credential=credential(settings.azure_client_id),
    )


def build_runner(settings: Settings) -> KqlRunner:
    """Log Analytics when a workspace is configured, else duckdb-kql on the local store."""
    from chargeback.edges.kqlrun import LocalKqlRunner, LogAnalyticsKqlRunner

    if settings.log_analytics_workspace_id:
        from chargeback.edges.azure_clients import logs_query_client

        endpoint = settings.log_analytics_query_endpoint
        return LogAnalyticsKqlRunner(
            logs_query_client(endpoint, settings.azure_client_id),
            settings.log_analytics_workspace_id,
            enforce_https=not (endpoint and is_local_endpoint(endpoint)),
        )
    from chargeback.edges.store import DuckDBStore

    store = build_writer(settings)
    if not isinstance(store, DuckDBStore):
        raise ConfigError("no LOG_ANALYTICS_WORKSPACE_ID and no local DuckDB store to query")
    return LocalKqlRunner(store.connection)


def build_export_store(settings: Settings) -> ExportStore:
    """The Blob container when EXPORTS_CONTAINER and storage are set, else the EXPORTS_PATH folder."""
    from chargeback.edges.exportstore import BlobExportStore, FolderExportStore

    if settings.exports_container and settings.uses_blob:
        return BlobExportStore(build_blob_service(settings).get_container_client(settings.exports_container))
    return FolderExportStore(settings.exports_path)


def build_alert_sink(settings: Settings) -> AlertSink:
    """Log Analytics (alerts stream) when CHARGEBACK_SINK=loganalytics, else the local store."""
    from chargeback.edges.alertsinks import StoreAlertSink, WriterAlertSink

    if settings.chargeback_sink == "loganalytics":
        return WriterAlertSink(build_log_analytics_writer(settings, settings.logs_alerts_stream_name))
    from chargeback.edges.store import DuckDBStore

    store = build_writer(settings)
    if not isinstance(store, DuckDBStore):
        raise ConfigError(f"CHARGEBACK_SINK={settings.chargeback_sink} has no alerts table")
    return StoreAlertSink(store)


def build_alert_notifier(settings: Settings) -> Callable[[Sequence[Row]], bool] | None:
    """The ALERT_WEBHOOK_URL poster, or None when no webhook is configured."""
    if not settings.alert_webhook_url:
        return None
    from chargeback.edges.webhook import post_webhook

    return functools.partial(post_webhook, settings.alert_webhook_url)


def load_budgets(settings: Settings) -> dict[str, Budget]:
    """BUDGETS_PATH (or the shipped example), validated."""
    from chargeback.jobs.budgets import load_budgets as load

    return load(settings.budgets)


def load_ptu_deployments(settings: Settings) -> tuple[Deployment, ...]:
    """The provisioned (PTU) deployments of DEPLOYMENTS_PATH, with their monthly costs."""
    from chargeback.core.pricing import DeploymentMap

    return DeploymentMap.load(settings.deployments).ptu_deployments()


def output_weight(settings: Settings) -> Decimal:
    """PTU_OUTPUT_WEIGHT: how many input tokens one output token counts as (validated by Settings)."""
    return Decimal(settings.ptu_output_weight)


def _iso(value: datetime | None) -> str:
    if value is None:
        return ""
    return (
        value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value.tzinfo else value.isoformat() + "Z"
    )


def messages_from_event_hub(events: Iterable[EventHubEventLike]) -> list[Message]:
    """Event Hub trigger events to pipeline messages, keeping where each came from."""
    messages = []
    for event in events:
        position = f"seq={event.sequence_number}" if event.sequence_number is not None else ""
        if event.offset is not None:
            position = f"{position};offset={event.offset}".lstrip(";")
        source = Source(
            kind="eventhub",
            name=event.partition_key or "",
            position=position,
            enqueued_time=_iso(event.enqueued_time),
        )
        messages.append(Message(event.get_body() or b"", source))
    return messages


def handle_event_hub_batch(
    events: Iterable[EventHubEventLike], environ: Mapping[str, str] | None = None
) -> IngestSummary:
    """The Event Hub trigger's whole job: settings → edges → ingest_batch, with a log line of counts.

    When the configuration is refused (the shipped example files in Azure, a config file missing
    from CONFIG_CONTAINER), nothing is priced: the batch is dead-lettered as ``config-invalid``
    (replayable once the files are there) and the reason is logged once per batch as an error.
    """
    env = os.environ if environ is None else environ
    base = Settings.from_env(env)
    messages = messages_from_event_hub(events)
    try:
        settings = resolve_config(base, env)
    except ConfigError as refused:
        return _refuse_batch(messages, base, refused)
    summary = ingest_batch(
        messages,
        pricer=build_pricer(settings),
        writer=build_writer(settings),
        deadletter=build_deadletter(settings),
    )
    log.info(
        "chargeback batch: received=%d written=%d duplicates=%d dead_lettered=%d reasons=%s",
        summary.received,
        summary.written,
        summary.duplicates,
        summary.dead_lettered,
        dict(summary.reasons),
    )
    return summary


def describe(settings: Settings) -> dict[str, Any]:
    """Where data goes under these settings (printed by the CLI)."""
    return {
        "sink": settings.chargeback_sink,
        "store": settings.chargeback_duckdb_path if settings.chargeback_sink == "duckdb" else "Log Analytics",
        "deadletter": settings.deadletter_container or settings.deadletter_path,
        "rate_card": str(settings.rate_card),
        "deployments": str(settings.deployments),
    }


def monthly_statement(
    settings: Settings,
    month: str,
    now: datetime | None = None,
    *,
    allow_empty: bool = False,
    new_version: bool = True,
) -> Publication:
    """``chargeback rollup --month``: the month's statement, published as a new version if changed.

    ``new_version=False`` (reconcile) publishes a first version but refuses to supersede one.
    """
    from chargeback.jobs.exports import run_statement

    return run_statement(
        build_runner(settings),
        build_export_store(settings),
        month,
        budgets=load_budgets(settings),
        ptu_deployments=load_ptu_deployments(settings),
        output_weight=output_weight(settings),
        now=now or datetime.now(UTC),
        allow_empty=allow_empty,
        new_version=new_version,
    )


def monthly_report(settings: Settings, month: str, now: datetime | None = None) -> ReportRun:
    """``chargeback report --month``: the statement (published if changed) and its HTML report beside it."""
    from chargeback.jobs.report import run_report

    return run_report(
        build_runner(settings),
        build_export_store(settings),
        month,
        budgets=load_budgets(settings),
        ptu_deployments=load_ptu_deployments(settings),
        output_weight=output_weight(settings),
        now=now or datetime.now(UTC),
    )


def monthly_reconciliation(
    settings: Settings, month: str, files: Sequence[Path | str], now: datetime | None = None
) -> ReconcileRun:
    """``chargeback reconcile``: publish (or reuse) the month's statement, then compare it with the export."""
    from chargeback.edges.costexport import check_cost_export
    from chargeback.jobs.reconcile import reconcile_files
    from chargeback.jobs.statement import file_name

    files = check_cost_export(files)  # a missing or wrong export stops here, before a statement is published
    publication = monthly_statement(settings, month, now, new_version=False)
    store = build_export_store(settings)
    focus = store.read(file_name(month, publication.version, "focus.csv")) or b""
    return reconcile_files(
        month,
        files,
        focus_csv=focus,
        statement=file_name(month, publication.version, "manifest.json"),
        store=store,
        version=publication.version,
    )


def budget_check(settings: Settings, month: str, now: datetime) -> tuple[BudgetCheck, list[Row]]:
    """``chargeback budgets check``: one month's budgets as of ``now``; returns the check and new alerts."""
    from chargeback.jobs.alerts import run_budget_check

    return run_budget_check(
        build_runner(settings),
        build_alert_sink(settings),
        month,
        now,
        budgets=load_budgets(settings),
        ptu_deployments=load_ptu_deployments(settings),
        output_weight=output_weight(settings),
        notify=build_alert_notifier(settings),
    )


def handle_monthly_rollup(
    now: datetime | None = None, environ: Mapping[str, str] | None = None
) -> Publication | None:
    """Monthly statement timer (runs daily, idempotent): publish the due month if not yet published.

    The job is ``jobs.exports.close_due_month``; this builds its edges from the settings. Returns
    the Publication, or None when the due month was already published.
    """
    from chargeback.jobs.exports import close_due_month

    settings = function_settings(environ)
    now = now or datetime.now(UTC)
    publication = close_due_month(
        build_runner(settings),
        build_export_store(settings),
        now=now,
        grace_hours=settings.rollup_grace_hours,
        budgets=load_budgets(settings),
        ptu_deployments=load_ptu_deployments(settings),
        output_weight=output_weight(settings),
    )
    if publication is not None:  # the month's HTML report beside its new CSVs
        monthly_report(settings, publication.month, now)
    return publication


def handle_budget_check(now: datetime | None = None, environ: Mapping[str, str] | None = None) -> list[Row]:
    """Daily budget timer: check this month (and last month until its grace ends); returns new alerts."""
    from chargeback.jobs.alerts import budget_check_months

    settings = function_settings(environ)
    now = now or datetime.now(UTC)
    months = budget_check_months(now, settings.rollup_grace_hours)
    raised: list[Row] = []
    for month in months:
        check, rows = budget_check(settings, month, now)
        raised.extend(rows)
        if month == months[-1] and settings.enforcement_on:
            enforce_budgets(settings, check, now)
    log.info("budget check %s: %d new alert(s)", ", ".join(months), len(raised))
    return raised


def gateway_usage(settings: Settings, now: datetime) -> GatewayUsageResult | None:
    """Late usage of streams: supersede estimates whose APIM LLM log has arrived (None: no log here).

    In Azure the workspace holds APIM's log tables beside ours. Locally they exist only where
    something wrote them (the demo; the local Log Analytics stand-in): without them there is
    nothing to read, and the step says so instead of failing.
    """
    from datetime import timedelta

    from chargeback.edges.kqlrun import LocalKqlRunner
    from chargeback.jobs.gateway_usage import run_gateway_usage

    runner = build_runner(settings)
    if isinstance(runner, LocalKqlRunner):
        from chargeback.edges.gatewaylog import has_gateway_tables

        if not has_gateway_tables(runner.connection):
            log.info("gateway usage: no ApiManagementGatewayLlmLog in the local store; nothing to read")
            return None
    writer = build_writer(settings)
    if not isinstance(writer, RevisionWriter):
        raise ConfigError(f"CHARGEBACK_SINK={settings.chargeback_sink} cannot write usage revisions")
    return run_gateway_usage(
        runner,
        writer,
        build_pricer(settings),
        now=now,
        wait=timedelta(minutes=settings.gateway_log_wait_minutes),
    )


def handle_gateway_usage(
    now: datetime | None = None, environ: Mapping[str, str] | None = None
) -> GatewayUsageResult | None:
    """Gateway-usage timer (every few minutes): streams get APIM's counts, as superseding rows."""
    settings = function_settings(environ)
    return gateway_usage(settings, now or datetime.now(UTC))


def stream_estimates(settings: Settings, month: str) -> list[dict[str, Any]]:
    """The month's streams still on their estimate (APIM's LLM log never came): calls and cost."""
    from chargeback.jobs.rollup import month_window

    start, end = month_window(month)
    return build_runner(settings).records(
        "stream_estimates", {"MonthStart": start, "MonthEnd": end}, window=(start, end)
    )


def enforcement_options(settings: Settings) -> Any:
    """The enforcement job's options from the settings (exempt list, estimated spend, named value)."""
    from chargeback.core.enforcement import parse_exempt
    from chargeback.jobs.enforce import EnforcementOptions

    return EnforcementOptions(
        exempt=parse_exempt(settings.budget_enforcement_exempt),
        count_estimated=settings.budget_enforcement_count_estimated.lower() == "true",
        throttle_named_value=settings.apim_throttle_named_value,
    )


def build_gateway(settings: Settings) -> Any:
    """The APIM management client, signed by the managed identity (a fixed token on localhost)."""
    from chargeback.edges.apim import ApimManagement
    from chargeback.edges.azure_clients import credential

    endpoint = settings.apim_management_endpoint
    return ApimManagement(endpoint, settings.apim_resource_id, credential(settings.azure_client_id, endpoint))


def enforce_budgets(settings: Settings, check: Any, now: datetime) -> Any:
    """Apply and lift budget actions for a budget check of the current month.

    Raises EnforcementError after recording when a step failed (so the timer run shows as failed
    and the next run retries it); returns the EnforcementRun otherwise.
    """
    from chargeback.errors import EnforcementError
    from chargeback.jobs.enforce import run_enforcement

    gateway = build_gateway(settings)
    try:
        run = run_enforcement(
            check,
            build_runner(settings),
            build_alert_sink(settings),
            gateway,
            enforcement_options(settings),
            now=now,
            notify=build_alert_notifier(settings),
        )
    finally:
        gateway.close()
    log.info(
        "budget enforcement %s: %d step(s) planned, %d done, %d failed",
        check.month,
        len(run.steps),
        len(run.done),
        len(run.failed),
    )
    if run.failed:
        raise EnforcementError(f"{len(run.failed)} budget action(s) failed: " + "; ".join(run.lines()[-3:]))
    return run


def budget_dry_run(settings: Settings, month: str, now: datetime) -> tuple[BudgetCheck, list[Any], Any]:
    """``budgets check --dry-run``: the check, the alerts it would raise and the enforcement plan
    (None for a month other than the current one); nothing is written and no APIM API is called."""
    from chargeback.jobs.alerts import already_raised
    from chargeback.jobs.budgets import check_budgets
    from chargeback.jobs.enforce import plan_enforcement
    from chargeback.jobs.rollup import month_of

    runner = build_runner(settings)
    check = check_budgets(
        runner,
        load_budgets(settings),
        load_ptu_deployments(settings),
        month,
        now,
        output_weight=output_weight(settings),
    )
    known = already_raised(runner, month, now) if check.candidates else set()
    alerts = [candidate for candidate in check.candidates if candidate.alert_id not in known]
    if month != month_of(now):
        return check, alerts, None
    return check, alerts, plan_enforcement(check, runner, enforcement_options(settings), now=now)


def handle_budget_enforcement(now: datetime | None = None, environ: Mapping[str, str] | None = None) -> Any:
    """Hourly timer: the current month's budget check and its actions (nothing when enforcement is off)."""
    from chargeback.jobs.budgets import check_budgets
    from chargeback.jobs.rollup import month_of

    settings = function_settings(environ)
    if not settings.enforcement_on:
        return None
    now = now or datetime.now(UTC)
    check = check_budgets(
        build_runner(settings),
        load_budgets(settings),
        load_ptu_deployments(settings),
        month_of(now),
        now,
        output_weight=output_weight(settings),
    )
    return enforce_budgets(settings, check, now)


# ------------------------------------------------------------------------------------------------
# Configuration an admin owns (CONFIG_CONTAINER)

CONFIG_REFRESH_SECONDS = 60.0
_config_cache: dict[tuple[str, str, str], tuple[float, Any]] = {}


def running_in_azure(environ: Mapping[str, str]) -> bool:
    """True inside an Azure Function App (the platform sets WEBSITE_INSTANCE_ID on every instance)."""
    return bool(environ.get("WEBSITE_INSTANCE_ID"))


def resolve_config(
    settings: Settings, environ: Mapping[str, str], *, clock: Callable[[], float] = time.monotonic
) -> Settings:
    """Settings whose rate card, deployments map and budgets are the admin's own files.

    With CONFIG_CONTAINER, the three files are read from that Blob container (re-read at most every
    CONFIG_REFRESH_SECONDS) and the paths point at their content-addressed local copies. Without
    it, in Azure, a path left unset would mean the shipped example files: refused with a
    ConfigError saying what to upload where. Locally the shipped examples stay the demo's default.
    """
    if settings.config_container:
        if not settings.uses_blob:
            raise ConfigError("CONFIG_CONTAINER needs STORAGE_BLOB_ENDPOINT (or STORAGE_CONNECTION_STRING)")
        from chargeback.edges.configstore import BlobConfigSource

        key = (settings.storage_blob_endpoint, settings.storage_connection_string, settings.config_container)
        now = clock()
        cached = _config_cache.get(key)
        if cached is None or now - cached[0] >= CONFIG_REFRESH_SECONDS:
            container = build_blob_service(settings).get_container_client(settings.config_container)
            cache_dir = Path(tempfile.gettempdir()) / "chargeback-config"
            fetched = BlobConfigSource(container, cache_dir).fetch()
            log.info("config from container %s: %s", settings.config_container, fetched.versions)
            cached = _config_cache[key] = (now, fetched)
        paths = cached[1].paths
        return dataclasses.replace(
            settings,
            rate_card_path=str(paths["rate_card.csv"]),
            deployments_path=str(paths["deployments.csv"]),
            budgets_path=str(paths["budgets.csv"]),
        )
    if running_in_azure(environ):
        unset = [
            name
            for name, value in (
                ("RATE_CARD_PATH", settings.rate_card_path),
                ("DEPLOYMENTS_PATH", settings.deployments_path),
                ("BUDGETS_PATH", settings.budgets_path),
            )
            if not value
        ]
        if unset:
            raise ConfigError(
                "refusing to price with the shipped example rate card, deployments map and budgets in "
                f"Azure ({', '.join(unset)} unset): set CONFIG_CONTAINER and upload rate_card.csv, "
                "deployments.csv and budgets.csv to it (infra/README.md)"
            )
    return settings


def function_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The Function's settings: the environment, with the admin's config files (``resolve_config``)."""
    env = os.environ if environ is None else environ
    return resolve_config(Settings.from_env(env), env)


_config_alerted: set[str] = set()  # the days whose config-refused alert this process has recorded


def alert_config_refused(settings: Settings, refused: ConfigError, now: datetime) -> None:
    """Raise the day's ``config-refused`` alert (alerts table + webhook) once, beside the log line.

    This process remembers a recorded day, so the alerts table is asked once, not per batch. An
    alert that cannot be written is logged and tried again by the next refused batch; it never
    costs the batch its dead letters.
    """
    from chargeback.jobs.alerts import config_alert_id, raise_config_alert

    alert = config_alert_id(now)
    if alert in _config_alerted:
        return
    try:
        recorded = raise_config_alert(
            refused.detail,
            build_runner(settings),
            build_alert_sink(settings),
            now=now,
            notify=build_alert_notifier(settings),
        )
    except Exception as exc:  # the batch is dead-lettered already; the alert is best effort
        log.error("could not raise the config-refused alert: %s", exc)
        return
    if recorded:
        _config_alerted.add(alert)


def _refuse_batch(messages: Sequence[Message], settings: Settings, refused: ConfigError) -> IngestSummary:
    """Dead-letter a whole batch as config-invalid (nothing priced with a configuration refused)."""
    from chargeback.edges.sinks import DeadLetter
    from chargeback.errors import Reason

    log.error("chargeback batch not priced: %s", refused.detail)
    stamp = datetime.now(UTC)
    records = [DeadLetter(message, Reason.CONFIG_INVALID, refused.detail, stamp) for message in messages]
    if records:
        build_deadletter(settings).put(records)
    alert_config_refused(settings, refused, stamp)
    summary = IngestSummary(received=len(records), dead_lettered=len(records))
    summary.reasons[Reason.CONFIG_INVALID.value] = len(records)
    return summary
