"""JSONL files of Event Hub bodies: streamed in bounded batches, blank lines skipped, lines kept."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


def line_by_line(path: Path, batch_size: int, max_bytes: int) -> list[tuple[list[tuple[bytes, str]], int]]:
    """The reader as it was before blocks: one line at a time (the reference for the property test)."""
    out: list[tuple[list[tuple[bytes, str]], int]] = []
    batch: list[tuple[bytes, str]] = []
    consumed = 0
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            consumed += len(line)
            body = line.rstrip(b"\r\n")
            if not body or body.isspace():
                continue
            batch.append((body, str(number)))
            if len(batch) >= batch_size or consumed >= max_bytes:
                out.append((batch, consumed))
                batch, consumed = [], 0
    if batch or consumed:
        out.append((batch, consumed))
    return out


pieces = st.sampled_from([b"{}", b'{"a": 1}', b"x" * 37, b"", b"  ", b"\t", b"\r", b"a\r", b"b\r\r", b" \r"])


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(pieces, max_size=40),
    final_newline=st.booleans(),
    batch_size=st.integers(1, 12),
    max_bytes=st.integers(1, 200),
    block_bytes=st.integers(1, 64),
)
def test_blocks_give_the_batches_bodies_lines_and_bytes_of_reading_line_by_line(
    tmp_path_factory: pytest.TempPathFactory,
    *,
    lines: list[bytes],
    final_newline: bool,
    batch_size: int,
    max_bytes: int,
    block_bytes: int,
) -> None:
    """Reading in blocks yields exactly the batches, bodies, line numbers and byte counts of the line loop."""
    path = tmp_path_factory.mktemp("jsonl") / "e.jsonl"
    path.write_bytes(b"\n".join(lines) + (b"\n" if final_newline and lines else b""))
    got = [
        ([(m.body, m.source.position) for m in batch], consumed)
        for batch, consumed in read_messages(path, batch_size, max_bytes, block_bytes=block_bytes)
    ]
    assert got == line_by_line(path, batch_size, max_bytes)
    assert all(m.source.name == str(path) for batch, _ in read_messages(path) for m in batch)


def test_a_line_longer_than_many_blocks_is_one_message(tmp_path: Path):
    """A body spanning many read blocks comes back whole, with its line number."""
    long = b'{"x": "' + b"y" * 10_000 + b'"}'
    path = write_jsonl(tmp_path / "long.jsonl", [b"{}", long, b"{}"])
    [(batch, consumed)] = list(read_messages(path, block_bytes=64))
    assert [(m.body, m.source.position) for m in batch] == [(b"{}", "1"), (long, "2"), (b"{}", "3")]
    assert consumed == path.stat().st_size
