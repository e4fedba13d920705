"""The Blob dead-letter store: one JSONL blob per put in DEADLETTER_CONTAINER, and replay markers.

    {container}/YYYY/MM/DD/deadletter-<digest>.jsonl           one put, one blob (DeadLetter.to_json lines)
    {container}/replayed/<digest>.txt                          ids already replayed (ledger_name)

Blob names come from ``deadletter.batch_name`` (a digest of every id, under the delivery's day),
the same as the local folder's, so a repeated put of the same records overwrites the same blob
instead of doubling them, and a single Put Blob is atomic: a reader never sees half a batch. The
container is created on first use. In Azure the client signs with the Function's managed identity
(built by ``chargeback.wiring``: STORAGE_BLOB_ENDPOINT, Storage Blob Data Contributor); Azurite is
reached with STORAGE_CONNECTION_STRING.

Errors go through the one SDK-error table (``edges.azure_errors``): ``SinkUnavailable`` (no
answer, timeouts, 408/429/5xx: worth retrying) or ``SinkError`` (refused: auth, bad request);
``ingest_batch`` then raises so the trigger's retry policy holds the Event Hub checkpoint.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterator, Sequence
from typing import TYPE_CHECKING

from chargeback.edges.azure_errors import sink_error
from chargeback.edges.deadletter import REPLAYED_PREFIX, batch_name, ledger_name
from chargeback.edges.sinks import DeadLetter

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

log = logging.getLogger("chargeback.edges.blob")

_RECORD_BLOB = re.compile(r"^\d{4}/\d{2}/\d{2}/deadletter-[^/]+\.jsonl$")


class BlobDeadLetterStore:
    """DeadLetterStore on a Blob container (``azure-storage-blob``), with ``records()`` for replay."""

    def __init__(self, container: ContainerClient, *, timeout: int = 30) -> None:
        self.container = container
        self.timeout = timeout

    @property
    def name(self) -> str:
        """The container's name."""
        return str(self.container.container_name)

    def _ensure_container(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            self.container.create_container(timeout=self.timeout)
            log.info("dead-letter container %s created", self.name)
        except ResourceExistsError:
            pass

    def _upload(self, blob: str, data: bytes, content_type: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError
        from azure.storage.blob import ContentSettings

        settings = ContentSettings(content_type=content_type)
        try:
            self.container.upload_blob(
                blob, data, overwrite=True, content_settings=settings, timeout=self.timeout
            )
        except ResourceNotFoundError:
            self._ensure_container()
            self.container.upload_blob(
                blob, data, overwrite=True, content_settings=settings, timeout=self.timeout
            )

    def put(self, records: Sequence[DeadLetter]) -> None:
        """Write the records as one blob; raise SinkError/SinkUnavailable if the container refuses."""
        if not records:
            return
        blob = batch_name(records)
        data = "".join(record.to_json() + "\n" for record in records).encode("utf-8")
        try:
            self._upload(blob, data, "application/x-ndjson")
        except Exception as exc:
            raise sink_error(
                exc, f"dead-letter container {self.name} refused {len(records)} records"
            ) from exc

    def blob_names(self) -> list[str]:
        """Every dead-letter blob, oldest first (names start with the date)."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            names = [blob.name for blob in self.container.list_blobs(timeout=self.timeout)]
        except ResourceNotFoundError:
            return []
        except Exception as exc:
            raise sink_error(exc, f"cannot list dead-letter container {self.name}") from exc
        return sorted(name for name in names if _RECORD_BLOB.match(name))

    def records(self) -> Iterator[DeadLetter]:
        """Every dead-lettered record, oldest blob first (a record put twice appears twice)."""
        for name in self.blob_names():
            try:
                text = self.container.download_blob(name, timeout=self.timeout).readall()
            except Exception as exc:
                raise sink_error(exc, f"cannot read dead-letter blob {name}") from exc
            for line in text.decode("utf-8").splitlines():
                if line.strip():
                    yield DeadLetter.from_json(line)

    def replayed_ids(self) -> set[str]:
        """Ids of records already replayed (from the ledger blobs under ``replayed/``)."""
        from azure.core.exceptions import ResourceNotFoundError

        ids: set[str] = set()
        try:
            for blob in self.container.list_blobs(name_starts_with=REPLAYED_PREFIX, timeout=self.timeout):
                text = self.container.download_blob(blob.name, timeout=self.timeout).readall()
                ids.update(line for line in text.decode("ascii").split() if line)
        except ResourceNotFoundError:
            return set()
        except Exception as exc:
            raise sink_error(exc, f"cannot read replay ledger in {self.name}") from exc
        return ids

    def mark_replayed(self, ids: Collection[str]) -> None:
        """Record that these ids were replayed (one ledger blob), so a second replay skips them."""
        if not ids:
            return
        data = "".join(f"{record_id}\n" for record_id in sorted(ids)).encode("ascii")
        try:
            self._upload(ledger_name(ids), data, "text/plain")
        except Exception as exc:
            raise sink_error(exc, f"cannot write replay ledger in {self.name}") from exc
