"""``chargeback demo``: a realistic synthetic month, end to end on the embedded default.

Generates the Event Hub bodies an APIM policy would have sent for a month of seven teams (chat,
streams with and without usage, Responses API, embeddings, reasoning, batch, data zone, semantic
cache hits, throttling, an unpriced model, redeliveries and some broken events), writes a demo rate
card with a mid-month price change, ingests it all through the same pipeline as the Function and
prints what finance would see. The same seed gives the same month.
"""

from __future__ import annotations

import calendar
import dataclasses
import json
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from chargeback import wiring
from chargeback.console import ingest_files, print_alerts, print_statement, print_summary
from chargeback.settings import Settings

WORDS = [
    "invoice",
    "customer",
    "order",
    "refund",
    "policy",
    "contract",
    "quarter",
    "revenue",
    "forecast",
    "summary",
    "meeting",
    "deployment",
    "latency",
    "incident",
    "ticket",
    "escalation",
    "account",
    "renewal",
    "pipeline",
    "report",
    "draft",
    "email",
    "translate",
    "explain",
    "classify",
    "extract",
    "table",
    "schema",
    "query",
    "dashboard",
    "risk",
    "compliance",
    "audit",
    "onboarding",
    "benefits",
    "holiday",
    "payroll",
    "candidate",
    "interview",
    "résumé",
    "données",
    "数据",
    "分析",
    "✓",
    "🚀",
]


@dataclasses.dataclass(frozen=True)
class Team:
    """A demo APIM subscription and how it uses the service."""

    subscription_id: str
    name: str
    weight: float
    deployments: tuple[tuple[str, float], ...]


@dataclasses.dataclass(frozen=True)
class DemoDeployment:
    """A demo Azure OpenAI deployment."""

    name: str
    model: str  # priced model
    response_model: str  # what the service reports, with its version
    deployment_type: str
    kind: str  # chat, reasoning, embeddings, responses, audio, image, dalle, transcription, speech


DEPLOYMENTS = (
    DemoDeployment("chat-gpt4o", "gpt-4o", "gpt-4o-2024-11-20", "global", "chat"),
    DemoDeployment("chat-gpt4o-eu", "gpt-4o", "gpt-4o-2024-11-20", "datazone", "chat"),
    DemoDeployment("chat-gpt4o-mini", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "global", "chat"),
    DemoDeployment("chat-gpt41-mini", "gpt-4.1-mini", "gpt-4.1-mini-2025-04-14", "global", "responses"),
    DemoDeployment("batch-gpt4o-mini", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "global-batch", "chat"),
    DemoDeployment("reasoning-o4-mini", "o4-mini", "o4-mini-2025-04-16", "global", "reasoning"),
    DemoDeployment("embed-small", "text-embedding-3-small", "text-embedding-3-small", "global", "embeddings"),
    DemoDeployment("lab-router", "model-router", "model-router-2025-05-19", "global", "chat"),
    DemoDeployment(
        "voice-gpt4o-audio", "gpt-4o-audio-preview", "gpt-4o-audio-preview-2024-12-17", "global", "audio"
    ),
    DemoDeployment("images-gpt-image", "gpt-image-1", "gpt-image-1", "global", "image"),
    DemoDeployment("images-dalle3", "dall-e-3", "dall-e-3", "regional", "dalle"),
    DemoDeployment("stt-whisper", "whisper", "whisper", "regional", "transcription"),
    DemoDeployment("tts-voice", "tts", "tts", "regional", "speech"),
)
BY_NAME = {d.name: d for d in DEPLOYMENTS}
NON_TEXT = frozenset({"audio", "image", "dalle", "transcription", "speech"})

TEAMS = (
    Team(
        "support-bot",
        "Customer Support Bot",
        0.32,
        (("chat-gpt4o-mini", 0.6), ("chat-gpt4o", 0.3), ("embed-small", 0.1)),
    ),
    Team("marketing", "Marketing Content", 0.14, (("chat-gpt4o", 0.7), ("chat-gpt41-mini", 0.3))),
    Team(
        "data-science",
        "Data Science Lab",
        0.16,
        (("reasoning-o4-mini", 0.4), ("batch-gpt4o-mini", 0.35), ("chat-gpt4o", 0.2), ("lab-router", 0.05)),
    ),
    Team("search", "Enterprise Search", 0.22, (("embed-small", 0.55), ("chat-gpt41-mini", 0.45))),
    Team("finance-ai", "Finance Assistant", 0.10, (("chat-gpt4o-eu", 0.8), ("reasoning-o4-mini", 0.2))),
    Team("hr-helpdesk", "HR Helpdesk", 0.06, (("chat-gpt4o-eu", 0.5), ("chat-gpt4o-mini", 0.5))),
    Team(
        "media-studio",
        "Media and Contact Center",
        0.06,
        (
            ("voice-gpt4o-audio", 0.3),
            ("images-gpt-image", 0.2),
            ("images-dalle3", 0.15),
            ("stt-whisper", 0.2),
            ("tts-voice", 0.15),
        ),
    ),
)

BAD_BODIES = (
    b'{"schemaVersion":"1","requestId":"cut-off',
    b"\xff\xfe not utf-8",
    b"[1, 2, 3]",
    b'{"schemaVersion":"2","requestId":"r-v2","timestamp":"2026-01-01T00:00:00Z"}',
)


def last_month(today: date) -> str:
    """The month before ``today`` as YYYY-MM."""
    first = today.replace(day=1) - timedelta(days=1)
    return f"{first:%Y-%m}"


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """First instant of the month and of the next one, UTC."""
    year, number = (int(part) for part in month.split("-"))
    start = datetime(year, number, 1, tzinfo=UTC)
    days = calendar.monthrange(year, number)[1]
    return start, start + timedelta(days=days)


class Generator:
    """Draws the demo month's events from a seeded random source."""

    def __init__(self, month: str, seed: int) -> None:
        self.rng = random.Random(seed)
        self.start, self.end = month_bounds(month)
        # What APIM's diagnostic setting logs for the streams (ApiManagementGatewayLlmLog / ...Logs).
        self.llm_log: list[dict[str, Any]] = []
        self.gateway_log: list[dict[str, Any]] = []

    def text(self, low: int, high: int) -> str:
        return " ".join(self.rng.choice(WORDS) for _ in range(self.rng.randint(low, high)))

    def timestamp(self) -> datetime:
        """Business hours and weekdays are busier, as real traffic is."""
        span = (self.end - self.start).total_seconds()
        while True:
            moment = self.start + timedelta(seconds=self.rng.random() * span)
            busy = moment.weekday() < 5 and 7 <= moment.hour < 19
            if busy or self.rng.random() < 0.25:
                return moment

    def base(self, team: Team, deployment: DemoDeployment, status: int = 200) -> dict[str, Any]:
        stamp = self.timestamp()
        return {
            "schemaVersion": "1",
            "requestId": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "timestamp": stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond:06d}0Z",
            "subscriptionId": team.subscription_id,
            "subscriptionName": team.name,
            "productId": "aoai-standard",
            "apiId": "azure-openai",
            "deployment": deployment.name,
            "model": deployment.response_model if status < 400 else None,
            "apiVersion": "2024-10-21",
            "region": self.rng.choice(("Sweden Central", "East US 2")),
            "backendId": "aoai-primary",
            "statusCode": status,
            "stream": False,
            "usage": None,
            "tags": {"project": self.rng.choice(("alpha", "beta", "gamma"))},
        }

    def chat_usage(self, reasoning: bool) -> dict[str, Any]:
        prompt = self.rng.randint(200, 6000)
        completion = self.rng.randint(50, 1500)
        cached = (prompt // 1024) * 1024 if prompt >= 1024 and self.rng.random() < 0.35 else 0
        thinking = min(completion - 10, self.rng.randint(100, 1200)) if reasoning else 0
        completion = completion + thinking
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": max(thinking, 0)},
        }

    def sse(self, model: str, pieces: list[str], usage: dict[str, Any] | None) -> str:
        lines = []
        for piece in pieces:
            chunk = {
                "object": "chat.completion.chunk",
                "model": model,
                "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
            }
            lines.append("data: " + json.dumps(chunk, ensure_ascii=False))
        if usage is not None:
            lines.append(
                "data: "
                + json.dumps(
                    {"object": "chat.completion.chunk", "model": model, "choices": [], "usage": usage}
                )
            )
        lines.append("data: [DONE]")
        return "\n\n".join(lines) + "\n\n"

    def event(self, team: Team) -> dict[str, Any]:
        names, weights = zip(*team.deployments, strict=True)
        deployment = BY_NAME[self.rng.choices(names, weights)[0]]
        roll = self.rng.random()
        if roll < 0.02:
            return self.base(team, deployment, status=429)
        body = self.base(team, deployment)
        if deployment.kind == "embeddings":
            tokens = self.rng.randint(8, 2000)
            body["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
            return body
        if deployment.kind in NON_TEXT:
            return self.non_text(body, deployment.kind)
        if deployment.kind == "responses":
            usage = self.chat_usage(reasoning=False)
            body["usage"] = {
                "input_tokens": usage["prompt_tokens"],
                "output_tokens": usage["completion_tokens"],
                "total_tokens": usage["total_tokens"],
                "input_tokens_details": {"cached_tokens": usage["prompt_tokens_details"]["cached_tokens"]},
                "output_tokens_details": {"reasoning_tokens": 0},
            }
            return body
        if deployment.kind == "chat" and roll < 0.30 and deployment.deployment_type != "global-batch":
            return self.streamed(body, deployment, roll)
        body["usage"] = self.chat_usage(reasoning=deployment.kind == "reasoning")
        if roll > 0.97:
            body["servedFromCache"] = True
        return body

    def non_text(self, body: dict[str, Any], kind: str) -> dict[str, Any]:
        """Audio, image, transcription and speech calls, as the policy emits them (documented shapes)."""
        rng = self.rng
        if kind == "audio":
            audio_in, audio_out = rng.choice((0, rng.randint(50, 900))), rng.randint(100, 1500)
            text_in, text_out = rng.randint(20, 600), rng.randint(10, 200)
            body["usage"] = {
                "prompt_tokens": text_in + audio_in,
                "completion_tokens": text_out + audio_out,
                "total_tokens": text_in + audio_in + text_out + audio_out,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": audio_in},
                "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": audio_out},
            }
        elif kind == "image":
            quality, output = rng.choice((("low", 272), ("medium", 1056), ("high", 4160)))
            text, image = rng.randint(8, 120), rng.choice((0, 0, 323))
            body["usage"] = {
                "total_tokens": text + image + output,
                "input_tokens": text + image,
                "output_tokens": output,
                "input_tokens_details": {"text_tokens": text, "image_tokens": image},
            }
            body["billableUnits"] = {"images": 1, "imageSize": "1024x1024", "imageQuality": quality}
        elif kind == "dalle":
            quality = rng.choice(("standard", "standard", "hd"))
            size = rng.choice(("1024x1024", "1024x1024", "1792x1024"))
            body["billableUnits"] = {
                "images": rng.choice((1, 1, 2)),
                "imageSize": size,
                "imageQuality": quality,
            }
        elif kind == "transcription":
            seconds = round(rng.uniform(4, 600), 1)
            if rng.random() < 0.5:
                body["usage"] = {"type": "duration", "seconds": round(seconds)}
            else:
                body["billableUnits"] = {"audioSeconds": seconds}  # verbose_json's duration
        else:
            body["billableUnits"] = {"characters": rng.randint(40, 4000)}
        return body

    def streamed(self, body: dict[str, Any], deployment: DemoDeployment, roll: float) -> dict[str, Any]:
        """A stream as the shipped policy emits it: let through unread (APIM does not buffer it).

        The event carries the request (for the prompt estimate) and ``responseCaptured: false``;
        APIM's LLM log records the call's counts after the stream ends, and its gateway log the
        subscription. One stream in thirty never gets a log row (a diagnostic-setting gap), so it
        keeps its flagged estimate and the statement shows the cost resting on such estimates.
        """
        body["stream"] = True
        body["model"] = None  # the response (and its model) is never read
        body["responseCaptured"] = False
        messages = [
            {
                "role": "system",
                "content": "You are a helpful assistant for " + body["subscriptionName"] + ".",
            },
            {"role": "user", "content": self.text(20, 120)},
        ]
        request = {"messages": messages, "stream": True, "temperature": 0.2}
        body["requestBody"] = json.dumps(request, ensure_ascii=False)
        if self.rng.random() < 1 / 30:
            return body
        usage = self.chat_usage(reasoning=False)
        logged = datetime.fromisoformat(body["timestamp"][:26] + "+00:00")
        self.llm_log.append(
            {
                "TimeGenerated": logged,
                "CorrelationId": body["requestId"],
                "RequestId": "chatcmpl-" + body["requestId"][:8],
                "OperationName": "ChatCompletions_Create",
                "DeploymentName": deployment.name,
                "ModelName": deployment.response_model,
                "IsStreamCompletion": True,
                "PromptTokens": usage["prompt_tokens"],
                "CompletionTokens": usage["completion_tokens"],
                "TotalTokens": usage["total_tokens"],
                "SequenceNumber": 0,
            }
        )
        self.gateway_log.append(
            {
                "TimeGenerated": logged,
                "CorrelationId": body["requestId"],
                "ApimSubscriptionId": body["subscriptionId"],
                "ApiId": body["apiId"],
                "ResponseCode": 200,
                "IsRequestSuccess": True,
            }
        )
        return body

    def events(self, count: int) -> Iterator[bytes]:
        """The month's bodies, in time order, with ~1 % redeliveries and a few broken events."""
        weights = [team.weight for team in TEAMS]
        bodies = [self.event(self.rng.choices(TEAMS, weights)[0]) for _ in range(count)]
        bodies.sort(key=lambda b: b["timestamp"])
        broken = self.rng.sample(range(count), k=min(count, 12))
        for index, body in enumerate(bodies):
            data = json.dumps(body, ensure_ascii=False).encode("utf-8")
            yield data
            if self.rng.random() < 0.01:
                yield data  # Event Hub redelivery: must not be charged twice
            if index in broken:
                yield self.broken(body)

    def broken(self, body: dict[str, Any]) -> bytes:
        """An event that must be dead-lettered with a reason."""
        choice = self.rng.randrange(len(BAD_BODIES) + 3)
        if choice < len(BAD_BODIES):
            return BAD_BODIES[choice]
        bad = dict(body, requestId=str(uuid.UUID(int=self.rng.getrandbits(128), version=4)))
        if choice == len(BAD_BODIES):
            bad.pop("subscriptionId")
        elif choice == len(BAD_BODIES) + 1:
            bad["usage"] = {"prompt_tokens": 10, "completion_tokens": -3}
        else:
            bad["usage"] = {
                "prompt_tokens": 10,
                "completion_tokens": 3,
                "prompt_tokens_details": {"cached_tokens": 11},
            }
        return json.dumps(bad).encode("utf-8")


def write_config(workdir: Path, month: str, base_card: Path) -> tuple[Path, Path]:
    """The demo's deployments map, and a rate card with a price change on the 15th of the month."""
    deployments = workdir / "deployments.csv"
    lines = ["deployment,model,deployment_type"]
    lines += [f"{d.name},{d.model},{d.deployment_type}" for d in DEPLOYMENTS if d.name != "lab-router"]
    deployments.write_text("\n".join(lines) + "\n", encoding="utf-8")
    card = workdir / "rate_card.csv"
    base = [
        line
        for line in base_card.read_text(encoding="utf-8").splitlines()
        if not line.startswith("# version")
    ]
    base.insert(0, f"# version: demo-{month}")
    base.append(f"# demo only: gpt-4o-mini global repriced from {month}-15 to show effective dating")
    base += [
        f"gpt-4o-mini,global,{month}-15,{meter},1M tokens,{price},USD"
        for meter, price in (("input", "0.12"), ("cached-input", "0.06"), ("output", "0.48"))
    ]
    card.write_text("\n".join(line for line in base if line.strip()) + "\n", encoding="utf-8")
    return card, deployments


def run(settings: Settings, console: Any, *, month: str | None, events: int, seed: int) -> int:
    """Generate, ingest and report a month; returns the exit code."""
    month = month or last_month(datetime.now(UTC).date())
    month_bounds(month)  # validates the format early
    workdir = Path(settings.chargeback_duckdb_path).parent / "demo"
    workdir.mkdir(parents=True, exist_ok=True)
    card, deployments = write_config(workdir, month, settings.rate_card)
    settings = dataclasses.replace(
        settings,
        rate_card_path=settings.rate_card_path or str(card),
        deployments_path=settings.deployments_path or str(deployments),
    )
    path = workdir / f"events-{month}.jsonl"
    generator = Generator(month, seed)
    with path.open("wb") as handle:
        for body in generator.events(events):
            handle.write(body + b"\n")
    console.print(f"[bold]Demo month {month}[/bold]: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    summary = ingest_files([path], settings, batch_size=2000, progress=console.is_terminal)
    print_summary(summary, console)

    from chargeback.edges.store import DuckDBStore

    store = wiring.build_writer(settings)
    if not isinstance(store, DuckDBStore):
        return 0
    late_usage(settings, store, generator, month, console)

    # The daily budget timer, replayed over the month (06:00 UTC each day, then at the close):
    # forecast alerts fire early, actual ones when crossed, each only once.
    # Budget actions ride along, as the timers take them, on a local stand-in for the APIM instance
    # (a JSON file): a team over its `throttle` budget is throttled once, and the first check of the
    # next month lifts it; both are rows in the alerts table.
    from chargeback.edges.apim import LocalGateway
    from chargeback.jobs.enforce import run_enforcement
    from chargeback.jobs.rollup import month_of

    gateway = LocalGateway(workdir / f"apim-{month}.json")
    runner, sink = wiring.build_runner(settings), wiring.build_alert_sink(settings)
    options = wiring.enforcement_options(settings)
    start, end = month_bounds(month)
    raised: list[Any] = []
    actions: list[Any] = []
    day = start + timedelta(hours=6)
    while day < end:
        check, rows = wiring.budget_check(settings, month, day)
        raised.extend(rows)
        actions.extend(run_enforcement(check, runner, sink, gateway, options, now=day).recorded)
        day += timedelta(days=1)
    raised.extend(wiring.budget_check(settings, month, end)[1])
    rollover = end + timedelta(hours=1)
    next_check = wiring.budget_check(settings, month_of(rollover), rollover)[0]
    actions.extend(run_enforcement(next_check, runner, sink, gateway, options, now=rollover).recorded)
    publication = wiring.monthly_statement(settings, month)
    print_statement(settings, publication, console)
    print_alerts(raised, console)
    console.print(f"[bold]{len(actions)} budget action(s)[/bold] (local APIM stand-in {gateway.path}):")
    for row in actions:
        console.print(f"  {row['AlertKind']}: {row['Message']}", markup=False)
    console.print(f"Store: {settings.chargeback_duckdb_path}   Dead-letters: {settings.deadletter_path}")
    invoice_and_report(settings, month, publication.version, workdir, console)
    return 0


def late_usage(settings: Settings, store: Any, generator: Generator, month: str, console: Any) -> None:
    """APIM's logs for the month's streams land in the store; the gateway_usage timer, replayed daily.

    In Azure the timer runs every 5 minutes over the last GATEWAY_LOG_WAIT_MINUTES; here it runs
    once per simulated day over that day (and a margin), which supersedes the same rows.
    """
    from chargeback.edges.gatewaylog import append_rows, create_gateway_tables

    create_gateway_tables(store.connection)
    append_rows(store.connection, "ApiManagementGatewayLlmLog", generator.llm_log)
    append_rows(store.connection, "ApiManagementGatewayLogs", generator.gateway_log)
    daily = dataclasses.replace(settings, gateway_log_wait_minutes=26 * 60)
    start, end = month_bounds(month)
    superseded = 0
    day = start + timedelta(days=1)
    while day <= end + timedelta(days=1):
        result = wiring.gateway_usage(daily, day)
        superseded += result.superseded if result is not None else 0
        day += timedelta(days=1)
    console.print(
        f"Streams (not buffered by APIM): {superseded} charged from APIM's LLM log "
        f"(UsageSource gateway-log, UsageRevision 1); their logged usage replaces the estimates "
        f"counted above, so the statement's team totals below differ from the ingest table"
    )


def invoice_and_report(settings: Settings, month: str, version: int, workdir: Path, console: Any) -> None:
    """The month's Azure invoice (synthetic, with calls that bypassed APIM), reconciled; then the report."""
    from chargeback.console import print_reconciliation
    from chargeback.jobs.sample_invoice import sample_invoice, write_export
    from chargeback.jobs.statement import file_name

    focus = wiring.build_export_store(settings).read(file_name(month, version, "focus.csv")) or b""
    invoice = sample_invoice(focus, month)
    files = write_export(workdir / f"cost-export-{month}", invoice.rows)
    console.print(
        f"\n[bold]Azure cost export[/bold] (synthetic, FOCUS): {files[0].parent}: "
        f"{invoice.bypass_tokens:,} gpt-4o global tokens that bypassed APIM "
        f"({invoice.bypass_cost:.2f}), Azure's list price where our demo rate card cut it "
        f"mid-month ({invoice.price_gap:.2f}) and the model our rate card does not price, billed at "
        f"a made-up price ({invoice.unpriced_cost:.2f})",
        soft_wrap=True,
    )
    print_reconciliation(wiring.monthly_reconciliation(settings, month, files), console)
    report = wiring.monthly_report(settings, month)
    console.print(
        f"\n[bold]Report[/bold] (open it in a browser, works offline): {report.location}", soft_wrap=True
    )
    # The demo priced with its own rate card and deployments map (no PTU deployment); the other
    # commands default to the shipped examples, whose map has an idle PTU deployment: a rollup of
    # this month without --deployments would publish a new version with that PTU line.
    console.print(
        f"\nThis month was priced with the demo's own config: pass --deployments "
        f"{settings.deployments_path} to rollup, report and reconcile (and --rate-card "
        f"{settings.rate_card_path} to ingest and replay) to repeat its numbers, e.g. "
        f"chargeback rollup --month {month} --deployments {settings.deployments_path}",
        soft_wrap=True,
        markup=False,
    )
