"""Assembly of the edges from ``Settings``: which writer, which dead-letter store, which rate card.

The Function App and the command line both build their pipeline here, so they cannot drift. Built
objects are cached per process (a warm Function instance reuses its DuckDB connection and its
parsed rate card) and keyed by the settings and the config files' modification times, so an
edited rate card is picked up without a restart.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from chargeback.core.pipeline import Message, Source
from chargeback.core.pricing import Pricer
from chargeback.edges.sinks import DeadLetterStore, UsageWriter
from chargeback.errors import ConfigError
from chargeback.jobs.ingest import IngestSummary, ingest_batch
from chargeback.settings import Settings

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
        from chargeback.edges.loganalytics import LogAnalyticsWriter

        return LogAnalyticsWriter.from_settings(settings)
    raise ConfigError(f"CHARGEBACK_SINK={settings.chargeback_sink} is not available in this build")


@lru_cache(maxsize=4)
def build_deadletter(settings: Settings) -> DeadLetterStore:
    """The dead-letter store: a Blob container when one is configured, else the local folder."""
    if settings.deadletter_container:
        if not settings.uses_blob:
            raise ConfigError(
                "DEADLETTER_CONTAINER needs STORAGE_BLOB_ENDPOINT (or STORAGE_CONNECTION_STRING for Azurite)"
            )
        from chargeback.edges.blob import BlobDeadLetterStore

        return BlobDeadLetterStore.from_settings(settings)
    from chargeback.edges.deadletter import LocalDeadLetterStore

    return LocalDeadLetterStore(settings.deadletter_path)


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
    """The Event Hub trigger's whole job: settings → edges → ingest_batch, with a log line of counts."""
    settings = Settings.from_env(os.environ if environ is None else environ)
    summary = ingest_batch(
        messages_from_event_hub(events),
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


def handle_monthly_rollup(now: datetime | None = None, environ: Mapping[str, str] | None = None) -> Any:
    """Monthly statement timer (runs daily, idempotent): publish the due month if not yet published.

    The due month is the last closed month whose ROLLUP_GRACE_HOURS have passed (late events are
    in). Once its statement exists, later runs do nothing; ``chargeback rollup --month`` re-runs a
    month on purpose (a new version only if the data changed). Returns the Publication or None.
    """
    from chargeback.jobs.exports import due_month, export_store, published_version, run_statement

    settings = Settings.from_env(os.environ if environ is None else environ)
    now = now or datetime.now(UTC)
    month = due_month(now, settings.rollup_grace_hours)
    store = export_store(settings)
    version = published_version(store, month)
    if version:
        log.info("monthly rollup: %s already published (version %d); nothing to do", month, version)
        return None
    publication = run_statement(settings, month, store=store, now=now)
    log.info("monthly rollup: %s published as version %d: %s", month, publication.version, publication.focus)
    return publication


def handle_budget_check(now: datetime | None = None, environ: Mapping[str, str] | None = None) -> list[Any]:
    """Daily budget timer: check this month (and last month until its grace ends); returns new alerts."""
    from datetime import timedelta

    from chargeback.jobs.alerts import run_budget_check
    from chargeback.jobs.rollup import month_of, month_window, previous_month

    settings = Settings.from_env(os.environ if environ is None else environ)
    now = now or datetime.now(UTC)
    months = [month_of(now)]
    last = previous_month(months[0])
    if now < month_window(last)[1] + timedelta(hours=settings.rollup_grace_hours, days=1):
        months.insert(0, last)
    raised: list[Any] = []
    for month in months:
        _, rows = run_budget_check(settings, month, now)
        raised.extend(rows)
    log.info("budget check %s: %d new alert(s)", ", ".join(months), len(raised))
    return raised
