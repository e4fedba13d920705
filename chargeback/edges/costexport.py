"""Read an Azure Cost Management cost export (FOCUS): CSV, gzipped CSV or Parquet, in one or many files.

A Cost Management export is often split ("partitioned") into several files, written as CSV, gzipped
CSV or Parquet depending on the export's settings. ``read_cost_export`` takes files or folders
(every ``.csv``, ``.csv.gz``/``.gz`` and ``.parquet`` file inside, in name order), recognises the
format from the file's first bytes (gzip and Parquet have magic numbers; anything else is read as
UTF-8 CSV, with or without a byte-order mark) and yields each row as ``{column: text}``: numbers
and dates stay text, exactly as written, so that the caller parses them as Decimals.

Parquet needs ``pyarrow`` (imported only when a Parquet file is read). Every problem is a
``ConfigError`` naming the file and what to do, never a traceback.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, cast

from chargeback.errors import ConfigError

GZIP_MAGIC = b"\x1f\x8b"
PARQUET_MAGIC = b"PAR1"
SUFFIXES = (".csv", ".gz", ".parquet")
# The FOCUS columns a reconciliation cannot do without: the money, and the period it belongs to.
REQUIRED_COLUMNS = ("BilledCost",)
PERIOD_COLUMNS = ("ChargePeriodStart", "BillingPeriodStart")


def export_files(paths: Sequence[Path | str]) -> list[Path]:
    """The files to read: each path as given, a folder's export files (sorted), no file twice."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith(SUFFIXES))
            if not inside:
                raise ConfigError(f"cost export folder {path} has no .csv, .csv.gz or .parquet file")
            files.extend(inside)
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f"cost export {path} does not exist: pass the export's CSV/Parquet files")
    unique: list[Path] = []
    for path in files:
        if path.resolve() not in {p.resolve() for p in unique}:
            unique.append(path)
    return unique


def _text(value: Any) -> str:
    """A Parquet cell as the text a CSV export would hold."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Decimal):
        return f"{value:f}"
    if isinstance(value, dict):
        import json

        return json.dumps(value, sort_keys=True)
    return str(value)


def _parquet_rows(path: Path) -> Iterator[dict[str, str]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a pinned dependency
        raise ConfigError(f"{path} is Parquet and pyarrow is not installed: pip install pyarrow") from None
    try:
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=8192):
            for record in batch.to_pylist():
                yield {str(key): _text(value) for key, value in record.items()}
    except (OSError, ValueError) as exc:  # pyarrow raises ArrowInvalid (a ValueError) or OSError
        raise ConfigError(f"{path} is not a readable Parquet file ({exc}): re-download the export") from None


def _csv_rows(path: Path, handle: IO[bytes]) -> Iterator[dict[str, str]]:
    text = io.TextIOWrapper(handle, encoding="utf-8-sig", newline="")
    try:
        reader = csv.DictReader(text)
        if not reader.fieldnames:
            return
        for row in reader:
            yield {key: (value or "").strip() for key, value in row.items() if key is not None}
    except (UnicodeDecodeError, csv.Error, EOFError, gzip.BadGzipFile) as exc:
        raise ConfigError(
            f"{path} is not a readable CSV cost export ({exc}): re-download the export"
        ) from None


def read_file(path: Path) -> Iterator[dict[str, str]]:
    """The rows of one export file, whatever its format."""
    try:
        with path.open("rb") as probe:
            head = probe.read(4)
    except OSError as exc:
        raise ConfigError(f"cannot read cost export {path}: {exc.strerror}") from None
    if head == PARQUET_MAGIC:
        yield from _parquet_rows(path)
        return
    if head[:2] == GZIP_MAGIC:
        with gzip.GzipFile(path, "rb") as handle:
            yield from _csv_rows(path, cast(IO[bytes], handle))
        return
    with path.open("rb") as handle:
        yield from _csv_rows(path, handle)


def columns(path: Path) -> list[str]:
    """The column names of one export file (its CSV header or Parquet schema), reading nothing else."""
    try:
        with path.open("rb") as probe:
            head = probe.read(4)
    except OSError as exc:
        raise ConfigError(f"cannot read cost export {path}: {exc.strerror}") from None
    if head == PARQUET_MAGIC:
        try:
            import pyarrow.parquet as pq

            return [str(name) for name in pq.read_schema(path).names]
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"{path} is not a readable Parquet file ({exc}): re-download the export"
            ) from None
    try:
        if head[:2] == GZIP_MAGIC:
            with gzip.GzipFile(path, "rb") as handle:
                line = handle.readline()
        else:
            with path.open("rb") as handle:
                line = handle.readline()
        text = line.decode("utf-8-sig")
        return [name.strip() for name in next(csv.reader([text]), [])]
    except (UnicodeDecodeError, csv.Error, EOFError, gzip.BadGzipFile) as exc:
        raise ConfigError(
            f"{path} is not a readable CSV cost export ({exc}): re-download the export"
        ) from None


def check_cost_export(paths: Sequence[Path | str]) -> list[Path]:
    """The export's files, each checked to be there and to carry the FOCUS columns; nothing is read further.

    Run before anything is written, so that a wrong or missing file stops the command cleanly.
    """
    files = export_files(paths)
    for path in files:
        names = set(columns(path))
        missing = [name for name in REQUIRED_COLUMNS if name not in names]
        if not names & set(PERIOD_COLUMNS):
            missing.append(" or ".join(PERIOD_COLUMNS))
        if missing:
            raise ConfigError(
                f"{path} is not a FOCUS cost export (no {', '.join(missing)} column): "
                "export Cost and usage details (FOCUS) from Cost Management"
            )
    return files


def read_cost_export(paths: Sequence[Path | str]) -> Iterator[tuple[Path, dict[str, str]]]:
    """Every row of every export file, with the file it came from."""
    for path in export_files(paths):
        for row in read_file(path):
            yield path, row
