"""Export stores: a local folder and a real Azurite container, both refusing to overwrite a published file."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from chargeback.edges.exportstore import BlobExportStore, ExportStore, FolderExportStore


def check_store(store: ExportStore) -> None:
    """The ExportStore contract: create, list by prefix, read back, never overwrite."""
    assert store.names("chargeback-2026-10.") == set()
    assert store.read("chargeback-2026-10.focus.csv") is None
    store.create("chargeback-2026-10.focus.csv", b"a,b\n1,2\n")
    store.create("chargeback-2026-10.manifest.json", b"{}\n")
    store.create("other.csv", b"x\n")
    assert store.names("chargeback-2026-10.") == {
        "chargeback-2026-10.focus.csv",
        "chargeback-2026-10.manifest.json",
    }
    assert store.read("chargeback-2026-10.focus.csv") == b"a,b\n1,2\n"
    with pytest.raises(FileExistsError):
        store.create("chargeback-2026-10.focus.csv", b"changed\n")
    assert store.read("chargeback-2026-10.focus.csv") == b"a,b\n1,2\n"
    assert store.location("chargeback-2026-10.focus.csv").endswith("chargeback-2026-10.focus.csv")


def test_folder_store_keeps_the_contract_and_leaves_no_partial_file(tmp_path: Path):
    """The local folder is created on first write, never overwrites, and keeps no temporary file."""
    store = FolderExportStore(tmp_path / "exports")
    check_store(store)
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == [
        "chargeback-2026-10.focus.csv",
        "chargeback-2026-10.manifest.json",
        "other.csv",
    ]


@pytest.mark.azurite
def test_blob_store_keeps_the_contract_on_azurite(azurite: Any):
    """The container is created on first write; upload with overwrite=False refuses a second version."""
    service = BlobServiceClient.from_connection_string(azurite.connection_string, api_version="2021-12-02")
    store = BlobExportStore(service.get_container_client(f"exports-{uuid.uuid4().hex[:12]}"))
    check_store(store)
    blob = store.container.get_blob_client("chargeback-2026-10.manifest.json")
    assert blob.get_blob_properties().content_settings.content_type == "application/json"


def test_an_unreachable_account_is_sink_unavailable_not_a_traceback():
    """Nothing listening: reading or writing a statement raises SinkUnavailable (one line in the CLI)."""
    import socket

    from azure.storage.blob import LinearRetry

    from chargeback.errors import SinkUnavailable
    from tests.conftest import AZURITE_ACCOUNT, AZURITE_KEY

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    service = BlobServiceClient(
        f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}",
        credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY},
        retry_policy=LinearRetry(backoff=0, random_jitter_range=0, retry_total=0),
    )
    store = BlobExportStore(service.get_container_client("exports"))
    with pytest.raises(SinkUnavailable, match="exports container exports: cannot read"):
        store.read("chargeback-2026-10.manifest.json")
    with pytest.raises(SinkUnavailable, match="cannot write"):
        store.create("chargeback-2026-10.focus.csv", b"x\n")
