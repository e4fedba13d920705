"""Where budget alert rows go: the local store's alerts table, or Log Analytics' alerts stream.

Both return the AlertIds they accepted, so an alert counts as raised only once it is recorded:

- ``StoreAlertSink``: the DuckDB alerts table, whose primary key (AlertId) skips an alert already
  there (even when two checks race). A refused insert (the database failed) accepts nothing.
- ``WriterAlertSink``: a Logs Ingestion writer on LOGS_ALERTS_STREAM_NAME. Log Analytics has no key,
  so the budget-check job asks ``alerts_raised.kql`` first and sends only new AlertIds; alerts in a
  failed chunk are not accepted, and the next check sends them again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from chargeback.core.pipeline import Row
from chargeback.core.schema import ALERTS_TABLE
from chargeback.edges.sinks import UsageWriter, WriteResult

log = logging.getLogger("chargeback.edges.alertsinks")


class KeyedTables(Protocol):
    """A store that inserts rows into a named keyed table (``DuckDBStore``)."""

    def insert(self, table: str, rows: Sequence[Row]) -> WriteResult:
        """Insert rows, skipping keys the table holds; a refused batch comes back in ``failed``."""
        ...


class StoreAlertSink:
    """The local DuckDB store's alerts table (primary key AlertId)."""

    def __init__(self, store: KeyedTables) -> None:
        self.store = store

    def write_alerts(self, rows: Sequence[Row]) -> set[str]:
        """Insert; rows whose AlertId exists already are skipped by the key; a refused batch accepts none."""
        result = self.store.insert(ALERTS_TABLE, rows)
        if result.failed:
            log.error("alerts table refused %d alert(s): %s", len(result.failed), result.failed[0].detail)
        # written_keys is None when the store refused the whole batch: nothing was written.
        return {str(key) for key in result.written_keys or ()}


class WriterAlertSink:
    """A usage-writer-shaped sink (a ``LogAnalyticsWriter`` on the alerts stream)."""

    def __init__(self, writer: UsageWriter) -> None:
        self.writer = writer

    def write_alerts(self, rows: Sequence[Row]) -> set[str]:
        """Upload; alerts in failed chunks are not counted as raised (the next check retries them)."""
        result = self.writer.write(rows)
        failed = {str(item.row.get("AlertId")) for item in result.failed}
        if failed:
            log.error(
                "could not write %d alert(s) to Log Analytics: %s", len(failed), result.failed[0].detail
            )
        return {str(row["AlertId"]) for row in rows} - failed
