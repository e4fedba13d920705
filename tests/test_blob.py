"""BlobDeadLetterStore on a real Azurite: one JSONL blob per put, idempotent, readable back for replay."""

from __future__ import annotations

import socket
import uuid
from datetime import UTC, datetime

import pytest
from azure.storage.blob import BlobServiceClient, LinearRetry

from chargeback.core.pipeline import Message, Source
from chargeback.edges.blob import BlobDeadLetterStore
from chargeback.edges.deadletter import ledger_name
from chargeback.edges.sinks import DeadLetter
from chargeback.errors import Reason, SinkUnavailable
from chargeback.settings import Settings

pytestmark = pytest.mark.azurite

STAMP = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


def record(body: bytes = b'{"requestId": "r"}', reason: Reason = Reason.SINK_UNAVAILABLE) -> DeadLetter:
    return DeadLetter(Message(body, Source("eventhub", "team-a", "seq=7")), reason, "down", STAMP, None, "r")


def store_for(azurite, container: str | None = None) -> BlobDeadLetterStore:
    service = BlobServiceClient.from_connection_string(azurite.connection_string, api_version="2021-12-02")
    return BlobDeadLetterStore(service.get_container_client(container or f"dl-{uuid.uuid4().hex[:12]}"))


def test_put_then_records_round_trips_body_reason_and_source(azurite):
    """A put record reads back with the same id, body, reason and Event Hub position."""
    store = store_for(azurite)
    original = record()
    store.put([original])
    [back] = store.records()
    assert back.id == original.id
    assert (back.message.body, back.reason, back.message.source) == (
        original.message.body,
        Reason.SINK_UNAVAILABLE,
        original.message.source,
    )


def test_the_container_is_created_when_missing(azurite):
    """The first put creates the container; listing a missing container is empty, not an error."""
    store = store_for(azurite)
    assert list(store.records()) == []
    assert not store.container.exists()
    store.put([record()])
    assert store.container.exists()


def test_a_repeated_put_does_not_double_records(azurite):
    """Putting the same records twice lands on the same deterministic blob name."""
    store = store_for(azurite)
    batch = [record(b"a"), record(b"b", Reason.INVALID_JSON)]
    store.put(batch)
    store.put(batch)
    assert len(store.blob_names()) == 1
    assert sorted(r.id for r in store.records()) == sorted(r.id for r in batch)


def test_binary_bodies_survive(azurite):
    """Bodies that are not UTF-8 are kept (base64) and read back byte for byte."""
    store = store_for(azurite)
    store.put([record(b"\xff\xfe\x00garbage", Reason.INVALID_ENCODING)])
    [back] = store.records()
    assert back.message.body == b"\xff\xfe\x00garbage"


def test_replay_ledger_round_trips_and_is_idempotent(azurite):
    """mark_replayed writes one ledger blob per id set; replayed_ids reads every ledger back."""
    store = store_for(azurite)
    assert store.replayed_ids() == set()
    store.mark_replayed({"a", "b"})
    store.mark_replayed({"b", "a"})
    store.mark_replayed({"c"})
    assert store.replayed_ids() == {"a", "b", "c"}
    ledgers = [b.name for b in store.container.list_blobs(name_starts_with="replayed/")]
    assert sorted(ledgers) == sorted([ledger_name({"a", "b"}), ledger_name({"c"})])
    assert store.blob_names() == []


def test_from_settings_and_runtime_use_the_container(azurite):
    """DEADLETTER_CONTAINER with Azurite's connection string builds a BlobDeadLetterStore."""
    from chargeback.wiring import build_deadletter

    container = f"dl-{uuid.uuid4().hex[:12]}"
    settings = Settings.from_env(
        {"STORAGE_CONNECTION_STRING": azurite.connection_string, "DEADLETTER_CONTAINER": container}
    )
    store = build_deadletter(settings)
    assert isinstance(store, BlobDeadLetterStore)
    assert store.name == container


def test_a_container_without_storage_settings_is_a_config_error():
    """DEADLETTER_CONTAINER alone (no storage endpoint) is refused rather than silently ignored."""
    from chargeback.errors import ConfigError
    from chargeback.wiring import build_deadletter

    with pytest.raises(ConfigError, match="STORAGE_BLOB_ENDPOINT"):
        build_deadletter(Settings.from_env({"DEADLETTER_CONTAINER": "deadletter"}))


def test_an_unreachable_account_is_sink_unavailable():
    """Nothing listening on the endpoint: put raises SinkUnavailable, quickly."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    from tests.conftest import AZURITE_ACCOUNT, AZURITE_KEY

    service = BlobServiceClient(
        f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}",
        credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY},
        retry_policy=LinearRetry(backoff=0, random_jitter_range=0, retry_total=1),
    )
    store = BlobDeadLetterStore(service.get_container_client("deadletter"))
    with pytest.raises(SinkUnavailable):
        store.put([record()])
