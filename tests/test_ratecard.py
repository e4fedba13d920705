"""`chargeback ratecard check` (jobs/ratecard.py): meters the usage table used that the card cannot price."""

from __future__ import annotations

from pathlib import Path

import pytest

from chargeback.cli import main
from tests.conftest import make_event, to_body


def test_ratecard_check_lists_meters_without_a_price(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """After ingesting an audio call on a card without audio prices, check names the model and meter."""
    card = tmp_path / "card.csv"
    card.write_text(
        "model,deployment_type,effective_from,meter,unit,price,currency\n"
        "gpt-4o-audio-preview,global,2024-12-17,input,1M tokens,2.50,USD\n"
        "gpt-4o-audio-preview,global,2024-12-17,output,1M tokens,10.00,USD\n",
        encoding="utf-8",
    )
    usage = {
        "prompt_tokens": 28,
        "completion_tokens": 653,
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 589},
    }
    events = tmp_path / "events.jsonl"
    events.write_bytes(to_body(make_event(model="gpt-4o-audio-preview-2024-12-17", usage=usage)) + b"\n")
    db = tmp_path / "s.duckdb"
    options = ["--db", str(db), "--rate-card", str(card)]
    assert main(["ingest", str(events), *options, "--deadletter", str(tmp_path / "dl")]) == 0
    capsys.readouterr()
    assert main(["ratecard", "check", *options]) == 1
    out = capsys.readouterr().out
    assert "gpt-4o-audio-preview-2024-12-17 global: no price for audio-output (1 calls, 1 unpriced)" in out
    card.write_text(
        card.read_text(encoding="utf-8")
        + "gpt-4o-audio-preview,global,2024-12-17,audio-output,1M tokens,80,USD\n",
        encoding="utf-8",
    )
    assert main(["ratecard", "check", *options]) == 1  # priced now, but the stored row is still unpriced
    assert "re-ingest" in capsys.readouterr().out


def test_ratecard_check_counts_quality_and_size_qualified_image_rows() -> None:
    """An images:<quality>:<size> row prices the images meter for the check, as the pricer matches it."""
    from datetime import UTC, datetime

    from chargeback.core.pricing import Pricer, RateCard

    when = datetime(2026, 10, 15, tzinfo=UTC)
    header = "model,deployment_type,effective_from,meter,unit,price,currency\n"
    qualified = RateCard.parse(
        (header + "dall-e-3,regional,2024-01-01,images:standard:1024x1024,1 image,0.04,USD\n").encode()
    )
    assert Pricer(qualified).missing_meters("regional", "dall-e-3", "3.0", ["images"], when) == ()
    later = RateCard.parse((header + "dall-e-3,regional,2027-01-01,images:hd:*,1 image,0.08,USD\n").encode())
    assert Pricer(later).missing_meters("regional", "dall-e-3", "", ["images"], when) == ("images",)
    other = RateCard.parse((header + "dall-e-3,regional,2024-01-01,input,1M tokens,1,USD\n").encode())
    assert Pricer(other).missing_meters("regional", "dall-e-3", "", ["images"], when) == ("images",)
