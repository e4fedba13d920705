"""Streamed bodies: SSE framing, chat/completions/Responses chunks, usage chunks and damage."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from chargeback.core.sse import (
    SseEvent,
    StreamContent,
    _load,
    _parse_events,
    _parse_repeating,
    _split_literals,
    _split_plain,
    find_usage,
    iter_events,
    looks_like_sse,
    parse_stream,
    read_stream,
)


def sse(*payloads: Any, done: bool = True, eol: str = "\n") -> str:
    """A stream as Azure OpenAI sends it: one ``data:`` line per payload, blank-line separated."""
    lines = [f"data: {p if isinstance(p, str) else json.dumps(p)}{eol}{eol}" for p in payloads]
    return "".join(lines) + (f"data: [DONE]{eol}{eol}" if done else "")


def chunk(index: int = 0, **delta: Any) -> dict[str, Any]:
    """A chat completions chunk with one choice's delta."""
    return {
        "object": "chat.completion.chunk",
        "model": "gpt-4o-2024-08-06",
        "choices": [{"index": index, "delta": delta}],
    }


def test_data_lines_with_and_without_space() -> None:
    """``data:x`` and ``data: x`` both give the value x (one leading space is dropped)."""
    assert [e.data for e in iter_events("data:a\n\ndata: b\n\ndata:  c\n\n")] == ["a", "b", " c"]


def test_crlf_and_cr_line_endings() -> None:
    """CRLF and bare CR end lines just like LF."""
    assert [e.data for e in iter_events("data: a\r\n\r\ndata: b\r\rdata: c\n\n")] == ["a", "b", "c"]


def test_event_names_comments_and_other_fields() -> None:
    """``event:`` names the next event; comments, ``id:`` and ``retry:`` are skipped."""
    body = ": keep-alive\nid: 7\nretry: 100\nevent: response.created\ndata: {}\n\ndata: {}\n\n"
    assert list(iter_events(body)) == [SseEvent("response.created", "{}"), SseEvent("", "{}")]


def test_multi_line_data_is_joined_with_newlines() -> None:
    """Several ``data:`` lines in one event join with a newline, per the SSE spec."""
    assert [e.data for e in iter_events('data: {"a":\ndata: 1}\n\n')] == ['{"a":\n1}']


def test_last_event_without_trailing_blank_line_is_kept() -> None:
    """A final event with no closing blank line is still yielded."""
    assert [e.data for e in iter_events("data: a\n\ndata: b")] == ["a", "b"]


def test_chat_content_deltas_are_joined() -> None:
    """Content deltas of one choice concatenate into its text; the model is noted."""
    content = parse_stream(
        sse(chunk(role="assistant", content=""), chunk(content="Hel"), chunk(content="lo!"))
    )
    assert content.texts() == ["Hello!"]
    assert content.choice_text(0) == "Hello!"
    assert content.done
    assert not content.damaged
    assert content.usage is None
    assert content.model == "gpt-4o-2024-08-06"


def test_every_choice_is_kept_by_index() -> None:
    """With n=2, interleaved deltas are assembled per choice index."""
    body = sse(
        chunk(0, content="Hi "), chunk(1, content="Yo "), chunk(1, content="there"), chunk(0, content="you")
    )
    content = parse_stream(body)
    assert content.choice_text(0) == "Hi you"
    assert content.choice_text(1) == "Yo there"
    assert sorted(content.texts()) == ["Hi you", "Yo there"]


def test_several_choices_in_one_chunk() -> None:
    """A chunk carrying deltas for two choices feeds both."""
    payload = {"choices": [{"index": 0, "delta": {"content": "a"}}, {"index": 1, "delta": {"content": "b"}}]}
    content = parse_stream(sse(payload))
    assert (content.choice_text(0), content.choice_text(1)) == ("a", "b")


def test_tool_call_names_and_arguments() -> None:
    """Tool-call names and argument fragments are assembled per tool call."""
    first = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ""},
    }
    second = {
        "index": 1,
        "id": "call_2",
        "type": "function",
        "function": {"name": "get_time", "arguments": ""},
    }
    body = sse(
        chunk(tool_calls=[first]),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"city": '}}]),
        chunk(tool_calls=[{"index": 0, "function": {"arguments": '"Paris"}'}}]),
        chunk(tool_calls=[second]),
        chunk(tool_calls=[{"index": 1, "function": {"arguments": "{}"}}]),
    )
    content = parse_stream(body)
    assert content.parts[(0, "tool0.name")] == ["get_weather"]
    assert "".join(content.parts[(0, "tool0.arguments")]) == '{"city": "Paris"}'
    assert sorted(content.texts()) == sorted(["get_weather", '{"city": "Paris"}', "get_time", "{}"])
    assert content.choice_text(0) == ""


def test_legacy_function_call_and_refusal() -> None:
    """Legacy ``delta.function_call`` and ``delta.refusal`` are both completion text."""
    body = sse(
        chunk(function_call={"name": "lookup", "arguments": '{"q":'}),
        chunk(function_call={"arguments": ' "x"}'}),
        chunk(1, refusal="I can't help with that."),
    )
    content = parse_stream(body)
    assert sorted(content.texts()) == sorted(["lookup", '{"q": "x"}', "I can't help with that."])
    assert content.choice_text(1) == "I can't help with that."


def test_usage_chunk_is_captured() -> None:
    """The include_usage chunk (empty choices, usage object) is kept as the stream's usage."""
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    body = sse(chunk(content="Hi"), {"choices": [], "usage": usage})
    assert parse_stream(body).usage == usage


def test_null_usage_on_ordinary_chunks_is_not_usage() -> None:
    """Chunks with ``"usage": null`` and Azure's prompt_filter_results chunk carry no usage."""
    filters = {"choices": [], "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}]}
    body = sse(filters, {**chunk(content="Hi"), "usage": None})
    content = parse_stream(body)
    assert content.usage is None
    assert content.texts() == ["Hi"]


def test_find_usage_reads_only_the_usage_line() -> None:
    """find_usage returns the final usage object and ignores null usage and usage-like content text."""
    usage = {"prompt_tokens": 12, "completion_tokens": 3}
    tricky = chunk(content='he wrote "usage": {"prompt_tokens": 1}')
    body = sse({**chunk(content="Hi"), "usage": None}, tricky, {"choices": [], "usage": usage})
    assert find_usage(body) == usage
    assert find_usage(sse(tricky, chunk(content="x"))) is None


def test_find_usage_of_a_responses_stream() -> None:
    """find_usage finds response.completed usage and skips response.created's null usage."""
    usage = {"input_tokens": 4, "output_tokens": 2}
    body = sse(
        {"type": "response.created", "response": {"usage": None}},
        {"type": "response.completed", "response": {"usage": usage}},
        done=False,
    )
    assert find_usage(body) == usage


def test_find_usage_with_cr_line_endings() -> None:
    """Bodies with CR-only line breaks still yield their usage."""
    usage = {"prompt_tokens": 1, "completion_tokens": 1}
    body = sse(chunk(content="a"), {"choices": [], "usage": usage}).replace("\n", "\r")
    assert find_usage(body) == usage


def test_legacy_completions_text() -> None:
    """Legacy completions stream ``choices[].text``."""
    body = sse({"choices": [{"index": 0, "text": "Once"}]}, {"choices": [{"index": 0, "text": " upon"}]})
    assert parse_stream(body).texts() == ["Once upon"]


def test_responses_api_stream() -> None:
    """Responses events: text, function arguments and reasoning deltas, and response.completed usage."""
    usage = {"input_tokens": 20, "output_tokens": 9, "output_tokens_details": {"reasoning_tokens": 4}}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"model": "o4-mini", "usage": None}},
        {
            "type": "response.reasoning_summary_text.delta",
            "output_index": 0,
            "summary_index": 0,
            "delta": "Think",
        },
        {"type": "response.output_text.delta", "output_index": 1, "content_index": 0, "delta": "Hello"},
        {"type": "response.output_text.delta", "output_index": 1, "content_index": 0, "delta": " there"},
        {"type": "response.output_text.done", "output_index": 1, "content_index": 0, "text": "Hello there"},
        {
            "type": "response.output_item.added",
            "output_index": 2,
            "item": {"type": "function_call", "name": "f"},
        },
        {"type": "response.function_call_arguments.delta", "output_index": 2, "delta": '{"a":1}'},
        {"type": "response.completed", "response": {"model": "o4-mini", "usage": usage}},
    ]
    body = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    content = parse_stream(body)
    assert content.choice_text(1) == "Hello there"
    assert sorted(content.texts()) == sorted(["Think", "Hello there", "f", '{"a":1}'])
    assert content.usage == usage
    assert content.model == "o4-mini"
    assert not content.damaged


def test_responses_event_name_from_event_line() -> None:
    """When the payload lacks ``type``, the ``event:`` line names it."""
    body = 'event: response.output_text.delta\ndata: {"output_index": 0, "delta": "x"}\n\n'
    assert parse_stream(body).texts() == ["x"]


def test_incomplete_response_still_reports_usage() -> None:
    """``response.incomplete`` (max_output_tokens reached) carries usage like response.completed."""
    usage = {"input_tokens": 5, "output_tokens": 16}
    body = sse({"type": "response.incomplete", "response": {"usage": usage}}, done=False)
    assert parse_stream(body).usage == usage


def test_audio_output_is_media() -> None:
    """Audio deltas (chat or Responses) are flagged as output a text recount cannot cover."""
    assert parse_stream(sse(chunk(audio={"data": "AAAA", "transcript": "hi"}))).has_media
    assert parse_stream(sse({"type": "response.audio.delta", "delta": "AAAA"})).has_media
    assert not parse_stream(sse(chunk(content="hi"))).has_media


def test_malformed_line_marks_damage_and_keeps_the_rest() -> None:
    """A data line that is not JSON marks the stream damaged; other chunks are still read."""
    content = parse_stream(sse(chunk(content="a"), '{"choices": [', chunk(content="b")))
    assert content.damaged
    assert content.texts() == ["ab"]


def test_non_object_payload_marks_damage() -> None:
    """A data payload that is JSON but not an object (a number, a list) is damage."""
    assert parse_stream(sse(42)).damaged
    assert parse_stream(sse([1, 2])).damaged


def test_cut_last_line_marks_damage() -> None:
    """A stream cut in the middle of its last line is damaged; one merely lacking a newline is not."""
    whole = sse(chunk(content="a"), done=False)
    assert parse_stream(whole + 'data: {"choices": [{"index": 0, "delta": {"cont').damaged
    assert not parse_stream(whole + f"data: {json.dumps(chunk(content='b'))}").damaged


def test_events_logged_without_blank_lines() -> None:
    """Consecutive data lines with no blank line between them are still read one by one."""
    body = "\n".join(f"data: {json.dumps(chunk(content=t))}" for t in ("a", "b", "c")) + "\ndata: [DONE]\n"
    content = parse_stream(body)
    assert content.texts() == ["abc"]
    assert not content.damaged
    assert content.done


def test_wrong_types_inside_chunks_are_ignored() -> None:
    """Unexpected types (choices a dict, index a string, content a number) are skipped quietly."""
    body = sse(
        {"choices": {"0": 1}}, {"choices": [{"index": "1", "delta": {"content": 5}}, "x", {"delta": []}]}
    )
    content = parse_stream(body)
    assert content.texts() == []
    assert not content.damaged


def test_looks_like_sse() -> None:
    """Streams start with an SSE field (after optional whitespace); JSON bodies do not."""
    assert looks_like_sse("data: {}")
    assert looks_like_sse("\n\nevent: x\ndata: {}")
    assert looks_like_sse(": comment\n")
    assert not looks_like_sse('{"choices": []}')
    assert not looks_like_sse("")


@settings(max_examples=300, deadline=None)
@given(
    st.text()
    | st.lists(st.sampled_from(["data: ", "data:", "\n", "\r\n", "{", "}", "[DONE]", '"x"', ":"])).map(
        "".join
    )
)
def test_parse_stream_never_raises(body: str) -> None:
    """Any text at all parses to a StreamContent without raising."""
    content = parse_stream(body)
    assert isinstance(content.texts(), list)


# --- The fast path for regular streams (sse._parse_repeating) -------------------------------------

AZURE_FILTERS = {
    "hate": {"filtered": False, "severity": "safe"},
    "protected_material_code": {"filtered": False, "detected": False, "citation": {"URL": "", "license": ""}},
    "self_harm": {"filtered": False, "severity": "safe"},
}


def azure_chunk(index: int = 0, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    """A chunk as Azure OpenAI sends it: keys sorted, content filter results on every choice."""
    choice = {
        "content_filter_results": AZURE_FILTERS,
        "delta": delta,
        "finish_reason": finish,
        "index": index,
        "logprobs": None,
    }
    return {
        "choices": [choice],
        "created": 1760000000,
        "id": "chatcmpl-abc",
        "model": "gpt-4o-2024-11-20",
        "object": "chat.completion.chunk",
        "system_fingerprint": "fp_1",
    }


AZURE_PROMPT_FILTERS = {
    "choices": [],
    "created": 0,
    "id": "",
    "model": "",
    "object": "",
    "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": AZURE_FILTERS}],
}


def assert_same(fast: StreamContent | None, body: str) -> None:
    """The fast path's result, when it gives one, is exactly the full parser's."""
    full = _parse_events(body)
    if fast is not None:
        assert fast == full
        assert list(fast.parts.items()) == list(full.parts.items())
    whole = parse_stream(body)
    assert whole == full
    assert list(whole.parts.items()) == list(full.parts.items())


def test_fast_path_reads_an_azure_stream() -> None:
    """Prompt filters, a role chunk with empty content, tokens, a finish chunk: the fast path applies."""
    words = ["Hello", " wor", "ld", ' "quoted"', " caf\u00e9 \U0001f680", "\\n", "", " end."] * 3
    body = sse(
        AZURE_PROMPT_FILTERS,
        azure_chunk(role="assistant", content="", refusal=None),
        *(azure_chunk(content=word) for word in words),
        azure_chunk(finish="stop"),
    )
    fast = _parse_repeating(body)
    assert fast is not None
    assert fast.texts() == ["".join(words)]
    assert fast.model == "gpt-4o-2024-11-20"
    assert fast.payloads == len(words) + 3
    assert fast.done
    assert_same(fast, body)


def test_fast_path_with_compact_json_and_crlf() -> None:
    """Compact separators, ``data:`` without a space and CRLF line breaks."""
    payloads = [json.dumps(chunk(content=f"w{i} "), separators=(",", ":")) for i in range(12)]
    body = "".join(f"data:{p}\r\n\r\n" for p in payloads) + "data:[DONE]\r\n\r\n"
    fast = _parse_repeating(body)
    assert fast is not None
    assert fast.texts() == ["".join(f"w{i} " for i in range(12))]
    assert_same(fast, body)


def test_fast_path_declines_irregular_streams() -> None:
    """Tool calls, a second choice, usage, damage in the middle or too few chunks: the full parser."""
    tokens = [chunk(content=f"t{i}") for i in range(10)]
    irregular = [
        sse(*tokens[:5], chunk(tool_calls=[{"index": 0, "function": {"arguments": "{}"}}]), *tokens[5:]),
        sse(*tokens[:5], chunk(1, content="other"), *tokens[5:]),
        sse(*tokens[:5], '{"choices": [', *tokens[5:]),
        sse(*tokens[:5], {"choices": [], "usage": {"prompt_tokens": 1}}, *tokens[5:]),
        sse(*tokens[:3]),
    ]
    for body in irregular:
        assert _parse_repeating(body) is None
        assert_same(None, body)


def test_fast_path_content_outside_a_delta_is_not_taken_for_text() -> None:
    """A ``content`` member that is not a delta's (a message, a filter) never counts as a delta."""
    message = {"choices": [{"index": 0, "message": {"content": "x"}}]}
    body = sse(*([message] * 10))
    assert _parse_repeating(body, minimum=4) is None
    assert parse_stream(body).texts() == []


_TEXTS = st.text(max_size=6) | st.sampled_from(
    ["", '"', "\\", "\u0000", "\\u0000", "\n", "\ud800", "\U0001f680"]
)


def _shape(draw: st.DrawFn) -> Any:
    """A function text -> chunk line (a JSON text or raw text) for the repeated chunks."""
    compact = draw(st.booleans())
    ascii_only = draw(st.booleans())

    def dumps(value: Any) -> str:
        return json.dumps(value, ensure_ascii=ascii_only, separators=(",", ":") if compact else None)

    index = draw(st.sampled_from([0, 1, -1, "1", None]))
    kind = draw(
        st.sampled_from(["chat", "azure", "message", "two-choices", "duplicate", "refusal", "tool", "text"])
    )
    if kind == "chat":
        return lambda text: dumps(chunk(index, content=text))  # type: ignore[arg-type]
    if kind == "azure":
        return lambda text: dumps(azure_chunk(index, content=text))  # type: ignore[arg-type]
    if kind == "message":
        return lambda text: dumps({"choices": [{"index": index, "message": {"content": text}}]})
    if kind == "two-choices":
        return lambda text: dumps(
            {"choices": [{"index": 0, "delta": {"content": text}}, {"index": 1, "delta": {"content": text}}]}
        )
    if kind == "duplicate":
        first, last = ("content", "other") if draw(st.booleans()) else ("other", "content")
        return lambda text: (
            '{"choices": [{"index": 0, "delta": {"'
            + first
            + '": '
            + dumps(text)
            + ', "'
            + last
            + '": "x"}}]}'
        )
    if kind == "refusal":
        return lambda text: dumps(chunk(index, refusal=text, content=None))  # type: ignore[arg-type]
    if kind == "tool":
        return lambda text: dumps(chunk(index, tool_calls=[{"function": {"arguments": text}}]))  # type: ignore[arg-type]
    return lambda text: dumps({"choices": [{"index": index, "text": text, "delta": {"content": text}}]})


_ODD_LINES = [
    json.dumps(AZURE_PROMPT_FILTERS),
    json.dumps(chunk(role="assistant", content="")),
    json.dumps(chunk(content="other", role="assistant")),
    json.dumps(chunk(1, content="second")),
    json.dumps(chunk(tool_calls=[{"index": 0, "function": {"name": "f", "arguments": "{}"}}])),
    json.dumps({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}),
    json.dumps({"type": "response.output_text.delta", "delta": "r"}),
    json.dumps({**chunk(content="m"), "model": "gpt-4.1"}),
    json.dumps(chunk(finish_reason="stop")),
    '{"choices": [',
    "42",
    "[DONE]",
    "",
]


@st.composite
def regular_streams(draw: st.DrawFn) -> str:
    """Streams of mostly alike chunks, with odd lines, separators and endings around and among them."""
    shape = _shape(draw)
    lines = [f"data: {shape(text)}" for text in draw(st.lists(_TEXTS, min_size=4, max_size=14))]
    odd = st.sampled_from(_ODD_LINES).map(lambda value: f"data: {value}") | st.sampled_from(
        [": keep-alive", "event: response.created", "id: 7", "data:", "data:[DONE]"]
    )
    for _ in range(draw(st.integers(0, 3))):
        lines.insert(draw(st.integers(0, len(lines))), draw(odd))
    if draw(st.booleans()):
        lines = [line.replace("data: ", "data:", 1) for line in lines]
    if draw(st.booleans()):
        lines.append("data: [DONE]")
    breaks = draw(st.sampled_from(["\n\n", "\r\n\r\n", "\r\r", "\n", "\n\n\n", "\r\n\n"]))
    body = breaks.join(lines) + draw(st.sampled_from(["", breaks, "\n"]))
    if draw(st.booleans()):
        body = body[: draw(st.integers(0, len(body)))]  # cut anywhere
    return body


@settings(max_examples=1500, deadline=None)
@given(regular_streams())
def test_fast_path_matches_the_full_parser(body: str) -> None:
    """On generated streams the fast path either declines or returns exactly the full parser's result."""
    assert_same(_parse_repeating(body, minimum=4), body)


@settings(max_examples=500, deadline=None)
@given(
    st.sampled_from(
        ['{"a": 1}', " {} ", "\ufeff{}", '{"a": 1} x', "{} {}", "[1]", "NaN", "", "\t{}\r\n", "{"]
    )
    | st.text(alphabet='{}[]":, \t\n1ax\ufeff\\', max_size=12)
)
def test_load_agrees_with_json_loads(data: str) -> None:
    """The chunk reader's decoder is json.loads restricted to objects, BOM and trailing data included."""
    try:
        expected = json.loads(data)
    except ValueError:
        expected = None
    assert _load(data) == (expected if isinstance(expected, dict) else None)


def _plain_and_regex(body: str) -> tuple[Any, Any]:
    """The quote-free split and the regex split of one body (line breaks made LF first)."""
    body = body.replace("\r\n", "\n").replace("\r", "\n")
    at = body.find('"content":')
    if at < 0:
        return None, None
    key = '"content": ' if body.startswith(" ", at + 10) else '"content":'
    return _split_plain(body, at, key), _split_literals(body, key)


def test_quote_free_split_reads_an_azure_stream() -> None:
    """Escapes, \\u sequences (surrogate pairs, one split over two deltas), empty deltas: no regex split."""
    words = ["Hello", " wor", "ld\n", "", " caf\u00e9", " \U0001f680", "\t end", " 数据", "\ud83d", "\ude80"]
    words *= 4
    body = sse(
        AZURE_PROMPT_FILTERS,
        azure_chunk(role="assistant", content="", refusal=None),
        *(azure_chunk(content=word) for word in words),
        azure_chunk(finish="stop"),
    )
    assert "\\ud83d\\ude80" in body  # json.dumps writes the rocket as a surrogate pair
    plain, regex = _plain_and_regex(body)
    assert plain is not None
    assert plain == regex
    assert_same(_parse_repeating(body), body)
    assert parse_stream(body).texts() == ["".join(words)]


def test_quote_free_split_declines_quotes_and_trailing_backslashes() -> None:
    """A literal holding an escaped quote or ending in a backslash is left to the regex split."""
    for odd in ['say "hi"', "ends with \\"]:
        words = [f"w{i} " for i in range(10)]
        words[5] = odd
        body = sse(*(chunk(content=word) for word in words))
        plain, regex = _plain_and_regex(body)
        assert plain is None
        assert regex is not None
        assert parse_stream(body).texts() == ["".join(words)]


def test_quote_free_split_declines_a_stream_that_is_not_one_separator_repeated() -> None:
    """One chunk with another shape among alike ones: the pieces do not rebuild the body."""
    tokens = [chunk(content=f"t{i}") for i in range(10)]
    body = sse(*tokens[:6], {**chunk(content="x"), "model": "gpt-4.1"}, *tokens[6:])
    assert _plain_and_regex(body)[0] is None
    assert_same(_parse_repeating(body), body)


@settings(max_examples=1500, deadline=None)
@given(regular_streams())
def test_quote_free_split_agrees_with_the_regex_split(body: str) -> None:
    """Where the quote-free split applies it cuts the stream exactly where the regex split does."""
    plain, regex = _plain_and_regex(body)
    if plain is not None:
        assert plain == regex


@settings(max_examples=300, deadline=None)
@given(regular_streams())
def test_fast_path_counts_what_the_full_parser_counts(body: str) -> None:
    """Token counts of the fast path's texts equal those of the full parser's texts."""
    from chargeback.core.tokens import count_texts, get_encoding

    encoding = get_encoding("o200k_base")
    assert count_texts(encoding, parse_stream(body).texts()) == count_texts(
        encoding, _parse_events(body).texts()
    )


def test_read_stream_spares_find_usage_only_where_no_usage_can_be() -> None:
    """A regular stream without usage comes back parsed with no usage; a usage stream as before."""
    tokens = [azure_chunk(content=f"t{i} ") for i in range(10)]
    plain = sse(*tokens)
    assert read_stream(plain) == (None, parse_stream(plain))
    usage = {"prompt_tokens": 5, "completion_tokens": 10, "total_tokens": 15}
    reported = sse(*({**t, "usage": None} for t in tokens), {"choices": [], "usage": usage})
    assert read_stream(reported) == (usage, None)
    # The usage chunk last, with no "usage": null before it: read, then find_usage decides.
    late = sse(*tokens, {"choices": [], "usage": usage})
    assert read_stream(late) == (usage, parse_stream(late))


@settings(max_examples=1000, deadline=None)
@given(
    regular_streams()
    | regular_streams().map(lambda body: body.replace('"content": "', '"content": "usage"', 3))
    | regular_streams().map(lambda body: body.replace("data: ", 'data: {"usage": {"prompt_tokens": 1}}\n', 1))
)
def test_read_stream_is_find_usage_and_parse_stream(body: str) -> None:
    """read_stream gives find_usage's usage, and parse_stream's content whenever it gives one."""
    usage, content = read_stream(body)
    assert usage == find_usage(body)
    if content is not None:
        assert content == parse_stream(body)


def test_quote_free_split_declines_a_raw_control_character_in_any_literal() -> None:
    """A literal holding a raw control character (json.loads refuses it) is never taken as text."""
    for at in (0, 1, 5, 9):
        body = sse(*(chunk(content=f"w{i} ") for i in range(10))).replace(f"w{at} ", f"w\x01{at} ")
        assert _plain_and_regex(body)[0] is None
        assert_same(_parse_repeating(body), body)
        content = parse_stream(body)
        assert content.damaged
        assert f"w\x01{at} " not in "".join(content.texts())
