"""Where monthly statements go: a local folder (EXPORTS_PATH) or a Blob container (EXPORTS_CONTAINER).

Both never overwrite a published file: local files are created exclusively (``x`` mode) through a
temporary file, so a reader never sees half of one; blobs are uploaded with ``overwrite=False``.
``chargeback.wiring.build_export_store`` picks one from the settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from chargeback.edges.azure_errors import classify, sink_error


class ExportStore(Protocol):
    """A folder-like place for export files that never overwrites one."""

    def names(self, prefix: str) -> set[str]:
        """File names starting with ``prefix``."""
        ...

    def read(self, name: str) -> bytes | None:
        """A file's bytes, or None when it does not exist."""
        ...

    def create(self, name: str, data: bytes) -> None:
        """Write a new file; FileExistsError when the name is taken."""
        ...

    def location(self, name: str) -> str:
        """Where a file is, for people (a path or a blob URL)."""
        ...


class FolderExportStore:
    """A local folder (EXPORTS_PATH)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    def names(self, prefix: str) -> set[str]:
        """File names in the folder starting with ``prefix``."""
        if not self.path.is_dir():
            return set()
        return {entry.name for entry in self.path.iterdir() if entry.name.startswith(prefix)}

    def read(self, name: str) -> bytes | None:
        """A file's bytes, or None."""
        try:
            return (self.path / name).read_bytes()
        except FileNotFoundError:
            return None

    def create(self, name: str, data: bytes) -> None:
        """Create the file exclusively (``x`` mode), through a temporary file, so it is never half-written."""
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / name
        if target.exists():
            raise FileExistsError(str(target))
        temporary = self.path / f".{name}.partial"
        temporary.write_bytes(data)
        try:
            with target.open("xb") as handle:  # refuses to replace a published file
                handle.write(temporary.read_bytes())
        finally:
            temporary.unlink(missing_ok=True)

    def location(self, name: str) -> str:
        """The file's path."""
        return str(self.path / name)


class BlobExportStore:
    """A Blob container (EXPORTS_CONTAINER); uploads use ``overwrite=False``.

    Azure errors go through the one SDK-error table (``edges.azure_errors``): a statement that
    cannot be read or written raises SinkUnavailable (retry later) or SinkError (refused).
    """

    def __init__(self, container: Any) -> None:
        self.container = container

    def _failed(self, exc: Exception, what: str) -> Exception:
        """The error to raise for ``exc``: the table's SinkError, or ``exc`` itself when it is a bug."""
        if classify(exc) is None:
            return exc
        return sink_error(exc, f"exports container {self.container.container_name}: {what}")

    def names(self, prefix: str) -> set[str]:
        """Blob names starting with ``prefix``."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return {blob.name for blob in self.container.list_blobs(name_starts_with=prefix)}
        except ResourceNotFoundError:
            return set()
        except Exception as exc:
            raise self._failed(exc, f"cannot list {prefix}*") from exc

    def read(self, name: str) -> bytes | None:
        """A blob's bytes, or None."""
        from azure.core.exceptions import ResourceNotFoundError

        try:
            data: bytes = self.container.download_blob(name).readall()
        except ResourceNotFoundError:
            return None
        except Exception as exc:
            raise self._failed(exc, f"cannot read {name}") from exc
        return data

    def create(self, name: str, data: bytes) -> None:
        """Upload a new blob; an existing one is never replaced (FileExistsError)."""
        from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
        from azure.storage.blob import ContentSettings

        content_type = "application/json" if name.endswith(".json") else "text/csv; charset=utf-8"
        settings = ContentSettings(content_type=content_type)
        try:
            try:
                self.container.upload_blob(name, data, overwrite=False, content_settings=settings)
            except ResourceNotFoundError:
                self.container.create_container()
                self.container.upload_blob(name, data, overwrite=False, content_settings=settings)
        except ResourceExistsError:
            raise FileExistsError(name) from None
        except Exception as exc:
            raise self._failed(exc, f"cannot write {name}") from exc

    def location(self, name: str) -> str:
        """The blob's URL."""
        return f"{self.container.url}/{name}"
