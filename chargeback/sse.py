"""Parsing of streamed (server-sent events) response bodies, as the APIM policy logs them.

``parse_stream`` reads a whole logged stream and keeps what billing needs: the completion text
of every output (per chat choice, per Responses output item, per tool call) and the usage the
service reported at the end (the chat chunk sent for ``stream_options.include_usage``, or the
Responses ``response.completed`` event). It never raises: a line it cannot read marks the stream
as damaged, and the caller then calls its counts estimated.

Text pieces are kept per output part and joined before counting, because the service tokenises
each part (a message's content, one tool call's arguments) as one text, not delta by delta.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SSE_START = re.compile(r"\s*(?:data|event|id|retry)?:")
# Responses API delta events whose ``delta`` is completion text, and the part each one feeds
# (reasoning deltas, of several kinds, are matched by prefix).
_RESPONSES_TEXT_DELTAS = {
    "response.output_text.delta": "content",
    "response.refusal.delta": "refusal",
    "response.function_call_arguments.delta": "tool.arguments",
    "response.custom_tool_call_input.delta": "tool.input",
}
_MESSAGE_PARTS = ("content", "refusal", "text")
_RESPONSES_USAGE_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_MEDIA_DELTAS = frozenset({"response.audio.delta", "response.output_audio.delta"})

PartKey = tuple[int, str]


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One dispatched event: its ``event:`` name (or ``""``) and its ``data:`` lines joined."""

    name: str
    data: str


@dataclass(slots=True)
class StreamContent:
    """What a logged stream carried that matters for billing."""

    # Text deltas per (choice or output index, part name), in arrival order.
    parts: dict[PartKey, list[str]] = field(default_factory=dict)
    # The raw usage object of the final chat chunk or of response.completed, if one arrived.
    usage: dict[str, Any] | None = None
    # A payload could not be read (bad JSON, not an object, cut last line).
    damaged: bool = False
    # Output that is not text (audio), which a text recount cannot cover.
    has_media: bool = False
    # Number of JSON payloads read, and whether the chat ``[DONE]`` sentinel arrived.
    payloads: int = 0
    done: bool = False
    # The ``model`` the first chunk named, if any.
    model: str = ""

    def add(self, index: int, part: str, text: Any) -> None:
        """Append a text delta to one output part; non-strings and empty strings are ignored."""
        if isinstance(text, str) and text:
            self.parts.setdefault((index, part), []).append(text)

    def texts(self) -> list[str]:
        """The completion text of every output part, each joined from its deltas."""
        return ["".join(pieces) for pieces in self.parts.values()]

    def choice_text(self, index: int) -> str:
        """The message text (content, refusal or legacy text) of one choice or output item."""
        return "".join(
            "".join(pieces)
            for (at, part), pieces in self.parts.items()
            if at == index and part.startswith(_MESSAGE_PARTS)
        )


def looks_like_sse(body: str) -> bool:
    """True when a body starts like an event stream rather than a JSON document."""
    return _SSE_START.match(body) is not None


def iter_events(body: str) -> Iterator[SseEvent]:
    """Split a stream into events: ``data:`` lines joined, comments and ``id:``/``retry:`` skipped.

    A final event without its closing blank line is still yielded: a log may lack the last line
    break, and a line that was really cut fails to parse later and marks the stream damaged.
    """
    name = ""
    data: list[str] = []
    for line in _LINE_BREAK.split(body):
        if not line:
            if data:
                yield SseEvent(name, "\n".join(data))
            name, data = "", []
            continue
        if line[0] == ":":
            continue
        key, _, value = line.partition(":")
        if value[:1] == " ":
            value = value[1:]
        if key == "data":
            data.append(value)
        elif key == "event":
            name = value
    if data:
        yield SseEvent(name, "\n".join(data))


def parse_stream(body: str) -> StreamContent:
    """Read a chat completions, legacy completions or Responses API stream; never raises."""
    content = StreamContent()
    for event in iter_events(body):
        _read_data(content, event.data, event.name)
    return content


def _read_data(content: StreamContent, data: str, event_name: str) -> None:
    if data.strip() == "[DONE]":
        content.done = True
        return
    payload = _load(data)
    if payload is not None:
        content.payloads += 1
        _feed(content, payload, event_name)
    elif "\n" in data:
        # A stream logged without blank lines joins several events' data lines into one.
        for line in data.split("\n"):
            _read_data(content, line, event_name)
    else:
        content.damaged = True


def _load(data: str) -> dict[str, Any] | None:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _feed(content: StreamContent, payload: dict[str, Any], event_name: str) -> None:
    kind = payload.get("type")
    if not isinstance(kind, str):
        kind = event_name
    if kind.startswith("response."):
        _feed_responses(content, payload, kind)
    else:
        _feed_choices(content, payload)


def _feed_choices(content: StreamContent, chunk: dict[str, Any]) -> None:
    """A chat completions or legacy completions chunk."""
    _note_model(content, chunk)
    usage = chunk.get("usage")
    if isinstance(usage, dict):
        content.usage = usage
    choices = chunk.get("choices")
    if not isinstance(choices, list):
        return
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        index = _index(choice.get("index"))
        content.add(index, "text", choice.get("text"))
        delta = choice.get("delta")
        if isinstance(delta, dict):
            _feed_delta(content, index, delta)


def _feed_delta(content: StreamContent, index: int, delta: dict[str, Any]) -> None:
    content.add(index, "content", delta.get("content"))
    content.add(index, "refusal", delta.get("refusal"))
    # Not sent by OpenAI models, but by reasoning models served on the same endpoint.
    content.add(index, "reasoning", delta.get("reasoning_content"))
    if delta.get("audio") is not None:
        content.has_media = True
    function_call = delta.get("function_call")
    if isinstance(function_call, dict):
        content.add(index, "function_call.name", function_call.get("name"))
        content.add(index, "function_call.arguments", function_call.get("arguments"))
    tool_calls = delta.get("tool_calls")
    if not isinstance(tool_calls, list):
        return
    for call in tool_calls:
        if not isinstance(call, dict):
            continue
        function = call.get("function")
        if isinstance(function, dict):
            tool = _index(call.get("index"))
            content.add(index, f"tool{tool}.name", function.get("name"))
            content.add(index, f"tool{tool}.arguments", function.get("arguments"))


def _feed_responses(content: StreamContent, event: dict[str, Any], kind: str) -> None:
    """A Responses API streaming event."""
    index = _index(event.get("output_index"))
    part = _RESPONSES_TEXT_DELTAS.get(kind)
    if part is None and kind.startswith("response.reasoning") and kind.endswith(".delta"):
        part = f"reasoning.{kind}"
    if part is not None:
        sub = event.get("content_index", event.get("summary_index"))
        content.add(index, f"{part}:{_index(sub)}", event.get("delta"))
    elif kind in _MEDIA_DELTAS:
        content.has_media = True
    elif kind == "response.output_item.added":
        item = event.get("item")
        if isinstance(item, dict) and item.get("type") == "function_call":
            content.add(index, "tool.name", item.get("name"))
    elif isinstance(response := event.get("response"), dict):
        _note_model(content, response)
        usage = response.get("usage")
        if kind in _RESPONSES_USAGE_EVENTS and isinstance(usage, dict):
            content.usage = usage


def _note_model(content: StreamContent, payload: dict[str, Any]) -> None:
    model = payload.get("model")
    if not content.model and isinstance(model, str):
        content.model = model


def _index(value: Any) -> int:
    return value if type(value) is int else 0
