"""Usage resolution: the binding order reported → stream-usage → recounted → estimated, and its counts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeback.core import usage as usage_mod
from chargeback.core.schema import NO_UNITS, BillableUnits, Event, ReportedUsage
from chargeback.core.tokens import CL100K_BASE, O200K_BASE, get_encoding
from chargeback.core.usage import (
    AWAITING_GATEWAY,
    NOTHING_CONSUMED,
    Usage,
    UsageSource,
    read_json,
    repair_json,
    resolve_usage,
)

O200K = get_encoding(O200K_BASE)
CL100K = get_encoding(CL100K_BASE)
RECOUNTED = UsageSource.RECOUNTED
ESTIMATED = UsageSource.ESTIMATED


def n(text: str, encoding: Any = O200K) -> int:
    """Tokens of one text, the way the tests compute expectations by hand."""
    return len(encoding.encode_ordinary(text))


def make(**fields: Any) -> Event:
    """A 2xx gpt-4o event without reported usage; JSON-able bodies are serialised."""
    for name in ("request_body", "response_body"):
        if not isinstance(fields.get(name, ""), str):
            fields[name] = json.dumps(fields[name])
    defaults: dict[str, Any] = {
        "request_id": "0b7c5a8e-5f0e-4c3e-9a77-1d2b3c4d5e6f",
        "timestamp": datetime(2026, 10, 20, 10, 15, tzinfo=UTC),
        "subscription_id": "team-a",
        "deployment": "chat",
        "status_code": 200,
        "model": "gpt-4o-2024-08-06",
    }
    return Event(**{**defaults, **fields})


def sse(*payloads: Any, done: bool = True) -> str:
    """A logged stream: one data line per payload, then [DONE]."""
    body = "".join(f"data: {json.dumps(p)}\n\n" for p in payloads)
    return body + ("data: [DONE]\n\n" if done else "")


def delta(index: int = 0, **fields: Any) -> dict[str, Any]:
    """A chat completions chunk with one choice's delta."""
    return {"object": "chat.completion.chunk", "choices": [{"index": index, "delta": fields}]}


def chat_formula(messages: list[dict[str, str]], encoding: Any = O200K) -> int:
    """The cookbook formula, written out independently of the implementation."""
    total = 3
    for message in messages:
        total += 3
        for key, value in message.items():
            total += n(value, encoding)
            if key == "name":
                total += 1
    return total


# --- 1. reported ---------------------------------------------------------------------------------


def test_event_usage_is_reported_as_is() -> None:
    """The event's own usage is taken unchanged, cached and reasoning included."""
    usage = resolve_usage(make(usage=ReportedUsage(1000, 200, 400, 50)))
    assert usage == Usage(1000, 200, 400, 50, UsageSource.REPORTED)
    assert usage.total_tokens == 1200


def test_event_usage_wins_over_bodies_truncation_and_status() -> None:
    """Reported usage is used even with bodies present, a truncated flag, or a non-2xx status."""
    event = make(
        usage=ReportedUsage(10, 2),
        request_body={"messages": [{"role": "user", "content": "x" * 50}]},
        response_body=sse(delta(content="y")),
        truncated=True,
        status_code=429,
    )
    assert resolve_usage(event) == Usage(10, 2, 0, 0, UsageSource.REPORTED)


def test_usage_in_non_streamed_chat_body_is_reported() -> None:
    """A complete JSON chat response whose usage the policy did not lift is still reported usage."""
    body = {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}}],
        "usage": {
            "prompt_tokens": 30,
            "completion_tokens": 5,
            "total_tokens": 35,
            "prompt_tokens_details": {"cached_tokens": 10},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
    assert resolve_usage(make(response_body=body)) == Usage(30, 5, 10, 0, UsageSource.REPORTED)


def test_usage_in_responses_api_body_is_reported() -> None:
    """A Responses API JSON body's input/output usage (with details) is normalised and reported."""
    body = {
        "object": "response",
        "output": [],
        "usage": {
            "input_tokens": 120,
            "input_tokens_details": {"cached_tokens": 64},
            "output_tokens": 80,
            "output_tokens_details": {"reasoning_tokens": 48},
            "total_tokens": 200,
        },
    }
    assert resolve_usage(make(response_body=body)) == Usage(120, 80, 64, 48, UsageSource.REPORTED)


def test_usage_in_embeddings_body_is_reported() -> None:
    """An embeddings body's prompt_tokens/total_tokens usage is reported with zero completion."""
    body = {"object": "list", "data": [], "usage": {"prompt_tokens": 7, "total_tokens": 7}}
    assert resolve_usage(make(response_body=body)) == Usage(7, 0, 0, 0, UsageSource.REPORTED)


def test_invalid_usage_in_body_is_ignored_and_recounted() -> None:
    """A body usage that parse_usage rejects (negative) counts as absent: the call is recounted."""
    request = {"messages": [{"role": "user", "content": "hello world"}]}
    body = {
        "choices": [{"message": {"content": "Hi"}}],
        "usage": {"prompt_tokens": -1, "completion_tokens": 2},
    }
    usage = resolve_usage(make(request_body=request, response_body=body))
    assert usage == Usage(9, n("Hi"), 0, 0, RECOUNTED)


# --- 2. stream-usage -----------------------------------------------------------------------------


def test_chat_stream_usage_chunk() -> None:
    """A chat stream's final include_usage chunk gives stream-usage, cached and reasoning included."""
    final = {
        "choices": [],
        "usage": {
            "prompt_tokens": 50,
            "completion_tokens": 20,
            "prompt_tokens_details": {"cached_tokens": 32},
            "completion_tokens_details": {"reasoning_tokens": 12},
        },
    }
    event = make(stream=True, response_body=sse(delta(content="Hi"), final))
    assert resolve_usage(event) == Usage(50, 20, 32, 12, UsageSource.STREAM_USAGE)


def test_responses_stream_completed_usage() -> None:
    """A Responses stream's response.completed usage gives stream-usage."""
    usage = {"input_tokens": 40, "output_tokens": 10, "output_tokens_details": {"reasoning_tokens": 6}}
    body = sse(
        {"type": "response.output_text.delta", "output_index": 0, "delta": "Hi"},
        {"type": "response.completed", "response": {"object": "response", "usage": usage}},
        done=False,
    )
    assert resolve_usage(make(response_body=body)) == Usage(40, 10, 0, 6, UsageSource.STREAM_USAGE)


def test_stream_usage_survives_a_damaged_line() -> None:
    """A usage chunk is the service's count: a damaged line elsewhere does not demote it."""
    body = "data: {broken\n\n" + sse({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
    assert resolve_usage(make(response_body=body)).source is UsageSource.STREAM_USAGE


def test_usage_event_spread_over_several_data_lines() -> None:
    """A usage chunk whose JSON spans several data lines is still stream-usage."""
    final = json.dumps({"choices": [], "usage": {"prompt_tokens": 8, "completion_tokens": 2}}, indent=1)
    body = (
        sse(delta(content="Hi"), done=False)
        + "".join(f"data: {line}\n" for line in final.splitlines())
        + "\n"
    )
    assert resolve_usage(make(response_body=body)) == Usage(8, 2, 0, 0, UsageSource.STREAM_USAGE)


def test_stream_usage_of_a_failed_call_is_kept() -> None:
    """A stream that reports usage is charged by it even with a non-2xx status (pricing decides)."""
    body = sse({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 0}})
    assert resolve_usage(make(status_code=500, response_body=body)) == Usage(
        5, 0, 0, 0, UsageSource.STREAM_USAGE
    )


# --- 3. recounted --------------------------------------------------------------------------------


def test_hello_world_chat_is_nine_tokens() -> None:
    """Literal: one user message "hello world" on gpt-4o is 3 + 1 ("user") + 2 + 3 = 9 prompt tokens."""
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello world"}]}
    usage = resolve_usage(make(request_body=request, response_body=sse(delta(content="hello world"))))
    assert usage == Usage(9, 2, 0, 0, RECOUNTED)


def test_chat_stream_without_usage_hand_computed() -> None:
    """Prompt by the cookbook formula (name +1, priming +3) and completion from joined deltas."""
    system, question, name = "You are a terse assistant.", "What is 2 + 2? Answer in words.", "alice"
    earlier = "Earlier answer: four."
    messages = [
        {"role": "system", "content": system},
        {"role": "user", "name": name, "content": question},
        {"role": "assistant", "content": earlier},
    ]
    expected_prompt = (
        (3 + n("system") + n(system))
        + (3 + n("user") + n(name) + 1 + n(question))
        + (3 + n("assistant") + n(earlier))
        + 3
    )
    body = sse(delta(role="assistant", content=""), delta(content="Fo"), delta(content="ur."), delta())
    usage = resolve_usage(
        make(stream=True, request_body={"messages": messages, "stream": True}, response_body=body)
    )
    assert usage == Usage(expected_prompt, n("Four."), 0, 0, RECOUNTED)
    assert usage.prompt_tokens == chat_formula(messages)


def test_stream_with_two_choices_counts_each_choice() -> None:
    """With n=2 the completion is the sum of each choice's joined text."""
    request = {"messages": [{"role": "user", "content": "Name a colour."}], "n": 2}
    body = sse(
        delta(0, content="Deep "),
        delta(1, content="Bright "),
        delta(0, content="blue"),
        delta(1, content="red"),
    )
    usage = resolve_usage(make(request_body=request, response_body=body))
    assert usage.completion_tokens == n("Deep blue") + n("Bright red")
    assert usage.source is RECOUNTED


def test_cl100k_model_is_recounted_with_cl100k() -> None:
    """A gpt-35-turbo deployment is counted with cl100k_base."""
    text = "Ünïcödé and 日本語 differ between encodings 🎉"
    request = {"messages": [{"role": "user", "content": text}]}
    usage = resolve_usage(
        make(model="gpt-35-turbo", request_body=request, response_body=sse(delta(content=text)))
    )
    assert usage == Usage(3 + n("user", CL100K) + n(text, CL100K) + 3, n(text, CL100K), 0, 0, RECOUNTED)
    assert n(text, CL100K) != n(text)


def test_model_falls_back_to_request_then_deployment() -> None:
    """Without an event model the request's model picks the encoding, else the deployment name."""
    messages = [{"role": "user", "content": "Ünïcödé and 日本語 🎉"}]
    request: dict[str, Any] = {"model": "gpt-4", "messages": messages}
    from_request = resolve_usage(make(model="", request_body=request, response_body=sse()))
    assert from_request.prompt_tokens == chat_formula(messages, CL100K)
    del request["model"]
    from_deployment = resolve_usage(
        make(model="", deployment="gpt-35-turbo", request_body=request, response_body=sse())
    )
    assert from_deployment.prompt_tokens == chat_formula(messages, CL100K)


def test_content_as_text_parts_counts_each_part() -> None:
    """Content given as a list of text parts counts the text of every part."""
    parts = [{"type": "text", "text": "First part."}, {"type": "text", "text": " Second part."}]
    request = {"messages": [{"role": "user", "content": parts}]}
    usage = resolve_usage(make(request_body=request, response_body=sse(delta(content="ok"))))
    assert usage == Usage(3 + n("user") + n("First part.") + n(" Second part.") + 3, n("ok"), 0, 0, RECOUNTED)


def test_non_streamed_body_without_usage_counts_choices() -> None:
    """A JSON response with no usage is recounted from each choice's message content."""
    messages = [{"role": "user", "content": "Say hi twice"}]
    request = {"messages": messages, "n": 2}
    body = {
        "choices": [
            {"index": i, "message": {"role": "assistant", "content": t}}
            for i, t in enumerate(["Hi", "Hello"])
        ]
    }
    usage = resolve_usage(make(request_body=request, response_body=body))
    assert usage == Usage(chat_formula(messages), n("Hi") + n("Hello"), 0, 0, RECOUNTED)


def test_special_token_text_in_messages_is_counted_as_text() -> None:
    """Message text spelling <|endoftext|> is counted as ordinary text and never raises."""
    request = {"messages": [{"role": "user", "content": "<|endoftext|><|endofprompt|>"}]}
    usage = resolve_usage(make(request_body=request, response_body=sse(delta(content="<|endoftext|>"))))
    assert usage == Usage(chat_formula(request["messages"]), 7, 0, 0, RECOUNTED)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("The food was delicious.", n("The food was delicious.", CL100K)),
        (["first text", "second 日本語"], n("first text", CL100K) + n("second 日本語", CL100K)),
        ([1, 2, 3, 4], 4),
        ([[1, 2, 3], [4, 5]], 5),
    ],
    ids=["string", "strings", "token-array", "token-arrays"],
)
def test_embeddings_request(value: Any, expected: int) -> None:
    """Embeddings input (string, strings, token arrays) counts its tokens; completion is zero."""
    event = make(
        model="text-embedding-3-small", request_body={"input": value, "model": "text-embedding-3-small"}
    )
    assert resolve_usage(event) == Usage(expected, 0, 0, 0, RECOUNTED)


def test_embeddings_recognised_by_operation_without_model() -> None:
    """A bare ``input`` string is embeddings when the operation says so, whatever the model name."""
    event = make(
        model="", deployment="embed", operation_id="embeddings_create", request_body={"input": "hello world"}
    )
    assert resolve_usage(event) == Usage(2, 0, 0, 0, RECOUNTED)


def test_legacy_completions_prompt() -> None:
    """Legacy completions count their prompt strings and the choices' text, flagged estimated:
    a non-chat request with ``prompt`` is never an exact recount."""
    event = make(
        model="gpt-35-turbo-instruct",
        request_body={"prompt": ["Once upon", "a time"], "max_tokens": 5},
        response_body={"choices": [{"index": 0, "text": " there was"}, {"index": 1, "text": " in"}]},
    )
    expected_prompt = n("Once upon", CL100K) + n("a time", CL100K)
    assert resolve_usage(event) == Usage(
        expected_prompt, n(" there was", CL100K) + n(" in", CL100K), 0, 0, ESTIMATED
    )


def test_responses_request_recounted_with_chat_formula() -> None:
    """Responses API instructions + input string count as a system and a user message."""
    instructions, text = "Answer briefly.", "Why is the sky blue?"
    body = sse(
        {"type": "response.output_text.delta", "output_index": 0, "content_index": 0, "delta": "Rayleigh"},
        {
            "type": "response.output_text.delta",
            "output_index": 0,
            "content_index": 0,
            "delta": " scattering.",
        },
        done=False,
    )
    request = {"model": "gpt-4.1", "instructions": instructions, "input": text, "stream": True}
    usage = resolve_usage(make(model="", request_body=request, response_body=body))
    expected = (3 + n("system") + n(instructions)) + (3 + n("user") + n(text)) + 3
    assert usage == Usage(expected, n("Rayleigh scattering."), 0, 0, RECOUNTED)


def test_responses_input_items_with_text_parts() -> None:
    """Responses message items with input_text parts count like chat messages; output items too."""
    items = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi there"}]},
        {"role": "assistant", "content": "Hello!"},
    ]
    body = {
        "object": "response",
        "output": [{"type": "message", "content": [{"type": "output_text", "text": "How can I help?"}]}],
    }
    usage = resolve_usage(make(request_body={"model": "gpt-4o", "input": items}, response_body=body))
    expected = (3 + n("user") + n("Hi there")) + (3 + n("assistant") + n("Hello!")) + 3
    assert usage == Usage(expected, n("How can I help?"), 0, 0, RECOUNTED)


# --- 4. estimated --------------------------------------------------------------------------------


def test_tools_in_request_make_an_estimate_that_counts_tool_calls() -> None:
    """Tool definitions are outside the formula: estimated, with streamed tool calls counted."""
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    messages = [{"role": "user", "content": "Weather in Paris?"}]
    call = {"index": 0, "id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    body = sse(
        delta(tool_calls=[call]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": '{"city":'}}]),
        delta(tool_calls=[{"index": 0, "function": {"arguments": ' "Paris"}'}}]),
    )
    usage = resolve_usage(make(request_body={"messages": messages, "tools": tools}, response_body=body))
    assert usage.source is ESTIMATED
    assert usage.completion_tokens == n("get_weather") + n('{"city": "Paris"}')
    assert usage.prompt_tokens > chat_formula(messages)


@pytest.mark.parametrize("key", ["functions", "tool_choice"])
def test_functions_or_tool_choice_make_an_estimate(key: str) -> None:
    """Legacy ``functions`` or a ``tool_choice`` alone also make the count an estimate."""
    request = {"messages": [{"role": "user", "content": "hi"}], key: "auto" if key == "tool_choice" else []}
    assert (
        resolve_usage(make(request_body=request, response_body=sse(delta(content="hi")))).source is ESTIMATED
    )


def test_image_parts_make_an_estimate_of_the_text() -> None:
    """An image part is not covered: estimated, counting the text parts only (no base64 counted)."""
    parts = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 4000}},
    ]
    request = {"messages": [{"role": "user", "content": parts}]}
    usage = resolve_usage(make(request_body=request, response_body=sse(delta(content="A cat."))))
    assert usage == Usage(3 + n("user") + n("What is in this picture?") + 3, n("A cat."), 0, 0, ESTIMATED)


def test_truncated_flag_makes_an_estimate() -> None:
    """A body the policy cut is an estimate even when what remains parses."""
    request = {"messages": [{"role": "user", "content": "hello world"}]}
    usage = resolve_usage(make(truncated=True, request_body=request, response_body=sse(delta(content="Hi"))))
    assert usage == Usage(9, n("Hi"), 0, 0, ESTIMATED)


def test_cut_request_json_is_read_up_to_the_cut() -> None:
    """A request cut mid-string is repaired and counted as far as it goes, as an estimate."""
    full = json.dumps({"messages": [{"role": "user", "content": "hello world, how are you today?"}]})
    cut = full[: full.index("how")]
    usage = resolve_usage(make(request_body=cut, response_body=sse(delta(content="Fine"))))
    assert usage == Usage(3 + n("user") + n("hello world, ") + 3, n("Fine"), 0, 0, ESTIMATED)


def test_cut_json_response_is_read_up_to_the_cut() -> None:
    """A non-streamed response cut before its usage is recounted from what remains, as an estimate."""
    request = {"messages": [{"role": "user", "content": "hello world"}]}
    body = json.dumps({"choices": [{"index": 0, "message": {"content": "A long answer"}}], "usage": {}})
    usage = resolve_usage(make(request_body=request, response_body=body[: body.index("answer") + 3]))
    assert usage == Usage(9, n("A long ans"), 0, 0, ESTIMATED)


def test_damaged_stream_makes_an_estimate() -> None:
    """A malformed data line makes the recount an estimate; readable deltas still count."""
    request = {"messages": [{"role": "user", "content": "hello world"}]}
    body = sse(delta(content="Hello"), done=False) + "data: {not json\n\n" + sse(delta(content=" again"))
    assert resolve_usage(make(request_body=request, response_body=body)) == Usage(
        9, n("Hello again"), 0, 0, ESTIMATED
    )


def test_reasoning_model_recount_is_an_estimate() -> None:
    """Reasoning models bill hidden reasoning tokens a recount cannot see: estimated."""
    request = {"messages": [{"role": "user", "content": "hello world"}]}
    usage = resolve_usage(make(model="o4-mini", request_body=request, response_body=sse(delta(content="Hi"))))
    assert usage == Usage(9, n("Hi"), 0, 0, ESTIMATED)


def test_missing_response_body_is_an_estimate() -> None:
    """Without a response body the completion is unknown: prompt counted, estimated."""
    request = {"messages": [{"role": "user", "content": "hello world"}]}
    assert resolve_usage(make(request_body=request)) == Usage(9, 0, 0, 0, ESTIMATED)


def test_missing_request_body_counts_the_completion_only() -> None:
    """Without a request body there is no prompt text: prompt zero, completion counted, estimated."""
    assert resolve_usage(make(response_body=sse(delta(content="hello world")))) == Usage(
        0, 2, 0, 0, ESTIMATED
    )


def test_no_bodies_at_all_is_zero_estimate() -> None:
    """A 2xx event with neither usage nor bodies cannot be counted: zeros, estimated."""
    assert resolve_usage(make()) == Usage(0, 0, 0, 0, ESTIMATED)


@pytest.mark.parametrize(
    ("request_body", "response_body"),
    [
        ("not json at all", "also not json"),
        ("\x00\x01\x02", ""),
        ("[1, 2, 3]", "42"),
        ('{"unexpected": 5}', "{}"),
        ("[" * 100_000, "{" * 100_000),
    ],
    ids=["text", "binary", "not-objects", "unknown-shape", "deep-nesting"],
)
def test_garbage_bodies_give_a_zero_estimate(request_body: str, response_body: str) -> None:
    """Bodies with no recognisable text give zero tokens, estimated, without raising."""
    assert resolve_usage(make(request_body=request_body, response_body=response_body)) == Usage(
        0, 0, 0, 0, ESTIMATED
    )


def test_unknown_request_shape_counts_its_strings_as_an_estimate() -> None:
    """A JSON request of no known API shape is estimated from all its string values."""
    usage = resolve_usage(make(request_body={"question": "hello world"}, response_body="{}"))
    assert usage == Usage(2, 0, 0, 0, ESTIMATED)


# --- 5. non-2xx ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 404, 429, 500, 503, 199, 300])
def test_non_2xx_without_usage_consumed_nothing(status: int) -> None:
    """A failed call with no reported usage is zero tokens, estimated, whatever its bodies hold."""
    request = {"messages": [{"role": "user", "content": "hello world"}]}
    body = {"error": {"code": "429", "message": "Rate limit is exceeded."}}
    assert (
        resolve_usage(make(status_code=status, request_body=request, response_body=body)) == NOTHING_CONSUMED
    )


# --- tolerant JSON ---------------------------------------------------------------------------------


def test_read_json_says_whether_it_was_exact() -> None:
    """read_json reports strict parses as exact and repaired ones as not."""
    assert read_json('{"a": [1, "x"]}') == ({"a": [1, "x"]}, True)
    assert read_json('{"a": [1, "x') == ({"a": [1, "x"]}, False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"messages": [{"role": "user", "content": "hel',
            {"messages": [{"role": "user", "content": "hel"}]},
        ),
        ('{"a": "line\\nbreak \\u00e9 \\u00', {"a": "line\nbreak é "}),
        ('{"a": "ends with \\', {"a": "ends with "}),
        ('{"a": 1, "b": tru', {"a": 1}),
        ('{"a": [1, 2.5, -3e2, null, false, {"b": "c"}', {"a": [1, 2.5, -300.0, None, False, {"b": "c"}]}),
        ('{"key_only', {}),
        ("[1, [2, [3", [1, [2, [3]]]),
        ("garbage", None),
        ("", None),
    ],
)
def test_repair_json(text: str, expected: Any) -> None:
    """Cut JSON is closed at the cut, keeping cut strings and dropping cut literals and lone keys."""
    assert repair_json(text) == expected


def test_repair_json_deep_nesting_does_not_recurse() -> None:
    """A million open brackets are repaired iteratively, without RecursionError."""
    assert isinstance(repair_json("[" * 1_000_000), list)


# --- never raises --------------------------------------------------------------------------------

_KEYS = st.sampled_from(
    [
        *("messages", "role", "content", "name", "input", "prompt", "instructions", "tools", "type", "text"),
        *("choices", "delta", "message", "output", "usage", "index", "tool_calls", "function", "arguments"),
        *("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens", "image_url", "model"),
    ]
)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**20)
    | st.floats()
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(_KEYS | st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=25,
)


@st.composite
def bodies(draw: st.DrawFn) -> str:
    """Arbitrary text, JSON of API-like shapes (possibly cut), or SSE made of such JSON."""
    kind = draw(st.sampled_from(["text", "json", "cut-json", "sse"]))
    if kind == "text":
        return draw(st.text(max_size=200))
    text = json.dumps(draw(_JSON))
    if kind == "cut-json":
        return text[: draw(st.integers(min_value=0, max_value=len(text)))]
    if kind == "sse":
        chunks = draw(st.lists(_JSON.map(json.dumps) | st.text(max_size=20), max_size=5))
        return "".join(f"data: {c}\n\n" for c in chunks) + draw(
            st.sampled_from(["", "data: [DONE]\n\n", "data: {"])
        )
    return text


@settings(max_examples=500, deadline=None)
@given(
    request_body=bodies(),
    response_body=bodies(),
    status=st.integers(min_value=100, max_value=599),
    truncated=st.booleans(),
    model=st.sampled_from(["", "gpt-4o", "gpt-4", "text-embedding-3-small", "o3-mini", "weird"]),
)
def test_resolve_usage_never_raises(
    request_body: str, response_body: str, status: int, truncated: bool, model: str
) -> None:
    """Any bodies, status, flag and model resolve to non-negative counts without raising."""
    usage = resolve_usage(
        make(
            request_body=request_body,
            response_body=response_body,
            status_code=status,
            truncated=truncated,
            model=model,
        )
    )
    counts = (usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.reasoning_tokens)
    assert all(type(count) is int and count >= 0 for count in counts)
    assert usage.cached_tokens <= usage.prompt_tokens
    assert usage.reasoning_tokens <= usage.completion_tokens
    assert usage.source in UsageSource


def test_uncaptured_stream_counts_the_prompt_and_waits_for_the_gateway():
    """responseCaptured=false: the prompt is recounted, the completion is unknown, the row is flagged."""
    messages = [{"role": "user", "content": "Summarise the Q3 report."}]
    event = make(request_body={"messages": messages, "stream": True}, stream=True, response_captured=False)
    usage = resolve_usage(event)
    assert usage == Usage(chat_formula(messages), 0, 0, 0, ESTIMATED, AWAITING_GATEWAY)
    assert usage.unknown.split(",") == ["completion-tokens", "cached-tokens", "reasoning-tokens"]


def test_uncaptured_stream_that_failed_or_hit_the_cache_does_not_wait():
    """A refused stream consumed nothing and a cache hit never reaches Azure OpenAI: nothing to wait for."""
    body = {"messages": [{"role": "user", "content": "Hi"}], "stream": True}
    refused = make(request_body=body, stream=True, response_captured=False, status_code=429)
    assert resolve_usage(refused) == NOTHING_CONSUMED
    cached = resolve_usage(
        make(request_body=body, stream=True, response_captured=False, served_from_cache=True)
    )
    assert cached.unknown == ""


def test_captured_responses_know_everything_they_report():
    """Reported usage leaves UsageUnknown empty."""
    usage = resolve_usage(make(usage=ReportedUsage(10, 5, 2, 1)))
    assert (usage.source, usage.unknown) == (UsageSource.REPORTED, "")


# --- Honest recount and non-token calls ---------------------------------------------------------


def test_predicted_outputs_are_estimated_never_recounted() -> None:
    """A chat request with ``prediction`` bills rejected prediction tokens the response never shows."""
    request = {
        "messages": [{"role": "user", "content": "Rename x to y in this code"}],
        "prediction": {"type": "content", "content": "def f(x):\n    return x\n"},
    }
    response = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "def f(y):\n    return y\n"}}]
    }
    assert resolve_usage(make(request_body=request, response_body=response)).source is ESTIMATED


@pytest.mark.parametrize(
    "request_body",
    [
        {"messages": [{"role": "user", "content": "Say hi"}], "modalities": ["text", "audio"]},
        {"messages": [{"role": "user", "content": "Say hi"}], "audio": {"voice": "alloy", "format": "wav"}},
        {
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}}],
                }
            ]
        },
        {
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}
            ]
        },
        {"input": "Hi", "prompt": {"id": "pmpt_123", "version": "2"}},
        {"prompt": "Once upon a time", "max_tokens": 5},
    ],
    ids=[
        "audio-modality",
        "audio-output",
        "audio-input",
        "image-input",
        "stored-prompt",
        "legacy-completion",
    ],
)
def test_request_features_the_formula_cannot_count_are_estimated(request_body: dict[str, Any]) -> None:
    """Audio or image input or output, a stored prompt, a non-chat request with ``prompt``: estimated."""
    response = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi"}, "text": "Hi"}]}
    assert resolve_usage(make(request_body=request_body, response_body=response)).source is ESTIMATED


@pytest.mark.parametrize(
    ("request_body", "response_body"),
    [
        ({"prompt": "A watercolor fox", "n": 1, "size": "1024x1024", "quality": "hd"}, ""),
        ({"prompt": "A watercolor fox", "n": 1}, {"created": 1, "data": [{"url": "https://x/y.png"}]}),
    ],
    ids=["request-keys", "response-data"],
)
def test_image_generation_request_is_never_read_as_a_legacy_completion(
    request_body: dict[str, Any], response_body: Any
) -> None:
    """An images request's prompt is not counted as completion prompt tokens: zero tokens, estimated."""
    event = make(
        model="dall-e-3", deployment="images", request_body=request_body, response_body=response_body
    )
    assert resolve_usage(event) == Usage(0, 0, 0, 0, ESTIMATED)


def test_image_count_from_billable_units_makes_an_exact_row() -> None:
    """dall-e-3 with billableUnits.images = 2 and no usage: 2 images, recounted (the gateway counted them)."""
    event = make(
        model="dall-e-3",
        deployment="images",
        request_body={"prompt": "A fox", "n": 2, "size": "1024x1024"},
        units=BillableUnits(images=2, image_size="1024x1024", image_quality="standard"),
    )
    usage = resolve_usage(event)
    assert (usage.images, usage.prompt_tokens, usage.source) == (2, 0, RECOUNTED)


def test_images_are_not_counted_when_the_service_reported_image_tokens() -> None:
    """gpt-image-1 reports image output tokens: its images are billed as tokens, not per image too."""
    event = make(
        model="gpt-image-1",
        usage=ReportedUsage(50, 4160, image_prompt_tokens=40, image_completion_tokens=4160),
        units=BillableUnits(images=1, image_size="1024x1024", image_quality="high"),
    )
    usage = resolve_usage(event)
    assert (usage.images, usage.image_completion_tokens, usage.source) == (0, 4160, UsageSource.REPORTED)


def test_text_to_speech_characters_come_from_billable_units() -> None:
    """A tts request (input + voice) is not embeddings: zero tokens, the policy's character count."""
    event = make(
        model="tts",
        deployment="speech",
        request_body={"model": "tts", "input": "Hello there", "voice": "alloy"},
        units=BillableUnits(characters=11),
    )
    usage = resolve_usage(event)
    assert (usage.prompt_tokens, usage.characters, usage.source) == (0, 11, RECOUNTED)


def test_reported_duration_wins_over_the_policy_seconds() -> None:
    """A transcription's usage.type duration is the service's count; billableUnits seconds are a fallback."""
    reported = make(
        model="whisper",
        usage=ReportedUsage(0, 0, audio_seconds=Decimal(3)),
        units=BillableUnits(audio_seconds=Decimal(4)),
    )
    fallback = make(model="whisper", units=BillableUnits(audio_seconds=Decimal("4.5")))
    assert resolve_usage(reported).audio_seconds == Decimal(3)
    assert (resolve_usage(fallback).audio_seconds, resolve_usage(fallback).source) == (
        Decimal("4.5"),
        RECOUNTED,
    )


def test_a_request_the_policy_cut_is_charged_the_models_prompt_limit() -> None:
    """Under-charge guard: an old-api-version stream whose 190 KB request was cut is billed 128k, not 25k."""
    full = json.dumps({"messages": [{"role": "user", "content": "word " * 60_000}], "stream": True})
    cut = full[:190_000]
    usage = resolve_usage(make(truncated=True, request_body=cut, response_body=sse(delta(content="Fine"))))
    assert usage == Usage(128_000, n("Fine"), 0, 0, ESTIMATED)


def test_a_response_the_policy_cut_is_charged_the_requests_output_cap() -> None:
    """A cut stream is billed the request's max_tokens (else the model's output limit), never less."""
    request = {"messages": [{"role": "user", "content": "hello world"}], "max_tokens": 900}
    cut = sse(delta(content="Hello " * 50), done=False)[:-30]
    usage = resolve_usage(make(truncated=True, request_body=request, response_body=cut))
    assert (usage.prompt_tokens, usage.completion_tokens, usage.source) == (9, 900, ESTIMATED)
    uncapped = {"messages": [{"role": "user", "content": "hello world"}]}
    usage = resolve_usage(make(truncated=True, request_body=uncapped, response_body=cut, model="o4-mini"))
    assert usage.completion_tokens == 100_000


def test_a_cut_without_the_policys_flag_is_only_read_up_to_the_cut() -> None:
    """The bound needs the policy's word (truncated): malformed JSON alone is recounted as far as it goes."""
    full = json.dumps({"messages": [{"role": "user", "content": "hello world, how are you today?"}]})
    usage = resolve_usage(
        make(request_body=full[: full.index("how")], response_body=sse(delta(content="Fine")))
    )
    assert usage.prompt_tokens < 100


@pytest.mark.parametrize("status", [200, 299, 429])
@pytest.mark.parametrize(
    "units",
    [
        NO_UNITS,
        BillableUnits(images=2, image_size="1024x1024", image_quality="hd"),
        BillableUnits(characters=5579),
        BillableUnits(audio_seconds=Decimal("12.7")),
    ],
)
@pytest.mark.parametrize(
    "reported",
    [
        ReportedUsage(100, 20, 10, 5),
        ReportedUsage(41, 4160, image_prompt_tokens=0, image_completion_tokens=4160),
        ReportedUsage(508, 377, audio_prompt_tokens=120, audio_completion_tokens=300),
        ReportedUsage(0, 0, audio_seconds=Decimal(11)),
    ],
)
def test_reported_usage_takes_units_as_with_units_adds_them(
    reported: ReportedUsage, units: BillableUnits, status: int
) -> None:
    """Reported counts with billableUnits resolve to what _with_units makes of them, units on 2xx only."""
    event = Event(
        request_id="r", timestamp=datetime(2026, 10, 1, tzinfo=UTC), subscription_id="s",
        deployment="d", status_code=status, usage=reported, units=units,
    )  # fmt: skip
    plain = usage_mod._from_reported(reported, UsageSource.REPORTED)
    expected = usage_mod._with_units(event, plain) if units is not NO_UNITS and status < 300 else plain
    assert resolve_usage(event) == expected
