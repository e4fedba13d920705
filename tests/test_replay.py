"""Replay: dead-letters back through the pipeline (or to Event Hub) once, never charged twice."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chargeback.core.pipeline import Message, Row, Source
from chargeback.edges.deadletter import LocalDeadLetterStore
from chargeback.edges.sinks import DeadLetter, WriteResult
from chargeback.edges.store import DuckDBStore
from chargeback.errors import ConfigError, Reason
from chargeback.jobs.replay import (
    REPLAYABLE_REASONS,
    event_hub_groups,
    parse_reasons,
    partition_key_for,
    replay_to_pipeline,
)
from tests.conftest import la_writer, make_event, to_body

STAMP = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


def dead(body: bytes, reason: Reason = Reason.SINK_UNAVAILABLE) -> DeadLetter:
    return DeadLetter(Message(body, Source("eventhub", "p", "seq=1")), reason, "was down", STAMP)


def seed(folder: LocalDeadLetterStore, n: int, reason: Reason = Reason.SINK_UNAVAILABLE) -> list[DeadLetter]:
    records = [dead(to_body(make_event()), reason) for _ in range(n)]
    folder.put(records)
    return records


def test_replay_charges_dead_letters_once_and_a_second_replay_does_nothing(pricer, tmp_path: Path):
    """Sink-unavailable records are written, marked replayed; replaying again sends nothing."""
    folder, store = LocalDeadLetterStore(tmp_path / "dl"), DuckDBStore()
    records = seed(folder, 5)
    first = replay_to_pipeline(folder, pricer=pricer, writer=store)
    assert (first.pending, first.replayed, first.still_failing) == (5, 5, 0)
    assert store.count() == 5
    assert folder.replayed_ids() == {r.id for r in records}
    second = replay_to_pipeline(folder, pricer=pricer, writer=store)
    assert (second.already_replayed, second.pending, second.replayed) == (5, 0, 0)
    assert store.count() == 5


def test_replaying_a_record_already_charged_counts_a_duplicate_not_a_charge(pricer, tmp_path: Path):
    """A dead-letter whose row already reached the table is a duplicate: no second row, marked done."""
    folder, store = LocalDeadLetterStore(tmp_path / "dl"), DuckDBStore()
    event = make_event()
    folder.put([dead(to_body(event))])
    from chargeback.jobs.ingest import ingest_batch

    ingest_batch([Message(to_body(event), Source("file"))], pricer=pricer, writer=store, deadletter=folder)
    report = replay_to_pipeline(folder, pricer=pricer, writer=store)
    assert (report.replayed, report.ingest.duplicates, store.count()) == (1, 1, 1)


class StillDown:
    """A writer that is still unavailable (pure ingest logic only)."""

    def write(self, rows: Sequence[Row]) -> WriteResult:
        from chargeback.edges.sinks import FailedRow

        return WriteResult(failed=[FailedRow(r, Reason.SINK_UNAVAILABLE, "still down") for r in rows])


def test_a_record_failing_again_the_same_way_stays_pending_without_copies(pricer, tmp_path: Path):
    """Same reason again: the event gives way to its priced row once; the row stays pending, no copies."""
    folder = LocalDeadLetterStore(tmp_path / "dl")
    [original] = seed(folder, 1)
    report = replay_to_pipeline(folder, pricer=pricer, writer=StillDown())
    assert (report.replayed, report.still_failing) == (0, 1)
    assert report.new_reasons == {"sink-unavailable": 1}
    row = {r.kind: r for r in folder.records()}["row"]
    request_id = json.loads(original.message.body)["requestId"]
    assert (row.reason, row.request_id) == (Reason.SINK_UNAVAILABLE, request_id)
    assert b"messages" not in row.message.body  # the priced row, not the request body
    assert folder.replayed_ids() == {original.id}
    again = replay_to_pipeline(folder, pricer=pricer, writer=StillDown())
    assert (again.replayed, again.still_failing) == (0, 1)
    assert sorted(r.id for r in folder.records()) == sorted([original.id, row.id])
    assert folder.replayed_ids() == {original.id}


def test_a_record_failing_with_a_new_reason_is_dead_lettered_anew(pricer, tmp_path: Path):
    """A new reason: a new record with it (pending), and the old record marked replayed."""
    folder = LocalDeadLetterStore(tmp_path / "dl")
    [original] = seed(folder, 1, Reason.INTERNAL_ERROR)

    class Refusing:
        def write(self, rows: Sequence[Row]) -> WriteResult:
            from chargeback.edges.sinks import FailedRow

            return WriteResult(failed=[FailedRow(r, Reason.WRITE_FAILED, "HTTP 400") for r in rows])

    report = replay_to_pipeline(folder, pricer=pricer, writer=Refusing())
    assert report.new_reasons == {"write-failed": 1}
    reasons = sorted(r.reason.value for r in folder.records())
    assert reasons == ["internal-error", "write-failed"]
    assert folder.replayed_ids() == {original.id}
    again = replay_to_pipeline(folder, pricer=pricer, writer=DuckDBStore(), dry_run=True)
    assert again.pending_reasons == {"write-failed": 1}


def test_contract_rejections_are_replayed_only_when_asked(pricer, tmp_path: Path):
    """invalid-json is not in the default reasons; --reason all (None) includes it."""
    folder = LocalDeadLetterStore(tmp_path / "dl")
    folder.put([dead(b"{bad", Reason.INVALID_JSON)])
    seed(folder, 2)
    default = replay_to_pipeline(folder, pricer=pricer, writer=DuckDBStore(), dry_run=True)
    assert (default.pending, default.other_reasons) == (2, 1)
    everything = replay_to_pipeline(folder, pricer=pricer, writer=DuckDBStore(), reasons=None, dry_run=True)
    assert everything.pending == 3


def test_a_dry_run_sends_and_marks_nothing(pricer, tmp_path: Path):
    """--dry-run counts pending records by reason and leaves the store as it was."""
    folder, store = LocalDeadLetterStore(tmp_path / "dl"), DuckDBStore()
    seed(folder, 3)
    report = replay_to_pipeline(folder, pricer=pricer, writer=store, dry_run=True)
    assert (report.pending, report.pending_reasons, store.count()) == (3, {"sink-unavailable": 3}, 0)
    assert folder.replayed_ids() == set()


def test_records_put_twice_are_replayed_once(pricer, tmp_path: Path):
    """The same record in two files (a retried trigger, in a batch of other records) is one pending record."""
    folder, store = LocalDeadLetterStore(tmp_path / "dl"), DuckDBStore()
    record, other = dead(to_body(make_event())), dead(to_body(make_event()))
    folder.put([record])
    again = DeadLetter(record.message, record.reason, record.detail, datetime(2026, 11, 2, tzinfo=UTC))
    folder.put([again, other])
    report = replay_to_pipeline(folder, pricer=pricer, writer=store)
    assert (report.records_seen, report.pending, store.count()) == (3, 2, 2)


def test_parse_reasons():
    """No --reason means the replayable set; 'all' means every reason; unknown codes are refused."""
    assert parse_reasons(None) == REPLAYABLE_REASONS
    assert parse_reasons(["all"]) is None
    assert parse_reasons(["invalid-json"]) == frozenset({Reason.INVALID_JSON})
    with pytest.raises(ConfigError):
        parse_reasons(["nope"])


def test_partition_key_is_the_subscription_id_when_parseable():
    """Event Hub re-sends keep APIM's partitioning: subscriptionId, else no key."""
    assert partition_key_for(to_body(make_event(subscriptionId="team-z"))) == "team-z"
    assert partition_key_for(b"{bad") is None
    assert partition_key_for(b"[1, 2]") is None
    assert partition_key_for(json.dumps({"subscriptionId": 7}).encode()) is None
    assert partition_key_for(b"\xff\xfe") is None


def test_event_hub_groups_keep_order_within_each_partition_key():
    """Records are grouped by partition key, each group in dead-letter order."""
    a1, b1, a2, bad = (
        dead(to_body(make_event(subscriptionId="a", requestId="1"))),
        dead(to_body(make_event(subscriptionId="b", requestId="2"))),
        dead(to_body(make_event(subscriptionId="a", requestId="3"))),
        dead(b"{bad", Reason.INVALID_JSON),
    )
    groups = event_hub_groups([a1, b1, a2, bad])
    assert groups == {"a": [a1, a2], "b": [b1], None: [bad]}


def test_event_hub_producer_needs_the_namespace_settings():
    """Without EVENTHUB__fullyQualifiedNamespace the Event Hub replay is a configuration error."""
    from chargeback.settings import Settings
    from chargeback.wiring import build_event_hub_producer

    with pytest.raises(ConfigError, match="EVENTHUB"):
        build_event_hub_producer(Settings.from_env({}))


@pytest.mark.azurite
def test_replay_from_a_blob_container_into_log_analytics(pricer, azurite, log_analytics):
    """Blob dead-letters replayed with the Log Analytics writer land once; the ledger stops a rerun."""
    from azure.storage.blob import BlobServiceClient

    from chargeback.edges.blob import BlobDeadLetterStore

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    store = BlobDeadLetterStore(service.get_container_client(f"dl-{uuid.uuid4().hex[:12]}"))
    records = [dead(to_body(make_event())) for _ in range(20)]
    store.put(records)
    writer = la_writer(log_analytics)
    first = replay_to_pipeline(store, pricer=pricer, writer=writer)
    second = replay_to_pipeline(store, pricer=pricer, writer=writer)
    assert (first.replayed, second.pending, second.already_replayed) == (20, 0, 20)
    assert log_analytics.sql('SELECT count(*) FROM "AOAIChargeback_CL"') == [(20,)]


def test_cli_replay_from_folder_into_duckdb(tmp_path: Path, config_files, capsys):
    """`chargeback replay --from-folder DIR --db FILE` replays and reports; a rerun replays nothing."""
    from chargeback.cli import main

    folder = LocalDeadLetterStore(tmp_path / "dl")
    seed(folder, 4)
    card, deployments = config_files
    args = ["replay", "--from-folder", str(tmp_path / "dl"), "--db", str(tmp_path / "c.duckdb")]
    args += ["--rate-card", str(card), "--deployments", str(deployments)]
    assert main(args) == 0
    assert "replayed to pipeline: 4" in " ".join(capsys.readouterr().out.split())
    assert main(args) == 0
    assert "4 already replayed" in " ".join(capsys.readouterr().out.split())
    assert len(folder.replayed_ids()) == 4
    with DuckDBStore(tmp_path / "c.duckdb") as store:
        assert store.count() == 4
