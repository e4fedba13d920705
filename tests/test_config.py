"""The config CSVs' one set of rules, the same for the rate card, the deployments map and budgets."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargeback.core.config import (
    ConfigErrors,
    config_records,
    declared_version,
    decode_config,
    parse_currency,
    parse_decimal,
    read_config_bytes,
    read_table,
)
from chargeback.core.pricing import DeploymentMap, RateCard
from chargeback.errors import ConfigError
from chargeback.jobs.budgets import parse_budgets


def table(text: str) -> tuple[list[tuple[int, dict[str, str]]], list[str]]:
    """read_table's rows and the problems noted, for columns a, b (c optional)."""
    errors = ConfigErrors("<t>")
    rows = list(read_table(text, ("a", "b"), ("c",), errors))
    return rows, errors.messages


def test_comments_blank_lines_and_spaces_are_not_data():
    """# lines and blank lines are skipped; cells are stripped; line numbers are the file's."""
    rows, problems = table("# version: v1\n\n a , b \n# note\n1, 2\n")
    assert rows == [(5, {"a": "1", "b": "2"})]
    assert problems == []
    assert list(config_records("x\n\n#y\nz")) == [(1, ["x"]), (4, ["z"])]


def test_the_header_needs_every_column_and_no_unknown_blank_or_repeated_one():
    """Each header fault is named on line 1, and no row is read under a bad header."""
    rows, problems = table("a,a,,d\n1,2,3,4\n")
    assert rows == []
    assert problems == [
        "line 1: column 3 of the header is blank",
        "line 1: unknown column 'd'; expected a, b",
        "line 1: column 'a' appears 2 times",
        "line 1: missing column(s) b",
    ]


def test_a_record_of_the_wrong_width_is_named_and_skipped():
    """A row with more or fewer fields than the header is one problem; the others are read."""
    rows, problems = table("a,b\n1\n1,2\n1,2,3\n")
    assert rows == [(3, {"a": "1", "b": "2"})]
    assert problems == ["line 2: 1 fields; the header has 2", "line 4: 3 fields; the header has 2"]


def test_numbers_and_currencies_follow_one_rule():
    """Decimals are finite and non-negative; currencies are three letters, upper-cased."""
    errors = ConfigErrors("<t>")
    assert parse_decimal("1.50", "price", 2, errors) == parse_decimal("1.5", "price", 2, errors)
    assert parse_decimal("-1", "price", 3, errors) is None
    assert parse_decimal("NaN", "price", 4, errors) is None
    assert parse_decimal("x", "price", 5, errors) is None
    assert parse_currency("usd", 6, errors) == "USD"
    assert parse_currency("", 7, errors, default="EUR") == "EUR"
    assert parse_currency("US", 8, errors) is None
    assert [message.split(":")[0] for message in errors.messages] == ["line 3", "line 4", "line 5", "line 8"]


def test_one_config_error_lists_the_first_twenty_problems():
    """Every problem of a file is in one ConfigError, capped at 20 lines with a count of the rest."""
    errors = ConfigErrors("budgets.csv")
    for line in range(1, 26):
        errors.add(line, "bad")
    with pytest.raises(ConfigError, match=r"budgets.csv: 25 error\(s\)") as caught:
        errors.raise_if_any()
    assert "line 20: bad" in str(caught.value)
    assert "line 21: bad" not in str(caught.value)
    assert "... and 5 more" in str(caught.value)


def test_files_are_utf8_with_an_optional_bom_and_unreadable_ones_are_named(tmp_path: Path):
    """A BOM is dropped, other encodings and missing files are ConfigErrors naming the file."""
    assert decode_config("\ufeffa,b\n".encode(), "f") == "a,b\n"
    with pytest.raises(ConfigError, match="not UTF-8"):
        decode_config(b"\xff\xfe", "f")
    with pytest.raises(ConfigError, match="cannot read"):
        read_config_bytes(tmp_path / "missing.csv", "rate card")
    assert declared_version("# version: 2026-11 list\na,b\n# version: later\n") == "2026-11 list"


def test_the_three_config_files_refuse_the_same_fault_the_same_way():
    """A repeated header column is refused by the rate card, the deployments map and the budgets alike."""
    rate_card = "model,model,deployment_type,effective_from,meter,unit,price,currency\n"
    deployments = "deployment,deployment,model,deployment_type\n"
    budgets = "subscription_id,subscription_id,cost_center,owner,monthly_budget,currency\n"
    for parse, text in (
        (lambda t: RateCard.parse(t.encode(), "<t>"), rate_card),
        (lambda t: DeploymentMap.parse(t.encode(), "<t>"), deployments),
        (lambda t: parse_budgets(t, "<t>"), budgets),
    ):
        with pytest.raises(
            ConfigError, match=r"line 1: column '(model|deployment|subscription_id)' appears 2 times"
        ):
            parse(text)
