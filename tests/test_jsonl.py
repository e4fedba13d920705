"""JSONL files of Event Hub bodies: streamed in bounded batches, blank lines skipped, lines kept."""

from __future__ import annotations

import gzip
from pathlib import Path

from chargeback.edges.jsonl import read_messages


def write_jsonl(path: Path, bodies: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(bodies) + b"\n")
    return path


def test_read_messages_streams_in_bounded_batches_and_skips_blank_lines(tmp_path: Path):
    """Batches never exceed the batch size; blank lines are not messages; line numbers are kept."""
    path = write_jsonl(tmp_path / "e.jsonl", [b"a", b"", b"b", b"c", b"  ", b"d", b"e"])
    batches = [batch for batch, _ in read_messages(path, batch_size=2)]
    assert [[m.body for m in b] for b in batches] == [[b"a", b"b"], [b"c", b"d"], [b"e"]]
    assert [m.source.position for m in batches[0]] == ["1", "3"]


def test_read_messages_also_closes_a_batch_at_the_byte_bound(tmp_path: Path):
    """Large bodies close a batch before the event count does, so memory stays bounded."""
    path = write_jsonl(tmp_path / "big.jsonl", [b"x" * 100] * 5)
    batches = [batch for batch, _ in read_messages(path, batch_size=1000, max_bytes=250)]
    assert [len(b) for b in batches] == [3, 2]


def test_gzip_files_are_read_as_jsonl(tmp_path: Path):
    """A .jsonl.gz file gives the same messages as the plain file."""
    path = tmp_path / "e.jsonl.gz"
    with gzip.open(path, "wb") as handle:
        handle.write(b"a\n\nb\n")
    batches = [batch for batch, _ in read_messages(path)]
    assert [[m.body for m in b] for b in batches] == [[b"a", b"b"]]
    assert [m.source.position for m in batches[0]] == ["1", "3"]
