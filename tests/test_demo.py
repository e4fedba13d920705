"""The demo month: the same seed gives the same bytes; it holds every case the pipeline must handle."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

from chargeback.core.pricing import DeploymentMap, RateCard
from chargeback.demo import DEPLOYMENTS, TEAMS, Generator, last_month, month_bounds, write_config
from chargeback.settings import default_config_path


def test_the_same_seed_gives_the_same_month_byte_for_byte():
    """Two generators with one seed write identical bodies; another seed writes others."""
    first = list(Generator("2026-10", 7).events(300))
    assert first == list(Generator("2026-10", 7).events(300))
    assert first != list(Generator("2026-10", 8).events(300))


def test_the_month_holds_redeliveries_broken_events_and_every_team():
    """Redeliveries repeat a body, broken events are not JSON objects or break the contract."""
    bodies = list(Generator("2026-10", 7).events(600))
    parsed = []
    for body in bodies:
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(value, dict):
            parsed.append(value)
    assert len(bodies) > 600  # redeliveries and broken events on top of the calls
    assert len(set(bodies)) < len(bodies)  # at least one redelivery
    stamps = [
        event["timestamp"] for event in parsed if event.get("schemaVersion") == "1" and "timestamp" in event
    ]
    assert all(stamp.startswith("2026-10-") for stamp in stamps)
    assert {event.get("subscriptionId") for event in parsed} >= {team.subscription_id for team in TEAMS}
    assert any(event.get("stream") for event in parsed)
    assert any(event.get("statusCode") == 429 for event in parsed)


def test_the_demo_config_maps_its_deployments_and_reprices_mid_month(tmp_path: Path):
    """write_config's rate card parses, carries a price from the 15th, and maps the demo deployments."""
    card_path, map_path = write_config(tmp_path, "2026-10", default_config_path("rate_card.csv"))
    card = RateCard.load(card_path)
    assert card.version.startswith("demo-2026-10")
    mapped = DeploymentMap.load(map_path)
    assert {d.deployment for d in mapped.deployments} <= {d.name for d in DEPLOYMENTS}
    assert len(mapped) >= 6
    assert "2026-10-15" in card_path.read_text()


def test_last_month_and_its_bounds():
    """The default month is the one before today; bounds are its first instant and the next month's."""
    assert last_month(date(2026, 1, 5)) == "2025-12"
    start, end = month_bounds("2026-02")
    assert (start.isoformat(), end.isoformat()) == ("2026-02-01T00:00:00+00:00", "2026-03-01T00:00:00+00:00")


def test_the_month_holds_audio_image_transcription_and_speech_calls():
    """The demo month has gpt-4o-audio, gpt-image-1, dall-e-3, whisper and tts calls in the policy's
    shapes: audio tokens, image tokens, billableUnits images, seconds and characters."""
    events = []
    for body in Generator("2026-10", 7).events(3000):
        try:
            events.append(json.loads(body))
        except (ValueError, UnicodeDecodeError):
            continue  # the month's deliberately broken bodies
    by_deployment: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        if isinstance(event, dict) and event.get("statusCode") == 200:
            by_deployment.setdefault(str(event.get("deployment")), []).append(event)
    audio = by_deployment["voice-gpt4o-audio"][0]["usage"]
    assert audio["completion_tokens_details"]["audio_tokens"] > 0
    assert "image_tokens" in by_deployment["images-gpt-image"][0]["usage"]["input_tokens_details"]
    assert by_deployment["images-dalle3"][0]["billableUnits"]["images"] >= 1
    whisper = by_deployment["stt-whisper"]
    assert any("audioSeconds" in e.get("billableUnits", {}) for e in whisper)
    assert any((e.get("usage") or {}).get("type") == "duration" for e in whisper)
    assert by_deployment["tts-voice"][0]["billableUnits"]["characters"] > 0


def test_the_demo_card_prices_every_demo_meter():
    """Every non-text demo deployment is mapped, and the shipped card has a price for its meters."""
    card = RateCard.load(default_config_path("rate_card.csv"))
    models = card.models()
    assert {"gpt-4o-audio-preview", "gpt-image-1", "dall-e-3", "whisper", "tts"} <= models
