"""Configuration an admin owns: the rate card, deployments map and budgets read at run time from a
Blob container (CONFIG_CONTAINER), so prices and budgets change without a redeploy.

``BlobConfigSource.fetch`` downloads ``rate_card.csv``, ``deployments.csv`` and ``budgets.csv`` and
writes each to a local cache folder under a content-addressed name (``<sha256[:16]>-rate_card.csv``):
the same content is the same path (the Pricer cache and the rate card's ``NAME+hash`` version follow
the content), a changed upload is a new path, and a half-written file is never read (temporary file,
then rename). A file missing from the container is a ConfigError naming it; an unreachable
account is a SinkError/SinkUnavailable from the SDK-error table. ``versions`` are the files'
SHA-256 prefixes, for the manifest and the logs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chargeback.edges.azure_errors import classify, describe
from chargeback.errors import ConfigError

CONFIG_FILES = ("rate_card.csv", "deployments.csv", "budgets.csv")


@dataclass(frozen=True, slots=True)
class FetchedConfig:
    """Local copies of the container's config files and the content hash of each."""

    paths: dict[str, Path]
    versions: dict[str, str]


class BlobConfigSource:
    """The CONFIG_CONTAINER container, copied into ``cache_dir`` by content hash."""

    def __init__(self, container: Any, cache_dir: Path | str) -> None:
        self.container = container
        self.cache_dir = Path(cache_dir)

    def _download(self, name: str) -> bytes:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            data: bytes = self.container.download_blob(name).readall()
        except ResourceNotFoundError:
            raise ConfigError(
                f"{name} is not in the config container {self.container.container_name!r}: upload it "
                "(infra/README.md, 'Your prices, deployments and budgets')"
            ) from None
        except Exception as exc:
            kind = classify(exc)
            if kind is None:
                raise
            raise kind(f"config container {self.container.container_name!r}: {describe(exc)}") from exc
        return data

    def fetch(self) -> FetchedConfig:
        """Download every config file; return the local content-addressed copies and their hashes."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        paths: dict[str, Path] = {}
        versions: dict[str, str] = {}
        for name in CONFIG_FILES:
            data = self._download(name)
            digest = hashlib.sha256(data).hexdigest()[:16]
            target = self.cache_dir / f"{digest}-{name}"
            if not target.exists():
                temporary = self.cache_dir / f".{digest}-{name}.{os.getpid()}.partial"
                temporary.write_bytes(data)
                temporary.replace(target)
            paths[name] = target
            versions[name] = digest
        return FetchedConfig(paths, versions)
