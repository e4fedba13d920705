"""The edges' contracts: a dead-letter keeps its body byte for byte, and rows go on the wire as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

from chargeback.core.pipeline import Message, Source
from chargeback.edges.sinks import DeadLetter, WriteResult, row_for_json
from chargeback.errors import Reason

STAMP = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)


def dead(body: bytes, reason: Reason = Reason.INVALID_JSON) -> DeadLetter:
    """A dead-letter of ``body`` from an Event Hub partition."""
    source = Source("eventhub", "team-a", "seq=7", "2026-11-01T09:29:00Z")
    return DeadLetter(Message(body, source), reason, "broken", STAMP, "usage", "r-1")


def test_a_utf8_body_round_trips_as_text_and_any_other_as_base64():
    """to_json/from_json give back the same body, reason, source and id, UTF-8 or not."""
    for body in (b'{"requestId": "r-1", "x": "d\xc3\xa9j\xc3\xa0"}', b"\xff\xfe not utf-8"):
        original = dead(body)
        line = original.to_json()
        back = DeadLetter.from_json(line)
        assert (back.message.body, back.reason, back.message.source, back.id) == (
            original.message.body,
            original.reason,
            original.message.source,
            original.id,
        )
        assert ("bodyBase64" in json.loads(line)) == (body == b"\xff\xfe not utf-8")


def test_the_id_is_the_body_and_reason_only():
    """The same body with the same reason is the same record; another reason is another record."""
    assert dead(b"x").id == dead(b"x").id
    assert dead(b"x").id != dead(b"x", Reason.SINK_UNAVAILABLE).id
    assert dead(b"x").id != dead(b"y").id


def test_rows_go_on_the_wire_as_iso_utc_strings_and_floats():
    """Datetimes become ISO-8601 UTC with Z, Decimals floats; other values are unchanged."""
    local = datetime(2026, 11, 1, 10, 30, tzinfo=timezone(timedelta(hours=1)))
    row = row_for_json({"TimeGenerated": local, "TotalCost": Decimal("0.125"), "Tags": {"a": "b"}, "N": 3})
    assert row == {"TimeGenerated": "2026-11-01T09:30:00Z", "TotalCost": 0.125, "Tags": {"a": "b"}, "N": 3}


def test_a_write_result_starts_empty_and_knows_no_keys():
    """A fresh WriteResult counts nothing and has no written keys (a backend that cannot tell)."""
    result = WriteResult()
    assert (result.written, result.duplicates, result.failed, result.written_keys) == (0, 0, [], None)
