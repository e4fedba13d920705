"""The APIM policy and fragment: well-formed XML, and every C# expression compiled and run on Mono.

The expressions run against a stand-in for the gateway's ``context`` only
(``tests/policy_harness/ApimContext.cs``); JSON is the real Newtonsoft.Json. Each event they emit
is checked against the v1 JSON Schema and fed to ``chargeback.core.schema.parse_event``.
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from chargeback.core.schema import Event, ReportedUsage, event_json_schema, parse_event
from tests.policy_harness.runner import (
    CAPTURE_STREAMS_NAMED_VALUE,
    LOGGER_NAMED_VALUE,
    CompiledPolicy,
    disallowed_references,
    fragment_host_policy,
    is_expression,
    member_references,
    mono_available,
    monodis_available,
)

REPO = Path(__file__).resolve().parent.parent
POLICY = REPO / "policy" / "aoai-chargeback.policy.xml"
FRAGMENT = REPO / "policy" / "aoai-chargeback.fragment.xml"
LIMIT_BYTES = 200 * 1024
SECRETS = ("SUBKEY-never-logged", "APIKEY-never-logged", "Bearer eyJ-never-logged", "203.0.113.77")
APIM = "https://apim-chargeback.azure-api.net"

_skip_without_mono = pytest.mark.skipif(
    not mono_available() and not os.environ.get("CI"),
    reason="Mono (mcs) is not installed; scripts/install-tools installs it (required in CI)",
)


def requires_mono(test: Any) -> Any:
    """Mark a test as running C# on Mono; skipped without Mono only outside CI (CI=true must run it)."""
    return pytest.mark.mono(_skip_without_mono(test))


# --- scenarios -------------------------------------------------------------------------------


def sse(*chunks: dict[str, Any], events: list[str] | None = None) -> str:
    """An SSE body: one ``data:`` line per chunk (with ``event:`` lines when given), then [DONE]."""
    lines = []
    for index, chunk in enumerate(chunks):
        if events:
            lines.append(f"event: {events[index]}\n")
        lines.append(f"data: {json.dumps(chunk)}\n\n")
    if not events:
        lines.append("data: [DONE]\n\n")
    return "".join(lines)


CHAT_USAGE = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
RESPONSES_USAGE = {
    "input_tokens": 812,
    "input_tokens_details": {"cached_tokens": 512},
    "output_tokens": 140,
    "output_tokens_details": {"reasoning_tokens": 64},
    "total_tokens": 952,
}
IMAGE_USAGE = {
    "total_tokens": 6250,
    "input_tokens": 50,
    "output_tokens": 6200,
    "input_tokens_details": {"text_tokens": 10, "image_tokens": 40},
}
# Azure sends a first chunk with an empty model and the prompt filter results.
AZURE_FIRST_CHUNK = {
    "choices": [],
    "created": 0,
    "id": "",
    "model": "",
    "object": "",
    "prompt_filter_results": [],
}


def delta(text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }


def chat_request(stream: bool = False, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "Summarise the Q3 report."}], **extra}
    if stream:
        body["stream"] = True
    return body


def scenario(
    name: str, path: str, body: Any, response: dict[str, Any] | None, **extra: Any
) -> dict[str, Any]:
    """A call through APIM with the headers every client sends (keys included, to prove they never leak)."""
    return {
        "name": name,
        "request": {
            "method": "POST",
            "url": APIM + path,
            "headers": {
                "Content-Type": "application/json",
                "api-key": "APIKEY-never-logged",
                "Authorization": "Bearer eyJ-never-logged",
                "Ocp-Apim-Subscription-Key": "SUBKEY-never-logged",
                "X-Forwarded-For": "203.0.113.77",
                "x-chargeback-project": "apollo",
                "x-chargeback-api-key": "APIKEY-never-logged",
            },
            "body": body,
            "ip": "203.0.113.77",
        },
        "backendUrl": "https://aoai-swc.openai.azure.com" + path,
        "subscription": {"id": "team-a", "name": "Team A", "key": "SUBKEY-never-logged"},
        "response": response,
        **extra,
    }


def json_response(status: int, body: Any) -> dict[str, Any]:
    return {"status": status, "headers": {"Content-Type": "application/json"}, "body": body}


def sse_response(body: str) -> dict[str, Any]:
    return {"status": 200, "headers": {"Content-Type": "text/event-stream"}, "body": body}


CHAT = "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-10-21"
BIG_TEXT = 'Ünïcödé prose, with "quotes", tabs\t and emoji 🚀 — ' * 6000  # ~330 KB of UTF-8


def scenarios() -> list[dict[str, Any]]:
    """The calls the tests play through both the API policy and the fragment."""
    return [
        scenario(
            "chat",
            CHAT,
            chat_request(),
            json_response(
                200, {"id": "c1", "model": "gpt-4o-2024-08-06", "choices": [], "usage": CHAT_USAGE}
            ),
        ),
        scenario(
            "chat-stream-usage",
            CHAT,
            chat_request(stream=True, stream_options={"include_usage": False}),
            sse_response(
                sse(
                    AZURE_FIRST_CHUNK,
                    delta("Q3 "),
                    delta("was good."),
                    {"id": "chatcmpl-1", "model": "gpt-4o-2024-08-06", "choices": [], "usage": CHAT_USAGE},
                )
            ),
        ),
        scenario(
            "chat-stream-no-usage",
            "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-06-01",
            chat_request(stream=True),
            sse_response(sse(AZURE_FIRST_CHUNK, delta("Q3 "), delta("was good."))),
        ),
        scenario(
            "v1-chat-stream",
            "/openai/v1/chat/completions",
            chat_request(stream=True, model="gpt-4o-mini"),
            sse_response(sse(delta("Hi"), {"model": "gpt-4o-mini", "choices": [], "usage": CHAT_USAGE})),
        ),
        scenario(
            "embeddings",
            "/openai/deployments/text-embedding-3-small/embeddings?api-version=2024-10-21",
            {"input": ["quarterly revenue", "operating margin"]},
            json_response(
                200,
                {
                    "object": "list",
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.01, -0.02]}],
                    "model": "text-embedding-3-small",
                    "usage": {"prompt_tokens": 6, "total_tokens": 6},
                },
            ),
        ),
        scenario(
            "responses",
            "/openai/v1/responses",
            {"model": "gpt-4.1-mini", "input": "Plan the migration."},
            json_response(
                200,
                {
                    "id": "resp_1",
                    "object": "response",
                    "model": "gpt-4.1-mini-2025-04-14",
                    "usage": RESPONSES_USAGE,
                },
            ),
        ),
        scenario(
            "responses-stream",
            "/openai/v1/responses",
            {"model": "gpt-4.1-mini", "input": "Plan the migration.", "stream": True},
            sse_response(
                sse(
                    {
                        "type": "response.created",
                        "response": {"model": "gpt-4.1-mini-2025-04-14", "usage": None},
                    },
                    {"type": "response.output_text.delta", "delta": "Step 1"},
                    {
                        "type": "response.completed",
                        "response": {"model": "gpt-4.1-mini-2025-04-14", "usage": RESPONSES_USAGE},
                    },
                    events=["response.created", "response.output_text.delta", "response.completed"],
                )
            ),
        ),
        scenario(
            "backend-429",
            CHAT,
            chat_request(),
            json_response(429, {"error": {"code": "429", "message": "Rate limit is exceeded."}}),
        ),
        scenario(
            "stream-backend-429",
            CHAT,
            chat_request(stream=True),
            json_response(429, {"error": {"code": "429", "message": "Rate limit is exceeded."}}),
        ),
        scenario(
            "apim-rate-limit",
            CHAT,
            chat_request(),
            None,
            failAt="before-inbound",
            error={"source": "rate-limit-by-key", "reason": "RateLimitExceeded", "status": 429},
        ),
        scenario(
            "apim-token-limit-no-response",
            CHAT,
            chat_request(),
            None,
            failAt="before-inbound",
            error={"source": "azure-openai-token-limit", "reason": "TokenLimitExceeded", "status": 0},
        ),
        scenario(
            "backend-timeout",
            CHAT,
            chat_request(),
            None,
            failAt="backend",
            error={"source": "forward-request", "reason": "Timeout", "status": 0},
        ),
        scenario(
            "cache-hit",
            CHAT,
            chat_request(),
            json_response(200, {"model": "gpt-4o-2024-08-06", "usage": CHAT_USAGE}),
            cacheHit=True,
        ),
        scenario(
            "cache-hit-flagged",
            CHAT,
            chat_request(),
            json_response(200, {"model": "gpt-4o-2024-08-06", "usage": CHAT_USAGE}),
            cacheHit=True,
            variables={"chargeback-served-from-cache": "true"},
        ),
        scenario(
            "huge-stream-no-usage",
            "/openai/deployments/gpt-4o-prod/chat/completions?api-version=2024-06-01",
            chat_request(stream=True, messages=[{"role": "user", "content": BIG_TEXT[: len(BIG_TEXT) // 2]}]),
            sse_response(sse(*(delta(BIG_TEXT[i : i + 500]) for i in range(0, len(BIG_TEXT), 500)))),
        ),
        scenario(
            "dalle-images",
            "/openai/deployments/dalle3/images/generations?api-version=2024-10-21",
            {"prompt": "A watercolor fox SECRET-PROMPT", "n": 2, "size": "1024x1024", "quality": "hd"},
            json_response(
                200,
                {"created": 1, "data": [{"url": "https://x/1.png"}, {"url": "https://x/2.png"}]},
            ),
        ),
        scenario(
            "gpt-image",
            "/openai/deployments/gpt-image-1/images/generations?api-version=2025-04-01-preview",
            {"prompt": "A watercolor fox SECRET-PROMPT", "size": "1024x1536", "quality": "high"},
            json_response(200, {"created": 1, "data": [{"b64_json": "iVBORw0KGgo="}], "usage": IMAGE_USAGE}),
        ),
        scenario(
            "speech",
            "/openai/deployments/tts/audio/speech?api-version=2025-03-01-preview",
            {"model": "tts", "input": "Bonjour, SECRET-PROMPT 🚀", "voice": "alloy"},
            {"status": 200, "headers": {"Content-Type": "audio/mpeg"}, "body": "ID3 not text"},
        ),
        scenario(
            "transcription",
            "/openai/deployments/whisper/audio/transcriptions?api-version=2024-06-01",
            "--b\r\nContent-Disposition: form-data; name=file\r\n\r\nRIFF\r\n--b--",
            json_response(200, {"task": "transcribe", "duration": 12.5, "text": "SECRET-PROMPT transcript"}),
        ),
        scenario(
            "anonymous-unspecified-clock",
            CHAT,
            chat_request(),
            json_response(200, {"model": "gpt-4o-2024-08-06", "usage": CHAT_USAGE}),
            subscription=None,
            timestampKind="unspecified",
        ),
    ]


SCENARIOS = {s["name"]: s for s in scenarios()}


# --- fixtures --------------------------------------------------------------------------------


def play(variant: str, tmp_path_factory: pytest.TempPathFactory, capture_streams: str) -> dict[str, Any]:
    """Every scenario played through the API policy or an API that includes the fragment."""
    if not mono_available():
        pytest.fail("Mono (mcs, mono, Newtonsoft.Json) is required in CI: run scripts/install-tools")
    document = ET.parse(POLICY).getroot() if variant == "policy" else fragment_host_policy()
    compiled = CompiledPolicy(
        document,
        tmp_path_factory.mktemp(f"policy-{variant}"),
        {CAPTURE_STREAMS_NAMED_VALUE: capture_streams},
    )
    return {"variant": variant, "results": compiled.run(list(SCENARIOS.values()))}


@pytest.fixture(scope="module", params=["policy", "fragment"])
def played(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The shipped setting: streams are never read (aoai-chargeback-capture-streams = false)."""
    return play(request.param, tmp_path_factory, "false")


@pytest.fixture(scope="module", params=["policy", "fragment"])
def captured(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The documented opt-in: buffered capture of streams (aoai-chargeback-capture-streams = true)."""
    return play(request.param, tmp_path_factory, "true")


def only_event(played: dict[str, Any], name: str) -> tuple[dict[str, Any], Event, str]:
    """The single event a scenario emitted: as emitted, as parsed JSON and as parse_event saw it."""
    result = played["results"][name]
    assert result["expressionErrors"] == []
    assert len(result["events"]) == 1, result["events"]
    emitted = result["events"][0]
    message = emitted["message"]
    doc = json.loads(message)
    jsonschema.Draft202012Validator(
        event_json_schema(), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    ).validate(doc)
    return doc, parse_event(message), emitted["partitionKey"]


# --- static checks ---------------------------------------------------------------------------


def expressions_of(path: Path) -> list[str]:
    """Every C# expression in a policy file (attribute values and element text), XML-unescaped."""
    found: list[str] = []
    for element in ET.parse(path).getroot().iter():
        values = [*element.attrib.values(), element.text or ""]
        found.extend(v.strip() for v in values if is_expression(v))
    return found


@pytest.mark.parametrize("path", [POLICY, FRAGMENT], ids=["policy", "fragment"])
def test_policy_files_are_well_formed_xml(path: Path) -> None:
    """Each policy file parses as XML, so its expressions are escaped as APIM's XML format expects."""
    root = ET.parse(path).getroot()
    assert root.tag == ("policies" if path == POLICY else "fragment")
    assert expressions_of(path)


@pytest.mark.parametrize("path", [POLICY, FRAGMENT], ids=["policy", "fragment"])
def test_logger_is_a_named_value_and_partition_key_is_the_subscription(path: Path) -> None:
    """log-to-eventhub takes its logger from a named value and keys partitions by subscription id."""
    loggers = [e for e in ET.parse(path).getroot().iter() if e.tag == "log-to-eventhub"]
    assert loggers
    for logger in loggers:
        assert logger.attrib["logger-id"] == "{{" + LOGGER_NAMED_VALUE + "}}"
        assert "partition-id" not in logger.attrib
        assert "context.Subscription.Id" in logger.attrib["partition-key"]


def test_fragment_runs_the_same_code_as_the_policy() -> None:
    """The fragment's expressions are the policy's (no drift), bar the fragment's own branch condition."""

    def normalised(path: Path) -> set[str]:
        return {" ".join(code.split()) for code in expressions_of(path)}

    policy, fragment = normalised(POLICY), normalised(FRAGMENT)
    assert fragment - policy == {
        '@(context.LastError == null && !context.Variables.ContainsKey("chargeback-inbound"))'
    }
    assert policy - fragment == set()


def test_expressions_use_only_what_apim_allows() -> None:
    """No expression calls outside APIM's allowed subset (I/O, network, reflection, DateTime conversion)."""
    forbidden = re.compile(
        r"System\.IO\.(?!String)|File\.|HttpClient|WebRequest|Reflection|Environment\.|Thread|Task\b|"
        r"\bdynamic\b|\basync\b|\bawait\b|JsonConvert\.(?!SerializeObject|DeserializeObject)|"
        r"ToUniversalTime|ToLocalTime|SpecifyKind|\.Kind\b|Activator|Process\b"
    )
    for path in (POLICY, FRAGMENT):
        for expression in expressions_of(path):
            assert not forbidden.search(expression), expression
            assert "//" not in expression.replace("://", ""), (
                "a // comment would swallow the rest of an attribute"
            )


@pytest.mark.parametrize("path", [POLICY, FRAGMENT], ids=["policy", "fragment"])
def test_policy_never_reads_keys_or_client_addresses(path: Path) -> None:
    """No expression touches subscription keys, auth headers or the caller's IP address."""
    text = "\n".join(expressions_of(path))
    for needle in (
        "Subscription.Key",
        "PrimaryKey",
        "SecondaryKey",
        "IpAddress",
        "Authorization",
        "api-key",
        "Ocp-Apim",
    ):
        assert needle not in text


# --- running the expressions -----------------------------------------------------------------


@requires_mono
def test_every_scenario_emits_one_valid_event(played: dict[str, Any]) -> None:
    """Each call emits one event: valid v1 JSON Schema, accepted by parse_event, under 200 KB."""
    for name in SCENARIOS:
        result = played["results"][name]
        assert result["expressionErrors"] == [], name
        assert len(result["events"]) == 1, name
        message = result["events"][0]["message"]
        assert len(message.encode("utf-8")) < LIMIT_BYTES, name
        only_event(played, name)


@requires_mono
def test_non_stream_chat_passes_usage_as_is(played: dict[str, Any]) -> None:
    """A non-streamed chat carries usage verbatim, the URL's deployment, the api-version, no bodies."""
    doc, event, key = only_event(played, "chat")
    assert doc["usage"] == CHAT_USAGE
    assert (doc["deployment"], doc["model"], doc["apiVersion"]) == (
        "gpt-4o-prod",
        "gpt-4o-2024-08-06",
        "2024-10-21",
    )
    assert (doc["statusCode"], doc["stream"], doc["subscriptionId"], key) == (200, False, "team-a", "team-a")
    assert doc["requestId"] == "6f1c2e0a-3b4d-4e5f-8a9b-0c1d2e3f4a5b"
    assert doc["timestamp"] == "2025-03-14T09:26:53.5897932Z"
    assert (doc["region"], doc["backendId"], doc["apiId"]) == (
        "Sweden Central",
        "aoai-swc.openai.azure.com",
        "azure-openai",
    )
    assert "requestBody" not in doc
    assert "responseBody" not in doc
    assert "truncated" not in doc
    assert "servedFromCache" not in doc
    assert event.usage == ReportedUsage(1200, 300, 1024, 0)


@requires_mono
def test_events_never_carry_keys_auth_headers_or_client_ip(played: dict[str, Any]) -> None:
    """No emitted event contains a subscription key, api-key, bearer token or the client's IP address."""
    for name in SCENARIOS:
        for emitted in played["results"][name]["events"]:
            for secret in SECRETS:
                assert secret not in emitted["message"], (name, secret)


@requires_mono
def test_allocation_tags_come_from_x_chargeback_headers(played: dict[str, Any]) -> None:
    """x-chargeback-* headers become tags; one whose name says key/auth/token/secret is dropped."""
    doc, event, _ = only_event(played, "chat")
    assert doc["tags"] == {"project": "apollo"}
    assert event.tags == {"project": "apollo"}


@requires_mono
def test_stream_gets_include_usage_and_reports_the_usage_chunk(captured: dict[str, Any]) -> None:
    """A streamed chat is sent with include_usage=true and its final usage chunk is emitted."""
    result = captured["results"]["chat-stream-usage"]
    forwarded = json.loads(result["forwardedBody"])
    assert forwarded["stream_options"] == {"include_usage": True}
    assert forwarded["messages"] == chat_request()["messages"]
    doc, event, _ = only_event(captured, "chat-stream-usage")
    assert doc["usage"] == CHAT_USAGE
    assert doc["model"] == "gpt-4o-2024-08-06"
    assert event.stream is True
    assert "responseBody" not in doc
    assert result["clientBody"].endswith("data: [DONE]\n\n"), "the client still receives the whole stream"


@requires_mono
def test_stream_without_usage_ships_both_bodies(captured: dict[str, Any]) -> None:
    """An old api-version is left alone; its stream has no usage, so both bodies go for a recount, uncut."""
    result = captured["results"]["chat-stream-no-usage"]
    assert "stream_options" not in json.loads(result["forwardedBody"])
    doc, event, _ = only_event(captured, "chat-stream-no-usage")
    assert "usage" not in doc
    assert json.loads(doc["requestBody"]) == chat_request(stream=True)
    assert doc["responseBody"] == SCENARIOS["chat-stream-no-usage"]["response"]["body"]
    assert doc["truncated"] is False
    assert event.usage is None
    assert event.stream is True
    assert event.model == "gpt-4o-2024-08-06"


@requires_mono
def test_v1_routes_take_the_deployment_from_the_body(captured: dict[str, Any]) -> None:
    """/openai/v1 calls name the deployment by body 'model'; streams there get include_usage too."""
    result = captured["results"]["v1-chat-stream"]
    assert json.loads(result["forwardedBody"])["stream_options"] == {"include_usage": True}
    doc, _, _ = only_event(captured, "v1-chat-stream")
    assert doc["deployment"] == "gpt-4o-mini"
    assert "apiVersion" not in doc
    assert doc["usage"] == CHAT_USAGE


@requires_mono
def test_embeddings_usage(played: dict[str, Any]) -> None:
    """Embeddings report prompt_tokens and total_tokens only; the event carries them as is."""
    doc, event, _ = only_event(played, "embeddings")
    assert doc["usage"] == {"prompt_tokens": 6, "total_tokens": 6}
    assert doc["deployment"] == "text-embedding-3-small"
    assert event.usage == ReportedUsage(6, 0, 0, 0)


@requires_mono
@pytest.mark.parametrize("name", ["responses", "responses-stream"])
def test_responses_api_usage(captured: dict[str, Any], name: str) -> None:
    """Responses API usage is carried as is, from the body or (captured) the response.completed event."""
    played = captured
    doc, event, _ = only_event(played, name)
    assert doc["usage"] == RESPONSES_USAGE
    assert (doc["deployment"], doc["model"]) == ("gpt-4.1-mini", "gpt-4.1-mini-2025-04-14")
    assert event.usage == ReportedUsage(812, 140, 512, 64)
    assert event.stream is (name == "responses-stream")
    if name == "responses-stream":
        assert "stream_options" not in json.loads(played["results"][name]["forwardedBody"])


@requires_mono
@pytest.mark.parametrize(
    ("name", "section"),
    [
        ("backend-429", "outbound"),
        ("apim-rate-limit", "on-error"),
        ("apim-token-limit-no-response", "on-error"),
    ],
)
def test_throttled_calls_are_emitted_with_429(played: dict[str, Any], name: str, section: str) -> None:
    """A 429 shows, whether Azure OpenAI throttled (outbound) or APIM's own limit did (on-error)."""
    doc, event, _ = only_event(played, name)
    assert played["results"][name]["events"][0]["section"] == section
    assert (doc["statusCode"], doc["deployment"], doc["apiVersion"]) == (429, "gpt-4o-prod", "2024-10-21")
    assert "usage" not in doc
    assert "requestBody" not in doc, "not billable: no bodies shipped"
    assert event.status_code == 429


@requires_mono
def test_backend_failure_is_emitted_from_on_error(played: dict[str, Any]) -> None:
    """A call that failed at the backend (timeout) is emitted once, from on-error, as a 500."""
    doc, _, _ = only_event(played, "backend-timeout")
    assert played["results"]["backend-timeout"]["events"][0]["section"] == "on-error"
    assert doc["statusCode"] == 500


@requires_mono
def test_cache_hits_are_flagged(played: dict[str, Any]) -> None:
    """The policy flags a 2xx that skipped the backend; with the fragment, the documented variable does."""
    doc, event, _ = only_event(played, "cache-hit")
    assert doc["usage"] == CHAT_USAGE
    assert event.served_from_cache is (played["variant"] == "policy")
    flagged, flagged_event, _ = only_event(played, "cache-hit-flagged")
    assert flagged["servedFromCache"] is True
    assert flagged_event.served_from_cache is True
    _, plain, _ = only_event(played, "chat")
    assert plain.served_from_cache is False


@requires_mono
def test_bodies_are_cut_to_fit_and_flagged(captured: dict[str, Any]) -> None:
    """Bodies over the 200 KB message limit are cut (UTF-8 and JSON escaping counted) and truncated=true."""
    doc, event, _ = only_event(captured, "huge-stream-no-usage")
    message = captured["results"]["huge-stream-no-usage"]["events"][0]["message"]
    assert 150_000 < len(message.encode("utf-8")) < LIMIT_BYTES
    assert doc["truncated"] is True
    assert event.truncated is True
    full_response = SCENARIOS["huge-stream-no-usage"]["response"]["body"]
    assert full_response.startswith(doc["responseBody"])
    assert len(doc["responseBody"]) < len(full_response)
    assert doc["requestBody"]
    assert doc["requestBody"][0] == "{"


@requires_mono
def test_anonymous_calls_and_unspecified_clock(played: dict[str, Any]) -> None:
    """Without a subscription the key is 'anonymous'; a timestamp without kind is still stamped UTC."""
    doc, event, key = only_event(played, "anonymous-unspecified-clock")
    assert doc["subscriptionId"] == key == "anonymous"
    assert doc["timestamp"] == "2025-03-14T09:26:53.5897932Z"
    assert event.timestamp.utcoffset() is not None


@requires_mono
def test_response_body_stays_readable_for_the_client(played: dict[str, Any]) -> None:
    """The policy reads bodies with preserveContent, so the backend and the client still get them."""
    for name in ("chat", "embeddings", "responses"):
        result = played["results"][name]
        assert result["clientBody"] == json.dumps(SCENARIOS[name]["response"]["body"], separators=(",", ":"))
        assert result["forwardedBody"]


# --- streams stay streams ----------------------------------------------------------------------

SSE_SCENARIOS = [
    name
    for name, s in SCENARIOS.items()
    if (s["response"] or {}).get("headers", {}).get("Content-Type") == "text/event-stream"
]


@requires_mono
def test_captured_streams_emit_one_valid_event_each(captured: dict[str, Any]) -> None:
    """With the opt-in, every scenario still emits one valid event under 200 KB."""
    for name in SCENARIOS:
        result = captured["results"][name]
        assert result["expressionErrors"] == [], name
        assert len(result["events"]) == 1, name
        only_event(captured, name)


@requires_mono
@pytest.mark.parametrize("name", SSE_SCENARIOS)
def test_stream_body_is_never_read_by_default(played: dict[str, Any], name: str) -> None:
    """By default no expression reads an SSE response body, so APIM never buffers the stream."""
    result = played["results"][name]
    assert result["responseBodyReads"] == 0
    assert result["clientBody"] == SCENARIOS[name]["response"]["body"], "the client gets the stream as is"
    doc, event, _ = only_event(played, name)
    assert doc["responseCaptured"] is False
    assert doc["stream"] is True
    assert "usage" not in doc
    assert "responseBody" not in doc
    assert event.stream is True
    assert event.response_captured is False
    assert event.usage is None


@requires_mono
def test_uncaptured_stream_ships_the_request_for_the_prompt(played: dict[str, Any]) -> None:
    """An uncaptured stream carries its request body (for the prompt), cut to fit when it is huge."""
    doc, _, _ = only_event(played, "chat-stream-no-usage")
    assert json.loads(doc["requestBody"]) == chat_request(stream=True)
    assert doc["truncated"] is False
    huge, huge_event, _ = only_event(played, "huge-stream-no-usage")
    assert huge["requestBody"].startswith('{"messages"')
    assert len(huge["requestBody"]) < 190_000
    assert huge_event.response_captured is False


@requires_mono
@pytest.mark.parametrize("name", SSE_SCENARIOS)
def test_opt_in_captures_stream_bodies(captured: dict[str, Any], name: str) -> None:
    """aoai-chargeback-capture-streams=true reads the stream (buffered) and says it was captured."""
    result = captured["results"][name]
    assert result["responseBodyReads"] >= 1
    doc, event, _ = only_event(captured, name)
    assert "responseCaptured" not in doc
    assert event.response_captured is True
    assert "usage" in doc or "responseBody" in doc


@requires_mono
def test_non_streams_are_read_in_both_settings(played: dict[str, Any], captured: dict[str, Any]) -> None:
    """JSON responses (a refused stream request included) are read as before: usage is exact."""
    for results in (played, captured):
        for name in ("chat", "embeddings", "responses", "stream-backend-429"):
            assert results["results"][name]["responseBodyReads"] >= 1, name
            doc, _, _ = only_event(results, name)
            assert "responseCaptured" not in doc, name
    refused, _, _ = only_event(played, "stream-backend-429")
    assert (refused["statusCode"], refused["stream"]) == (429, True)


@requires_mono
def test_api_policy_forwards_without_buffering(played: dict[str, Any]) -> None:
    """The API policy forwards with buffer-response=false (APIM's SSE guidance); the fragment leaves it."""
    expected = "false" if played["variant"] == "policy" else None
    for name, call in SCENARIOS.items():
        if name in ("apim-rate-limit", "apim-token-limit-no-response") or call.get("cacheHit"):
            continue  # refused before the backend, or answered from the cache: nothing was forwarded
        assert played["results"][name]["bufferResponse"] == expected, name


def test_capture_setting_is_one_named_value() -> None:
    """The opt-in is one named value, read once in inbound by both files, and documented."""
    needle = "{{" + CAPTURE_STREAMS_NAMED_VALUE + "}}"
    for path in (POLICY, FRAGMENT):
        assert path.read_text(encoding="utf-8").count(needle) == 1
    readme = (REPO / "policy" / "README.md").read_text(encoding="utf-8")
    assert CAPTURE_STREAMS_NAMED_VALUE in readme
    assert 'buffer-response="false"' in readme


@requires_mono
def test_image_generation_sends_counts_never_the_prompt(played: dict[str, Any]) -> None:
    """dall-e-3 without usage: billableUnits from the request (n, size, quality) and the images
    returned; neither body (the prompt) is sent."""
    doc, event, _ = only_event(played, "dalle-images")
    assert doc["billableUnits"] == {"images": 2, "imageSize": "1024x1024", "imageQuality": "hd"}
    assert "SECRET-PROMPT" not in json.dumps(doc)
    assert (event.units.images, event.units.image_quality, event.request_body) == (2, "hd", "")


@requires_mono
def test_gpt_image_usage_is_kept_by_modality(played: dict[str, Any]) -> None:
    """gpt-image-1 reports image tokens: the usage passes as is and parses into image meters."""
    doc, event, _ = only_event(played, "gpt-image")
    assert doc["usage"] == IMAGE_USAGE
    assert event.usage == ReportedUsage(50, 6200, image_prompt_tokens=40, image_completion_tokens=6200)
    assert "SECRET-PROMPT" not in json.dumps(doc)


@requires_mono
def test_speech_sends_the_input_length_not_the_text(played: dict[str, Any]) -> None:
    """Text-to-speech: billableUnits.characters is the input's length; the input is never sent."""
    doc, event, _ = only_event(played, "speech")
    text = SCENARIOS["speech"]["request"]["body"]["input"]
    assert doc["billableUnits"] == {"characters": len(text.encode("utf-16-le")) // 2}
    assert "SECRET-PROMPT" not in json.dumps(doc)
    assert event.units.characters == 25  # .NET string length: UTF-16 code units (the emoji is 2)


@requires_mono
def test_transcription_sends_the_reported_duration_not_the_transcript(played: dict[str, Any]) -> None:
    """verbose_json transcriptions report their duration: it becomes audioSeconds; the text stays out."""
    doc, event, _ = only_event(played, "transcription")
    assert doc["billableUnits"] == {"audioSeconds": 12.5}
    assert "SECRET-PROMPT" not in json.dumps(doc)
    assert str(event.units.audio_seconds) == "12.5"


# --- APIM's allowed types and members ------------------------------------------------------------


@requires_mono
@pytest.mark.parametrize("variant", ["policy", "fragment"])
def test_expressions_use_only_the_types_and_members_apim_documents(variant: str, tmp_path: Path) -> None:
    """Every type and member the compiled expressions reference is on APIM's documented list."""
    if not monodis_available():
        pytest.fail("monodis (mono-utils) is required: run scripts/install-tools")
    document = ET.parse(POLICY).getroot() if variant == "policy" else fragment_host_policy()
    references = member_references(document, tmp_path)
    assert "Newtonsoft.Json.Linq.JObject::Parse" in references
    assert "ApimStandIn.MessageBody::As" in references
    assert disallowed_references(references) == []


@requires_mono
def test_the_allowed_types_check_refuses_what_mono_compiles_but_apim_rejects(tmp_path: Path) -> None:
    """File I/O, DateTime.ToUniversalTime, Regex.Escape, Environment, undocumented context: refused."""
    if not monodis_available():
        pytest.fail("monodis (mono-utils) is required: run scripts/install-tools")
    expressions = [
        '@(System.IO.File.Exists("/etc/passwd"))',
        "@(DateTime.UtcNow.ToUniversalTime().ToString())",
        '@(Regex.Escape("a.b"))',
        "@(Environment.MachineName)",
        "@(context.Request.Body.Peek())",
    ]
    body = "".join(
        f'<set-variable name="v{i}" value="{e.replace(chr(34), "&quot;")}" />'
        for i, e in enumerate(expressions)
    )
    document = ET.fromstring(f"<policies><inbound>{body}</inbound></policies>")
    refused = " ".join(disallowed_references(member_references(document, tmp_path)))
    for needle in (
        "System.IO.File::Exists",
        "System.DateTime::ToUniversalTime",
        "System.Text.RegularExpressions.Regex::Escape",
        "System.Environment::get_MachineName",
        "ApimStandIn.MessageBody::Peek",
    ):
        assert needle in refused
