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
import json.scanner
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# A usage *object* (not ``"usage": null``). Inside a JSON string the quotes would be escaped, so
# this only matches real members.
_USAGE_OBJECT = re.compile(r'"usage"\s*:\s*\{')
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
    for line in _lines(body):
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


def _lines(body: str) -> list[str]:
    # str.split is several times faster than the regex, and most logs use LF only.
    return _LINE_BREAK.split(body) if "\r" in body else body.split("\n")


def find_usage(body: str) -> dict[str, Any] | None:
    """The usage a stream reported at its end, found without reading every chunk.

    Only lines holding a usage object are parsed, so a stream that reports usage (the normal case
    once the policy sets ``stream_options.include_usage``) costs one scan of the text. None when
    no single line carries one; ``parse_stream`` then reads the whole stream.
    """
    usage: dict[str, Any] | None = None
    for match in _USAGE_OBJECT.finditer(body):
        start = body.rfind("\n", 0, match.start()) + 1
        end = body.find("\n", match.end())
        content = StreamContent()
        for event in iter_events(body[start : len(body) if end < 0 else end]):
            _read_data(content, event.data, event.name)
        usage = content.usage or usage
    return usage


def parse_stream(body: str) -> StreamContent:
    """Read a chat completions, legacy completions or Responses API stream; never raises."""
    return _parse_repeating(body) or _parse_events(body)


def read_stream(body: str) -> tuple[dict[str, Any] | None, StreamContent | None]:
    """``find_usage(body)``, and ``parse_stream(body)`` when it was read on the way (else None).

    A stream that reports usage says so on its first line (``"usage": null`` on every chunk before
    the usage chunk): find_usage alone reads it, as before. Otherwise the stream is read first;
    when the fast path read it and no text outside its content literals mentions ``"usage"`` (a
    literal cannot hold the member: its quotes would be escaped), it has no usage object, and
    find_usage's pass over the body is spared. Never raises.
    """
    line_end = body.find("\n")
    if body.find('"usage"', 0, len(body) if line_end < 0 else line_end) >= 0:
        return find_usage(body), None
    regular = _parse_regular(body)
    if regular is None:
        return find_usage(body), None
    content, structure = regular
    if any('"usage"' in text for text in structure) or any(
        text.lstrip().startswith(":") for text in structure[1:]
    ):
        # A usage member somewhere, or a literal spelling "usage" that a colon follows (not JSON
        # a chunk parses as, but find_usage's pattern would see it): find_usage decides.
        return find_usage(body), content
    return None, content


def _parse_events(body: str) -> StreamContent:
    """The full parser: every event's data read as JSON (one ``json.loads`` per chunk)."""
    content = StreamContent()
    for event in iter_events(body):
        _read_data(content, event.data, event.name)
    return content


# --- Fast path for the common stream: one chunk per token, alike except for its content string ----
#
# A chat stream is mostly chunks that differ only in ``"content":"<text>"``. Splitting the body
# at those string literals (one C-level regex split) gives head, literal, middle, literal, ...,
# tail. When every middle between the second and the last literal is the same text (one chunk
# end, a blank line, the next chunk's start), the stream is that middle repeated, and the full
# parser applied to a reduced stream (head, 4 literals, tail) decides what everything but the
# literals means. Sentinel literals in the reduced stream prove that each literal is one chunk's
# ``delta.content`` (a JSON string token, in value position), so the real literals are decoded
# together with one ``json.loads`` and put in their place. The usual stream, whose literals hold
# no quote, is cut without copying the body (``_split_plain``); the regex split is the fallback.
# Anything else (tool calls, several choices per chunk, Responses events, damage, comments, a
# stream too short to gain) falls back to the full parser, whose result the fast path reproduces
# exactly (tests/test_sse.py checks it on generated streams).

# A JSON string token exactly as json.loads accepts it (strict: no raw control characters).
_JSON_STRING = r'"[^"\\\x00-\x1f]*(?:\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*"'
_CONTENT_KEYS = ('"content":', '"content": ')
_CONTENT_SPLIT = {key: re.compile(re.escape(key) + f"({_JSON_STRING})") for key in _CONTENT_KEYS}
# "\x00" cannot be written in a valid JSON string but as \u0000, which the fast path requires
# to be absent outside the literals, so the sentinels cannot come from anywhere else.
_SENTINELS = tuple(f"\x00{n}" for n in range(4))
_SENTINEL_LITERALS = tuple(json.dumps(sentinel) for sentinel in _SENTINELS)
# Below this many literals the reduced stream is most of the stream: the full parser is as fast.
FAST_PATH_MIN_DELTAS = 8


def _parse_repeating(body: str, minimum: int = FAST_PATH_MIN_DELTAS) -> StreamContent | None:
    """``_parse_events(body)`` for a regular stream, in a fraction of the time; else None."""
    regular = _parse_regular(body, minimum)
    return None if regular is None else regular[0]


def _parse_regular(
    body: str, minimum: int = FAST_PATH_MIN_DELTAS
) -> tuple[StreamContent, tuple[str, str, str, str]] | None:
    """``_parse_repeating``'s result and the texts around the literals (head, first, middle, tail)."""
    found = _split(body)
    if found is None:
        return None
    key, (head, first, middle, tail, texts) = found
    count = len(texts)
    if count < max(minimum, 4):
        return None
    # The repeated middle must be one chunk's end, a blank line and the next chunk's start, so
    # that each repetition is exactly one more single-line event.
    start, end = middle.find("\n"), middle.rfind("\n")
    if not 0 <= start < end or middle[start : end + 1].strip("\n"):
        return None
    if any("\\u0000" in text for text in (head, first, middle, tail)):
        return None
    s0, s1, s2, s3 = _SENTINEL_LITERALS
    content = _parse_events(f"{head}{key}{s0}{first}{key}{s1}{middle}{key}{s2}{middle}{key}{s3}{tail}")
    if len(content.parts) != 1:
        return None
    (index, part), pieces = next(iter(content.parts.items()))
    if part != "content" or pieces != list(_SENTINELS):
        return None
    pieces = list(filter(None, texts))
    content.parts = {(index, part): pieces} if pieces else {}
    content.payloads += count - 4
    return content, (head, first, middle, tail)


# (head, first middle, repeated middle, tail, decoded literals): a stream cut at its content literals.
_Regular = tuple[str, str, str, str, list[str]]


def _split(body: str) -> tuple[str, _Regular] | None:
    """The content key and the stream cut at its content literals (line breaks made LF), or None."""
    at = body.find('"content":')
    if at < 0:
        return None
    key = _CONTENT_KEYS[body.startswith(" ", at + 10)]
    plain = _split_plain(body, at, key)
    # A literal holds no control character, so a CR can only be in the parts around them: this
    # spares a pass over the body to look for one.
    if plain is not None and not any("\r" in part for part in plain[:4]):
        return key, plain
    if "\r" in body:
        # The same line breaks as _lines() finds: every CRLF, CR and LF is one.
        body = body.replace("\r\n", "\n").replace("\r", "\n")
        at = body.find('"content":')
        plain = _split_plain(body, at, key)
        if plain is not None:
            return key, plain
    regular = _split_literals(body, key)
    return None if regular is None else (key, regular)


# A content literal without a quote inside, whatever it holds: the text between the quotes. (A
# control character in the class makes sre test a range at every character: checked after.)
_PLAIN_LITERALS = {key: re.compile(re.escape(key) + '"([^"]*)"') for key in _CONTENT_KEYS}
_CONTROL = re.compile(r"[\x00-\x1f]")  # json.loads refuses these raw in a string


def _split_plain(body: str, at: int, key: str) -> _Regular | None:
    """The stream cut at its content literals when none of them holds a quote, without cutting it up.

    One ``findall`` copies out the literals' texts only: a body holding any non-ASCII text is four
    bytes a character, and cutting the whole of it into pieces (the regex split) costs more than
    tiktoken's encode of the completion. The separator (from the second literal's closing quote to
    the third's opening one) joined with the literals must then be, character for character, the
    body from the second literal to the last, so the body is head, literal, first middle, literal,
    then separator and literal repeated, then tail. None (the regex split decides) when a literal
    holds a quote, a control character or a trailing backslash, or the stream is not so regular.
    """
    opening = key + '"'
    width = len(opening)
    if not body.startswith(opening, at):
        return None
    literals: list[str] = _PLAIN_LITERALS[key].findall(body, at)
    if len(literals) < 4:
        return None
    end1 = at + width + len(literals[0])
    if not body.startswith(literals[0] + '"', at + width):  # pragma: no cover - findall starts there
        return None
    at2 = body.find(opening, end1 + 1)
    end2 = at2 + width + len(literals[1])
    at3 = body.find(opening, end2 + 1)
    if at2 < 0 or at3 < 0:  # pragma: no cover - findall found these literals
        return None
    separator = body[end2 : at3 + width]
    repeated = separator.join(literals[1:])
    close = at2 + width + len(repeated)
    if not body.startswith(repeated, at2 + width) or not body.startswith('"', close):
        return None
    joined = "".join(literals)
    # isprintable() is one quick pass that is True for most text; only the rest is searched.
    if not joined.isprintable() and _CONTROL.search(joined) is not None:
        return None
    if "\\" in joined:
        if any(literal.endswith("\\") for literal in literals):
            return None
        try:
            # No quote inside and no trailing backslash: each literal is exactly one element.
            texts = json.loads('["' + '","'.join(literals) + '"]')
        except (ValueError, RecursionError):
            return None
    else:
        texts = literals
    return body[:at], body[end1 + 1 : at2], separator[1:-width], body[close + 1 :], texts


def _split_literals(body: str, key: str) -> _Regular | None:
    """The stream cut at its content literals by one regex split, any valid JSON string allowed."""
    # [head, literal 1, middle 1, literal 2, middle 2, ..., literal n, tail]
    parts = _CONTENT_SPLIT[key].split(body)
    count = len(parts) // 2
    if count < 4:
        return None
    head, first, middle, tail = parts[0], parts[2], parts[4], parts[-1]
    if parts[4:-1:2].count(middle) != count - 2:
        return None
    literals = ",".join(parts[1::2])
    if "\\" in literals:
        try:
            texts = json.loads(f"[{literals}]")
        except (ValueError, RecursionError):  # pragma: no cover - each literal was matched as valid
            return None
    else:
        # No escapes, hence no quote inside a literal: the text between the quotes is the value.
        texts = literals[1:-1].split('","')
    return head, first, middle, tail, texts


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


_SCAN: Callable[[str, int], tuple[Any, int]] = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_JSON_SPACE = re.compile(r"[ \t\n\r]*")  # json.decoder.WHITESPACE


def _load(data: str) -> dict[str, Any] | None:
    """``json.loads(data)`` if it is an object, else None: the same steps without two Python frames."""
    if data.startswith("\ufeff"):  # json.loads refuses a BOM in a str
        return None
    try:
        value, end = _SCAN(data, _JSON_SPACE.match(data).end())  # type: ignore[union-attr]
    except (StopIteration, ValueError, RecursionError):
        return None
    if _JSON_SPACE.match(data, end).end() != len(data):  # type: ignore[union-attr]
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
    if not content.model:
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
        if "text" in choice:
            content.add(index, "text", choice["text"])
        delta = choice.get("delta")
        if isinstance(delta, dict):
            _feed_delta(content, index, delta)


# Delta members that are plain completion text, and the part each feeds. reasoning_content is not
# sent by OpenAI models but by reasoning models served on the same endpoint.
_DELTA_TEXTS = {"content": "content", "refusal": "refusal", "reasoning_content": "reasoning"}


def _feed_delta(content: StreamContent, index: int, delta: dict[str, Any]) -> None:
    # Loop over what the delta holds (usually one member) rather than probing every known one:
    # this runs once per streamed token.
    for key, value in delta.items():
        part = _DELTA_TEXTS.get(key)
        if part is not None:
            content.add(index, part, value)
        elif key == "tool_calls" and isinstance(value, list):
            _feed_tool_calls(content, index, value)
        elif key == "function_call" and isinstance(value, dict):
            content.add(index, "function_call.name", value.get("name"))
            content.add(index, "function_call.arguments", value.get("arguments"))
        elif key == "audio" and value is not None:
            content.has_media = True


def _feed_tool_calls(content: StreamContent, index: int, calls: list[Any]) -> None:
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
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
