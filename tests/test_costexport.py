"""Cost export files: CSV, gzipped CSV and Parquet read alike, folders expanded, bad files one clear error."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from chargeback.edges.costexport import export_files, read_cost_export, read_file
from chargeback.errors import ConfigError

CSV = (
    "BilledCost,BillingCurrency,x_SkuMeterName\n"
    "1.25,USD,gpt-4o-0806-Inp-glbl\n"
    "0.5,USD,gpt-4o-0806-Outp-glbl\n"
)
ROWS = [
    {"BilledCost": "1.25", "BillingCurrency": "USD", "x_SkuMeterName": "gpt-4o-0806-Inp-glbl"},
    {"BilledCost": "0.5", "BillingCurrency": "USD", "x_SkuMeterName": "gpt-4o-0806-Outp-glbl"},
]


def test_csv_with_a_bom_gzip_and_parquet_give_the_same_rows(tmp_path: Path):
    """The format is told by the first bytes; every format yields the same text cells."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    plain = tmp_path / "part-1.csv"
    plain.write_bytes(b"\xef\xbb\xbf" + CSV.encode())
    zipped = tmp_path / "part-2.csv.gz"
    zipped.write_bytes(gzip.compress(CSV.encode()))
    parquet = tmp_path / "part-3.parquet"
    pq.write_table(
        pa.table({name: [row[name] for row in ROWS] for name in ROWS[0]}),
        parquet,
    )
    for path in (plain, zipped, parquet):
        assert list(read_file(path)) == ROWS


def test_a_folder_expands_to_its_export_files_in_name_order_once(tmp_path: Path):
    """A folder gives its .csv/.gz/.parquet files sorted; a file named twice is read once."""
    (tmp_path / "b.csv").write_text(CSV, encoding="utf-8")
    (tmp_path / "a.csv").write_text(CSV, encoding="utf-8")
    (tmp_path / "notes.txt").write_text("not an export", encoding="utf-8")
    files = export_files([tmp_path, tmp_path / "a.csv"])
    assert [path.name for path in files] == ["a.csv", "b.csv"]
    assert [path.name for path, _ in read_cost_export([tmp_path])] == ["a.csv", "a.csv", "b.csv", "b.csv"]


def test_bad_inputs_are_config_errors_that_say_what_to_do(tmp_path: Path):
    """A missing file, an empty folder and a broken gzip are one ConfigError each, not a traceback."""
    with pytest.raises(ConfigError):
        list(read_cost_export([tmp_path / "missing.csv"]))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=r"no \.csv"):
        export_files([empty])
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(b"\x1f\x8b" + b"not gzip at all")
    with pytest.raises(ConfigError, match="re-download"):
        list(read_file(broken))


def test_check_cost_export_accepts_focus_files_and_refuses_other_files(tmp_path: Path) -> None:
    """check_cost_export passes FOCUS CSV, gzip and Parquet files and names a file without FOCUS columns."""
    from chargeback.edges.costexport import check_cost_export
    from tests import costexports

    row = {"BilledCost": "1", "ChargePeriodStart": "2026-10-01T00:00:00Z"}
    good = [
        costexports.write_csv(tmp_path / "a.csv", [row]),
        costexports.write_csv(tmp_path / "b.csv.gz", [row], compress=True),
        costexports.write_parquet(tmp_path / "c.parquet", [row]),
    ]
    assert check_cost_export(good) == good
    other = tmp_path / "README.md"
    other.write_text("# title\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"README\.md is not a FOCUS cost export"):
        check_cost_export([other])
