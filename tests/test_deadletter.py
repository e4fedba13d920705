"""The local dead-letter folder: atomic JSONL files, bodies kept intact, safe to repeat."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chargeback.core.pipeline import Message, Source
from chargeback.edges.deadletter import LocalDeadLetterStore
from chargeback.edges.sinks import DeadLetter
from chargeback.errors import ConfigError, Reason, SinkError

STAMP = datetime(2026, 10, 20, 12, 30, tzinfo=UTC)


def letter(body: bytes, reason: Reason = Reason.INVALID_JSON) -> DeadLetter:
    return DeadLetter(Message(body, Source("file", "events.jsonl", "7")), reason, "detail", STAMP)


def test_records_round_trip_with_original_body_reason_time_and_source(tmp_path: Path):
    """What is put is read back byte-for-byte, with reason, time and origin."""
    store = LocalDeadLetterStore(tmp_path)
    store.put([letter(b'{"cut": '), letter(b"\xff\xfe binary", Reason.INVALID_ENCODING)])
    back = list(store.records())
    assert [r.message.body for r in back] == [b'{"cut": ', b"\xff\xfe binary"]
    assert [r.reason for r in back] == [Reason.INVALID_JSON, Reason.INVALID_ENCODING]
    assert back[0].dead_lettered_at == STAMP
    assert back[0].message.source == Source("file", "events.jsonl", "7")


def test_files_are_dated_jsonl_with_a_readable_record(tmp_path: Path):
    """Each put is one JSONL file under YYYY/MM/DD; the body is stored as text when it is UTF-8."""
    store = LocalDeadLetterStore(tmp_path)
    store.put([letter(b'{"schemaVersion":"9"}', Reason.UNKNOWN_SCHEMA_VERSION)])
    [path] = store.files()
    assert path.relative_to(tmp_path).parts[:3] == ("2026", "10", "20")
    record = json.loads(path.read_text())
    assert record["reason"] == "unknown-schema-version"
    assert record["body"] == '{"schemaVersion":"9"}'
    assert record["deadLetteredAt"] == "2026-10-20T12:30:00Z"


def test_repeating_a_put_does_not_double_the_records(tmp_path: Path):
    """A retried batch writes the same file name, so its records are not duplicated."""
    store = LocalDeadLetterStore(tmp_path)
    batch = [letter(b"a"), letter(b"b")]
    store.put(batch)
    store.put(batch)
    assert len(list(store.records())) == 2


def test_path_that_is_a_file_raises_sink_error(tmp_path: Path):
    """A dead-letter path that is not a folder raises SinkError (works as root too)."""
    blocker = tmp_path / "dl"
    blocker.write_text("not a folder")
    with pytest.raises(SinkError):
        LocalDeadLetterStore(blocker).put([letter(b"x")])


def test_the_same_records_put_again_on_another_day_write_nothing_new(tmp_path: Path):
    """A re-run that dead-letters the same records, even on another day, writes no new file."""
    store = LocalDeadLetterStore(tmp_path)
    first = letter(b"a")
    store.put([first])
    store.put([DeadLetter(first.message, first.reason, first.detail, datetime(2026, 12, 24, tzinfo=UTC))])
    assert len(store.files()) == 1
    assert [r.id for r in store.records()] == [first.id]


def test_event_hub_records_are_filed_under_their_enqueued_day(tmp_path: Path):
    """A redelivered Event Hub batch lands on the same name whatever day it is dead-lettered."""
    store = LocalDeadLetterStore(tmp_path)
    source = Source("eventhub", "p0", "seq=1", "2026-10-19T23:59:00Z")
    store.put([DeadLetter(Message(b"x", source), Reason.INVALID_JSON, "d", STAMP)])
    [path] = store.files()
    assert path.relative_to(tmp_path).parts[:3] == ("2026", "10", "19")


@pytest.mark.parametrize(
    "hostile",
    ["\ud800", "\udfff tail", "bidi \u202e txt", "nul \x00 and \x1b[31m", "x" * 10_000],
)
def test_any_text_in_any_field_can_be_written_and_read_back(tmp_path: Path, hostile: str):
    """Lone surrogates, controls and long text in the detail, field and request id never fail a put."""
    store = LocalDeadLetterStore(tmp_path)
    record = DeadLetter(
        Message(hostile.encode("utf-8", "surrogatepass"), Source("file", hostile, hostile)),
        Reason.INTERNAL_ERROR,
        hostile,
        STAMP,
        field=hostile,
        request_id=hostile,
    )
    store.put([record])
    [back] = list(store.records())
    assert (back.detail, back.field, back.request_id, back.message.source.name) == (hostile,) * 4
    assert back.message.body == record.message.body


def test_atomic_write_replaces_whole_and_leaves_no_temporary_file(tmp_path: Path):
    """atomic_write creates the folders, writes the bytes whole and keeps no .tmp file beside them."""
    from chargeback.edges.deadletter import atomic_write

    target = tmp_path / "a" / "b" / "file.txt"
    atomic_write(target, b"one\n")
    atomic_write(target, b"two\n")
    assert target.read_bytes() == b"two\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["file.txt"]


def test_the_replay_ledger_round_trips_through_the_folder(tmp_path: Path):
    """Marked ids are read back; marking the same ids again writes the same single ledger file."""
    from chargeback.edges.deadletter import ledger_name

    store = LocalDeadLetterStore(tmp_path / "dl")
    assert store.replayed_ids() == set()
    store.mark_replayed({"b", "a"})
    store.mark_replayed({"a", "b"})
    store.mark_replayed({"c"})
    assert store.replayed_ids() == {"a", "b", "c"}
    ledger = sorted(str(p.relative_to(tmp_path / "dl")) for p in (tmp_path / "dl" / "replayed").iterdir())
    assert ledger == sorted([ledger_name({"a", "b"}), ledger_name({"c"})])
    assert list(store.records()) == []


def test_redaction_keeps_no_body_text_but_what_prices_reported_usage(tmp_path: Path):
    """DEADLETTER_REDACT_BODIES: bodies become a sha256 and length; ids and usage stay; rows pass as is."""
    from chargeback.edges.deadletter import RedactingDeadLetterStore

    secret = "my secret prompt"
    event = {
        "requestId": "r1",
        "usage": {"prompt_tokens": 5},
        "requestBody": secret,
        "responseBody": "answer",
    }
    store = RedactingDeadLetterStore(LocalDeadLetterStore(tmp_path))
    row = DeadLetter(
        Message(b'{"RequestId":"r2"}', Source("file")), Reason.WRITE_FAILED, "d", STAMP, kind="row"
    )
    store.put(
        [
            letter(json.dumps(event).encode(), Reason.INTERNAL_ERROR),
            letter(b"not json " + secret.encode()),
            row,
        ]
    )
    records = {r.kind + r.reason.value: r for r in LocalDeadLetterStore(tmp_path).records()}
    kept = json.loads(records["eventinternal-error"].message.body)
    assert (kept["requestId"], kept["usage"], kept["requestBody"], kept["responseBody"]) == (
        "r1",
        {"prompt_tokens": 5},
        None,
        None,
    )
    assert kept["redactedBodies"]["requestBody"]["bytes"] == len(secret)
    assert secret.encode() not in b"".join(
        path.read_bytes() for path in LocalDeadLetterStore(tmp_path).files()
    )
    assert records["rowwrite-failed"].message.body == b'{"RequestId":"r2"}'


def test_the_redaction_switch_is_read_from_the_settings(tmp_path: Path):
    """wiring.build_deadletter wraps the store when DEADLETTER_REDACT_BODIES=true, and only then."""
    from chargeback.edges.deadletter import RedactingDeadLetterStore
    from chargeback.settings import Settings
    from chargeback.wiring import build_deadletter

    on = Settings.from_env({"DEADLETTER_PATH": str(tmp_path), "DEADLETTER_REDACT_BODIES": "true"})
    off = Settings.from_env({"DEADLETTER_PATH": str(tmp_path)})
    assert isinstance(build_deadletter(on), RedactingDeadLetterStore)
    assert isinstance(build_deadletter(off), LocalDeadLetterStore)
    with pytest.raises(ConfigError):
        Settings.from_env({"DEADLETTER_REDACT_BODIES": "yes"})
