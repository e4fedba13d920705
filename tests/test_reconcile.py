"""Reconciliation with the Azure cost export: meter names, quantity basis, gaps and their causes, files."""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from chargeback.cli import main
from chargeback.edges.costexport import read_cost_export
from chargeback.edges.exportstore import FolderExportStore
from chargeback.errors import ConfigError
from chargeback.jobs.reconcile import (
    Side,
    azure_lines,
    billed_tokens,
    compare_line,
    our_lines,
    parse_meter,
    reconcile,
    reconcile_files,
    render_csv,
)
from tests import costexports
from tests.test_statement import statement

MODELS = ("gpt-4o", "gpt-4o-mini", "o4-mini", "text-embedding-3-small", "gpt-4.1-mini", "gpt-realtime-x")
M = Decimal(1_000_000)
SCOPES = {"global": "glbl", "datazone": "DZ", "regional": "rgnl", "global-batch": "Batch glbl"}
DIRECTIONS = {"input": "Inp", "cached-input": "cchd Inp", "output": "Outp"}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("gpt-4o-mini-0718-Inp-glbl", ("gpt-4o-mini", "global", "input")),
        ("gpt 4o 0806 cchd Inp DZ", ("gpt-4o", "datazone", "cached-input")),
        ("gpt-4o-0806-Outp-rgnl", ("gpt-4o", "regional", "output")),
        ("GPT-4.1-mini-Inpt-glbl Tokens", ("gpt-4.1-mini", "global", "input")),
        ("gpt-4o-mini-0718-Batch-Outp-glbl", ("gpt-4o-mini", "global-batch", "output")),
        ("gpt-4o-mini Batch Inp DZone", ("gpt-4o-mini", "datazone-batch", "input")),
        ("o4-mini-0416-opt-pp-glbl", ("o4-mini", "priority", "output")),
        ("gpt4o 0806 Inp Data Zone", ("gpt-4o", "datazone", "input")),
        ("text-embedding-3-small-glbl", ("text-embedding-3-small", "global", "input")),
        ("gpt-4o-rt-aud-0603-Outp-glbl", ("gpt-4o", "global", "audio-output")),
        ("Provisioned Managed Global Hourly", ("*", "ptu", "ptu")),
    ],
)
def test_azure_meter_names_map_to_our_meters(name, expected):
    """Azure's abbreviations (Inp/Outp/cchd, glbl/DZ/rgnl, Batch, pp, aud) give model, type and meter."""
    meter = parse_meter(name, MODELS)
    assert (meter.model, meter.deployment_type, meter.meter) == expected


def test_an_unknown_model_is_kept_under_its_own_name():
    """A meter of a model we never saw keeps a readable model name and is not forced onto another."""
    meter = parse_meter("gpt-5-chat-Inp-glbl", MODELS)
    assert not meter.known
    assert meter.model == "gpt-5-chat"
    assert meter.meter == "input"


def _row(**values: str) -> dict[str, str]:
    return {"PricingUnit": "1M Tokens", **values}


def test_quantity_in_blocks_of_the_unit_is_detected_from_cost_over_list_price():
    """535.137 of a '1M Tokens' meter whose ListCost = quantity x price is 535,137,000 tokens."""
    tokens, basis = billed_tokens(_row(PricingQuantity="535.137", ListUnitPrice="2.5", ListCost="1337.8425"))
    assert tokens == Decimal(535_137_000)
    assert basis == "blocks of 1M Tokens"


def test_quantity_in_tokens_is_detected_from_cost_over_list_price():
    """A quantity already in tokens (ListCost = quantity x price / 1M) is not multiplied again."""
    tokens, basis = billed_tokens(
        _row(PricingQuantity="535137000", ListUnitPrice="2.5", ListCost="1337.8425")
    )
    assert tokens == Decimal(535_137_000)
    assert basis == "tokens"


def test_an_inconsistent_quantity_falls_back_to_list_cost_over_list_price():
    """When neither basis fits, the tokens come from ListCost ÷ ListUnitPrice, and it says so."""
    tokens, basis = billed_tokens(_row(PricingQuantity="7", ListUnitPrice="2.5", ListCost="25"))
    assert tokens == Decimal(10_000_000)
    assert basis == "from ListCost / ListUnitPrice"


def test_gap_components_sum_exactly_to_the_variance():
    """quantity + price + discount + unpriced = billed - ours, whatever mix of gaps a meter has."""
    key = ("gpt-4o", "global", "input", "USD")
    azure = Side(cost=Decimal("9.90"), list_cost=Decimal("11.00"), tokens=Decimal(4_000_000))
    ours = Side(cost=Decimal("7.50"), tokens=Decimal(3_500_000), unpriced_tokens=Decimal(500_000))
    line = compare_line(key, azure, ours)
    total = line.quantity_gap + line.price_gap + line.discount + line.unpriced
    assert total == line.variance == Decimal("2.40")
    assert set(line.causes) == {"bypassed-apim", "price", "discount", "unpriced"}


def test_a_meter_azure_did_not_bill_is_named():
    """Tokens through APIM with no cost export row are a 'not-billed' gap of minus our cost."""
    line = compare_line(
        ("gpt-4o", "datazone", "output", "USD"), None, Side(cost=Decimal(3), tokens=Decimal(10**6))
    )
    assert line.causes == ("not-billed",)
    assert line.variance == Decimal(-3)


def test_an_exact_match_has_no_cause_but_match():
    """Same tokens at the same price: variance 0, cause 'match', coverage 100 %."""
    side = Side(cost=Decimal("1.50"), list_cost=Decimal("1.50"), tokens=Decimal(10**6))
    line = compare_line(("gpt-4o", "global", "input", "USD"), side, side)
    assert line.causes == ("match",)
    assert line.explained == line.billed_cost


# ------------------------------------------------------------------------------------------------
# The October test month against an invoice built from its own statement, with known gaps

BYPASS_TOKENS = 1_000_000  # o4-mini global output: calls that never went through APIM
MINI_INPUT_LIST = Decimal("0.65")  # Azure's price for gpt-4o-mini global input (rate card: 0.15)
DISCOUNT = Decimal("0.5")  # gpt-4o data zone output billed at half the list price
PTU_HOURS, PTU_RATE = Decimal(744), Decimal("0.5")  # 372.00 billed for the PTU deployment (ours: 300.00)
REALTIME_PRICE = Decimal("4.00")  # the unpriced lab model, as Azure prices it


def invoice_rows(focus: bytes, month: str = "2026-10") -> tuple[list[dict[str, str]], dict[str, Decimal]]:
    """Cost export rows for our statement's usage, with the known gaps; and the gaps expected."""
    grouped: dict[tuple[str, str, str, str], Decimal] = defaultdict(Decimal)
    for row in csv.DictReader(io.StringIO(focus.decode("utf-8"))):
        if row["x_Meter"] in DIRECTIONS:
            grouped[(row["x_Model"], row["x_DeploymentType"], row["x_Meter"], row["ListUnitPrice"])] += (
                Decimal(row["x_Tokens"])
            )
    rows: list[dict[str, str]] = []
    expected = {"bypassed-apim": Decimal(0), "price": Decimal(0), "discount": Decimal(0)}
    for index, ((model, kind, meter, price), tokens) in enumerate(sorted(grouped.items())):
        name = f"{model}-{DIRECTIONS[meter]}-{SCOPES[kind]}"
        day = f"{index % 27 + 1:02d}"
        if not Decimal(price or 0):  # unpriced by us (FOCUS unit price 0); Azure prices it
            rows.append(
                costexports.focus_row(month, name, quantity=tokens / M, unit_price=REALTIME_PRICE, day=day)
            )
            expected["unpriced"] = expected.get("unpriced", Decimal(0)) + tokens / M * REALTIME_PRICE
            continue
        unit_price = Decimal(price)
        quantity = tokens / M
        billed = None
        if (model, kind, meter) == ("gpt-4o-mini", "global", "input"):
            expected["price"] += quantity * (MINI_INPUT_LIST - unit_price)
            unit_price = MINI_INPUT_LIST
        if (model, kind, meter) == ("gpt-4o", "datazone", "output"):
            billed = quantity * unit_price * DISCOUNT
            expected["discount"] += billed - quantity * unit_price
        if (model, kind, meter) == ("gpt-4o-mini", "global", "output"):  # this export row is in tokens
            row = costexports.focus_row(month, name, quantity=tokens, unit_price=unit_price, day=day)
            row["ListCost"] = row["ContractedCost"] = row["BilledCost"] = f"{quantity * unit_price:f}"
            rows.append(row)
            continue
        rows.append(
            costexports.focus_row(
                month, name, quantity=quantity, unit_price=unit_price, billed=billed, day=day
            )
        )
        if (model, kind, meter) == ("o4-mini", "global", "output"):
            extra = Decimal(BYPASS_TOKENS) / M
            rows.append(costexports.focus_row(month, name, quantity=extra, unit_price=unit_price, day="28"))
            expected["bypassed-apim"] = extra * unit_price
    rows.append(
        costexports.focus_row(
            month,
            "Provisioned Managed Global Hourly",
            quantity=PTU_HOURS,
            unit_price=PTU_RATE,
            unit="1 Hour",
            block="1",
        )
    )
    expected["ptu"] = PTU_HOURS * PTU_RATE - Decimal("300.00")
    storage = costexports.focus_row(
        month, "Hot LRS Data Stored", quantity=Decimal(10), unit_price=Decimal("0.02")
    )
    storage.update(
        ResourceId="/subscriptions/x/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/st",
        ServiceName="Storage",
        x_SkuMeterCategory="Storage",
        x_SkuMeterSubcategory="Blob Storage",
        x_ResourceType="microsoft.storage/storageaccounts",
    )
    rows.append(storage)
    september = costexports.focus_row(
        "2026-09", "gpt-4o-Inp-glbl", quantity=Decimal(1), unit_price=Decimal(5)
    )
    rows.append(september)
    return rows, expected


def test_reconcile_explains_the_invoice_to_the_cent_with_each_known_gap_named(october_store: Any):
    """Every known gap (bypass, price, discount, PTU, unpriced) is found with its amount; the rest match."""
    focus = statement(october_store).focus
    rows, expected = invoice_rows(focus)
    ours = our_lines(focus)
    result = reconcile("2026-10", azure_lines(rows, "2026-10", set(MODELS)), ours)
    assert result.rows_other_services == 1
    assert result.rows_other_months == 1
    causes = result.causes()
    for cause in ("bypassed-apim", "price", "discount", "unpriced", "ptu"):
        assert causes[cause].quantize(Decimal("0.01")) == expected[cause].quantize(Decimal("0.01")), cause
    (totals,) = result.totals().values()
    assert totals["variance"].quantize(Decimal("0.000001")) == sum(expected.values(), Decimal(0)).quantize(
        Decimal("0.000001")
    )
    assert (
        totals["variance"] == totals["quantity"] + totals["price"] + totals["discount"] + totals["unpriced"]
    )
    assert totals["billed"] == sum((Decimal(r["BilledCost"]) for r in rows[:-2]), Decimal(0))
    unexplained = expected["bypassed-apim"] + expected["ptu"]  # tokens (and PTU hours) no APIM row explains
    assert totals["explained"].quantize(Decimal("0.000001")) == (totals["billed"] - unexplained).quantize(
        Decimal("0.000001")
    )
    assert totals["coverage"] == totals["explained"] / totals["billed"]
    matched = [line for line in result.lines if line.causes == ("match",)]
    assert matched, "the meters without a planted gap must match exactly"
    assert all(abs(line.variance) < Decimal("0.000001") and line.token_gap == 0 for line in matched)
    bypass = next(line for line in result.lines if "bypassed-apim" in line.causes)
    assert (bypass.model, bypass.deployment_type, bypass.meter) == ("o4-mini", "global", "output")
    assert bypass.token_gap == BYPASS_TOKENS
    tokens_row = next(line for line in result.lines if line.meter == "output" and line.model == "gpt-4o-mini")
    assert tokens_row.basis == "tokens"


@pytest.mark.parametrize("fmt", ["csv", "gzip", "parquet"])
def test_the_export_reads_the_same_from_csv_gzip_and_parquet_split_in_files(
    october_store: Any, tmp_path: Path, fmt
):
    """An export split in two files gives the same rows whether CSV, gzipped CSV or Parquet."""
    rows, _ = invoice_rows(statement(october_store).focus)
    half = len(rows) // 2
    parts = []
    for number, chunk in enumerate((rows[:half], rows[half:])):
        if fmt == "parquet":
            parts.append(costexports.write_parquet(tmp_path / f"part_{number}.parquet", chunk))
        else:
            parts.append(
                costexports.write_csv(tmp_path / f"part_{number}.csv", chunk, compress=fmt == "gzip")
            )
    read = [row for _, row in read_cost_export(parts)]
    assert len(read) == len(rows)
    money = sorted(Decimal(row["BilledCost"]) for row in read)
    assert money == sorted(Decimal(row["BilledCost"]) for row in rows)
    assert {row["x_SkuMeterName"] for row in read} == {row["x_SkuMeterName"] for row in rows}


def test_reconcile_files_writes_csv_and_manifest_beside_the_statement(october_store: Any, tmp_path: Path):
    """The CSV has one row per meter key and the manifest names the inputs, totals and causes."""
    focus = statement(october_store).focus
    rows, _ = invoice_rows(focus)
    export = costexports.write_csv(tmp_path / "export.csv.gz", rows, compress=True)
    store = FolderExportStore(tmp_path / "out")
    run = reconcile_files(
        "2026-10",
        [export],
        focus_csv=focus,
        statement="chargeback-2026-10.manifest.json",
        store=store,
        version=1,
    )
    written = list(
        csv.DictReader(io.StringIO((tmp_path / "out" / "chargeback-2026-10.reconcile.csv").read_text()))
    )
    assert len(written) == len(run.result.lines)
    manifest = json.loads((tmp_path / "out" / "chargeback-2026-10.reconcile.json").read_text())
    assert manifest["costExportFiles"][0]["name"] == "export.csv.gz"
    assert manifest["statementManifest"] == "chargeback-2026-10.manifest.json"
    assert "bypassed-apim" in manifest["causes"]
    assert render_csv(run.result) == (tmp_path / "out" / "chargeback-2026-10.reconcile.csv").read_bytes()
    again = reconcile_files(
        "2026-10",
        [export],
        focus_csv=focus,
        statement="chargeback-2026-10.manifest.json",
        store=store,
        version=1,
    )
    assert again.summary == run.summary


def test_a_missing_or_broken_export_is_a_clear_error(tmp_path: Path):
    """No file, or a file that is not an export, is one ConfigError naming the file."""
    with pytest.raises(ConfigError, match="does not exist"):
        list(read_cost_export([tmp_path / "nope.csv"]))
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ConfigError, match=r"broken\.csv\.gz"):
        list(read_cost_export([broken]))


def test_cli_reconcile_prints_the_table_and_writes_the_files(october_store: Any, tmp_path: Path, capsys):
    """`chargeback reconcile` publishes the statement, compares it and names the gaps; exit 0."""
    config = october_store.config
    october_store.close()
    out = tmp_path / "exports"
    args = ["--db", str(tmp_path / "store.duckdb"), "--out", str(out)]
    args += ["--deployments", str(config["deployments"]), "--budgets", str(config["budgets"])]
    assert main(["rollup", "--month", "2026-10", *args]) == 0
    rows, _ = invoice_rows((out / "chargeback-2026-10.focus.csv").read_bytes())
    half = len(rows) // 2
    files = [
        costexports.write_csv(tmp_path / "a.csv", rows[:half]),
        costexports.write_parquet(tmp_path / "b.parquet", rows[half:]),
    ]
    capsys.readouterr()
    code = main(["reconcile", "--month", "2026-10", "--cost-export", *map(str, files), *args])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "bypassed-apim" in printed
    assert "coverage" in printed
    assert (out / "chargeback-2026-10.reconcile.csv").exists()
    assert main(["reconcile", "--month", "2026-10", "--cost-export", str(tmp_path / "none.csv"), *args]) == 2


def test_cli_reconcile_checks_the_export_before_publishing_anything(
    october_store: Any, tmp_path: Path, capsys
):
    """A missing export, or a file without FOCUS columns, exits 2 and no statement version is published."""
    config = october_store.config
    october_store.close()
    out = tmp_path / "exports"
    args = ["--db", str(tmp_path / "store.duckdb"), "--out", str(out)]
    args += ["--deployments", str(config["deployments"]), "--budgets", str(config["budgets"])]
    not_export = tmp_path / "README.md"
    not_export.write_text("# A readme\n\nSome text, no FOCUS columns.\n", encoding="utf-8")
    assert main(["reconcile", "--month", "2026-10", "--cost-export", str(tmp_path / "nope.csv"), *args]) == 2
    assert main(["reconcile", "--month", "2026-10", "--cost-export", str(not_export), *args]) == 2
    printed = capsys.readouterr().out
    assert "does not exist" in printed
    assert "not a FOCUS cost export" in printed
    assert not out.exists() or not any(out.iterdir())


def test_sub_tolerance_gaps_keep_their_cause_so_causes_sum_to_the_variance() -> None:
    """A price gap under half a cent is named, not a match, and the causes add up to the variance exactly."""
    from chargeback.jobs.reconcile import Reconciliation

    priced = ("gpt-4o", "global", "input", "USD")
    # 0.35 of tokens Azure billed that APIM did not see, and a 0.004 list price gap on the same line.
    azure = Side(cost=Decimal("2.354"), list_cost=Decimal("2.354"), tokens=Decimal(1_175_000))
    ours = Side(cost=Decimal("2.00"), tokens=Decimal(1_000_000))
    line = compare_line(priced, azure, ours)
    assert line.causes == ("bypassed-apim",)
    small = ("gpt-4o", "global", "output", "USD")
    only_price = compare_line(
        small,
        Side(cost=Decimal("1.004"), list_cost=Decimal("1.004"), tokens=Decimal(100)),
        Side(cost=Decimal("1.00"), tokens=Decimal(100)),
    )
    assert only_price.causes == ("price",)
    exact = compare_line(
        small,
        Side(cost=Decimal(1), list_cost=Decimal(1), tokens=Decimal(100)),
        Side(cost=Decimal(1), tokens=Decimal(100)),
    )
    assert exact.causes == ("match",)
    result = Reconciliation("2026-10", (line, only_price, exact), 3, 3, 0, 0)
    causes = result.causes()
    assert causes == {"bypassed-apim": Decimal("0.35"), "price": Decimal("0.008")}
    assert sum(causes.values()) == result.totals()["USD"]["variance"]
