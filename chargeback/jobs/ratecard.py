"""``chargeback ratecard check``: the models and meters in the usage table that the rate card cannot price.

One KQL query (``meter_usage.kql``, on Log Analytics or the local store) lists each model, version
and deployment type with its quantity per meter; the pricer says, for each meter with a quantity,
whether a price is in force at the last call. A meter that had a quantity and has no price is what
made (or would make) rows ``unpriced``: add its row to the rate card, then replay or re-ingest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from chargeback.core.pricing import Pricer
from chargeback.edges.kqlrun import KqlRunner
from chargeback.jobs.rollup import to_decimal, to_int, to_text

QUERY = "meter_usage"
EARLIEST = datetime(2020, 1, 1, tzinfo=UTC)
# Query column -> meter name (DESIGN's binding names).
METER_COLUMNS = {
    "Input": "input",
    "CachedInput": "cached-input",
    "Output": "output",
    "AudioInput": "audio-input",
    "CachedAudioInput": "cached-audio-input",
    "AudioOutput": "audio-output",
    "ImageInput": "image-input",
    "CachedImageInput": "cached-image-input",
    "ImageOutput": "image-output",
    "Images": "images",
    "AudioSeconds": "audio-seconds",
    "Characters": "characters",
}


@dataclass(frozen=True, slots=True)
class MissingPrice:
    """A model (version) and deployment type whose meters had quantities the card cannot price."""

    model: str
    model_version: str
    deployment_type: str
    meters: tuple[str, ...]
    calls: int
    unpriced_calls: int
    last_seen: datetime | None


def missing_prices(runner: KqlRunner, pricer: Pricer, now: datetime) -> list[MissingPrice]:
    """Every (model, version, type) in the table with a meter the card has no price for."""
    params = {"Since": EARLIEST, "Until": now + timedelta(days=1)}
    missing: list[MissingPrice] = []
    for record in runner.records(QUERY, params, window=(EARLIEST, now + timedelta(days=1))):
        model, version, deployment_type = (
            to_text(record["Model"]),
            to_text(record["ModelVersion"]),
            to_text(record["DeploymentType"]),
        )
        used = [meter for column, meter in METER_COLUMNS.items() if to_decimal(record[column]) > 0]
        last = record["LastSeen"]
        when = _aware(last) if isinstance(last, datetime) else now
        meters = pricer.missing_meters(deployment_type, model, version, used, when) if used else ()
        if meters or to_int(record["Unpriced"]):
            missing.append(
                MissingPrice(
                    model,
                    version,
                    deployment_type,
                    meters or ("(none now: the card prices them; re-ingest the unpriced rows)",),
                    to_int(record["Calls"]),
                    to_int(record["Unpriced"]),
                    when,
                )
            )
    return missing


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)
