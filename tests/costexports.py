"""Azure Cost Management FOCUS cost exports for the reconciliation tests, in Microsoft's documented columns.

The column list and the row builder are ``chargeback.jobs.sample_invoice``'s (Microsoft's documented
"FocusCost 1.0" columns, FOCUS 1.0 plus the ``x_`` extensions); here they are written as CSV,
gzipped CSV and Parquet, the three formats a Cost Management export can take.
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path

from chargeback.jobs.sample_invoice import ACCOUNT, FOCUS_COST_1_0, cost_row

__all__ = ["ACCOUNT", "FOCUS_COST_1_0", "focus_row", "write_csv", "write_parquet"]
focus_row = cost_row


def write_csv(path: Path, rows: Sequence[Mapping[str, str]], *, compress: bool = False) -> Path:
    """An export file (``compress`` writes gzip, as Cost Management's compressed CSV option does)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(FOCUS_COST_1_0), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    data = buffer.getvalue().encode("utf-8-sig")
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_parquet(path: Path, rows: Sequence[Mapping[str, str]]) -> Path:
    """The same rows as a Parquet export (money and quantities as decimals, like the real files)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    numeric = {
        "BilledCost",
        "ConsumedQuantity",
        "ContractedCost",
        "ContractedUnitPrice",
        "EffectiveCost",
        "ListCost",
        "ListUnitPrice",
        "PricingQuantity",
        "x_BilledCostInUsd",
        "x_BilledUnitPrice",
    }
    columns = {}
    for name in FOCUS_COST_1_0:
        values = [row.get(name, "") for row in rows]
        if name in numeric:
            columns[name] = pa.array([Decimal(v) if v else None for v in values], type=pa.decimal128(38, 18))
        else:
            columns[name] = pa.array([v or None for v in values], type=pa.string())
    pq.write_table(pa.table(columns), path)
    return path
