"""Usage resolution: which token counts a call is charged for, and where they came from.

The order is binding (DESIGN, "Usage resolution"):

1. ``reported``: the event's ``usage``, or the ``usage`` object of a complete, non-streamed JSON
   response body (the service's own count, logged as body rather than as ``usage``).
2. ``stream-usage``: the usage a stream reported at its end (the chat chunk sent for
   ``stream_options.include_usage``, or the Responses ``response.completed`` event).
3. A response with a non-2xx status and no usage consumed nothing: zero tokens, ``estimated``.
4. ``recounted``: tiktoken over the request and response text. Prompts follow the OpenAI cookbook
   formula for chat (3 per message, every string value, 1 per ``name``, 3 to prime the reply);
   Responses API input is counted as chat messages, the closest known approximation. Embeddings
   and legacy completions count their input texts (token arrays count their length).
5. ``estimated``: the same recount, flagged, whenever it cannot be exact: a cut body (``truncated``
   or JSON that does not parse, which is then read tolerantly up to the cut; a body the policy says
   it cut is charged an upper bound, the model's limits, so a cut never under-charges), a damaged stream,
   tool definitions, images, audio or files, the hidden reasoning tokens of reasoning models, no
   response body, or no text at all (then the prompt is zero, not the formula's constants).

6. A stream the policy let through unread (``responseCaptured: false``, so that APIM did not buffer
   it): its prompt is counted from the request and its completion is unknown; the row is
   ``estimated`` with ``UsageUnknown`` saying so, until APIM's LLM log supersedes it
   (``gateway-log``, see ``chargeback.core.late_usage``).

Recounts never report cached or reasoning tokens: only the service knows them.
``resolve_usage`` never raises for any event; only a broken install (an encoding file that is
missing or fails its hash) raises ``EncodingFileError``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Final

from chargeback.core.schema import NO_UNITS, BillableUnits, Event, ReportedUsage, parse_usage
from chargeback.core.sse import StreamContent, looks_like_sse, parse_stream, read_stream
from chargeback.core.tokens import (
    TokenCount,
    count_texts_bounded,
    encoding_for_model,
    is_reasoning_model,
    token_limits,
)
from chargeback.errors import RejectedEvent

if TYPE_CHECKING:
    from tiktoken import Encoding

# OpenAI cookbook, "How to count tokens with tiktoken", for gpt-3.5-turbo-0613 and every later model.
TOKENS_PER_MESSAGE: Final = 3
TOKENS_PER_NAME: Final = 1
REPLY_PRIMING: Final = 3


class UsageSource(StrEnum):
    """Where the counts came from, in DESIGN's binding resolution order."""

    REPORTED = "reported"
    STREAM_USAGE = "stream-usage"
    RECOUNTED = "recounted"
    ESTIMATED = "estimated"
    GATEWAY_LOG = "gateway-log"


# ``UsageUnknown``: what a row's counts do not know (comma-separated, empty when nothing).
UNKNOWN_COMPLETION = "completion-tokens"
UNKNOWN_CACHED = "cached-tokens"
UNKNOWN_REASONING = "reasoning-tokens"
# A stream the policy let through unread: the prompt is counted from the request, the completion
# waits for APIM's LLM log (and no count from there or here splits cached or reasoning tokens).
AWAITING_GATEWAY: Final = ",".join((UNKNOWN_COMPLETION, UNKNOWN_CACHED, UNKNOWN_REASONING))
# APIM's LLM log counts prompt, completion and total tokens: no cached or reasoning split.
GATEWAY_LOG_UNKNOWN: Final = ",".join((UNKNOWN_CACHED, UNKNOWN_REASONING))


@dataclass(frozen=True, slots=True)
class Usage:
    """Resolved counts. Cached is part of prompt and reasoning part of completion: never added twice.

    The audio and image counts are parts of the prompt/completion totals (the cached_* ones parts
    of ``cached_tokens``); prediction counts are parts of the completion, for the record only.
    ``images``, ``characters`` and ``audio_seconds`` are the quantities of non-token calls.
    """

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    reasoning_tokens: int
    source: UsageSource
    unknown: str = ""  # the ``UsageUnknown`` column: what these counts do not know
    audio_prompt_tokens: int = 0
    image_prompt_tokens: int = 0
    cached_audio_tokens: int = 0
    cached_image_tokens: int = 0
    audio_completion_tokens: int = 0
    image_completion_tokens: int = 0
    accepted_prediction_tokens: int = 0
    rejected_prediction_tokens: int = 0
    images: int = 0
    characters: int = 0
    audio_seconds: Decimal | None = None

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion (cached and reasoning are already inside them)."""
        return self.prompt_tokens + self.completion_tokens


NOTHING_CONSUMED: Final = Usage(0, 0, 0, 0, UsageSource.ESTIMATED)


def resolve_usage(event: Event) -> Usage:
    """Resolve the usage of one validated event: reported, stream-usage, recounted or estimated."""
    if event.usage is not None:
        # Reported counts with the policy's units (2xx only) in one Usage: what _with_units makes
        # of _from_reported's, without building a frozen 17-field Usage twice.
        units = event.units if 200 <= event.status_code <= 299 else NO_UNITS
        return _from_reported(event.usage, UsageSource.REPORTED, units)
    usage = _resolve_tokens(event)
    units = event.units
    if units is NO_UNITS or not 200 <= event.status_code <= 299:
        return usage
    return _with_units(event, usage)


def _resolve_tokens(event: Event) -> Usage:
    if event.usage is not None:
        return _from_reported(event.usage, UsageSource.REPORTED)
    body = event.response_body
    stream = None
    if _is_stream(body):
        # find_usage's answer, and the stream itself when reading it was the cheaper way there.
        found, stream = read_stream(body)
        if (streamed := _quiet_usage(found)) is not None:
            return _from_reported(streamed, UsageSource.STREAM_USAGE)
    response = _read_response(body, stream)
    if response.reported is not None:
        return _from_reported(response.reported, response.source)
    if not 200 <= event.status_code <= 299:
        return NOTHING_CONSUMED
    if not event.response_captured and not response.present and not event.served_from_cache:
        # A stream the policy did not read (so that APIM did not buffer it): the prompt is counted
        # from the request, flagged; APIM's LLM log later supersedes the row (UsageSource gateway-log).
        prompt = _recount(event, response)
        return Usage(prompt.prompt_tokens, 0, 0, 0, UsageSource.ESTIMATED, AWAITING_GATEWAY)
    return _recount(event, response)


def _with_units(event: Event, usage: Usage) -> Usage:
    """Add the non-token quantities the policy measured (``billableUnits``) to the resolved usage.

    Images count only when the service reported no image output tokens (gpt-image-1 bills its
    images as tokens; dall-e-3 per image). A duration the service reported wins over the policy's.
    With no tokens to count, the call's quantity is what the gateway measured exactly: the images
    asked for or returned, the input's characters, the reported duration, so the row is
    ``recounted`` rather than ``estimated``.
    """
    units = event.units
    images = units.images if usage.image_completion_tokens == 0 else 0
    seconds = usage.audio_seconds if usage.audio_seconds is not None else units.audio_seconds
    source = usage.source
    measured = images > 0 or units.characters > 0 or seconds is not None
    if (
        measured
        and source is UsageSource.ESTIMATED
        and usage.prompt_tokens == 0
        and usage.completion_tokens == 0
        and not usage.unknown
        and not event.truncated
    ):
        source = UsageSource.RECOUNTED
    return replace(usage, images=images, characters=units.characters, audio_seconds=seconds, source=source)


def _from_reported(usage: ReportedUsage, source: UsageSource, units: BillableUnits = NO_UNITS) -> Usage:
    """Reported counts as a Usage, with ``units`` added as ``_with_units`` adds them (source kept)."""
    seconds = usage.audio_seconds
    return Usage(
        usage.prompt_tokens,
        usage.completion_tokens,
        usage.cached_tokens,
        usage.reasoning_tokens,
        source,
        audio_prompt_tokens=usage.audio_prompt_tokens,
        image_prompt_tokens=usage.image_prompt_tokens,
        cached_audio_tokens=usage.cached_audio_tokens,
        cached_image_tokens=usage.cached_image_tokens,
        audio_completion_tokens=usage.audio_completion_tokens,
        image_completion_tokens=usage.image_completion_tokens,
        accepted_prediction_tokens=usage.accepted_prediction_tokens,
        rejected_prediction_tokens=usage.rejected_prediction_tokens,
        images=units.images if usage.image_completion_tokens == 0 else 0,
        characters=units.characters,
        audio_seconds=seconds if seconds is not None else units.audio_seconds,
    )


def _quiet_usage(value: Any) -> ReportedUsage | None:
    """A usage object from a body, or None when it is absent or unusable (then we recount)."""
    try:
        return parse_usage(value)
    except RejectedEvent:
        return None


# --- Reading bodies -------------------------------------------------------------------------------


@dataclass(slots=True)
class _Response:
    present: bool = False
    exact: bool = True  # read in full: no cut JSON, no damaged stream
    document: Any = None  # the parsed (or, when cut, repaired) JSON of a non-streamed body
    stream: StreamContent | None = None
    reported: ReportedUsage | None = None
    source: UsageSource = UsageSource.REPORTED


def _is_stream(body: str) -> bool:
    return looks_like_sse(body) or (not body.lstrip().startswith(("{", "[")) and "data:" in body)


def _read_response(text: str, stream: StreamContent | None = None) -> _Response:
    """Read a response body; ``stream`` is ``parse_stream(text)`` when the caller already has it."""
    if not text or text.isspace():  # not text.strip(), which copies a whole stream to look
        return _Response()
    if _is_stream(text):
        stream = stream or parse_stream(text)
        # find_usage reads single lines; a usage event spread over several data lines lands here.
        streamed = _quiet_usage(stream.usage)
        return _Response(
            present=True,
            exact=not stream.damaged,
            stream=stream,
            reported=streamed,
            source=UsageSource.STREAM_USAGE,
        )
    document, exact = read_json(text)
    reported = _quiet_usage(document.get("usage")) if exact and isinstance(document, dict) else None
    return _Response(present=True, exact=exact, document=document, reported=reported)


def read_json(text: str) -> tuple[Any, bool]:
    """Parse a body: ``(value, True)`` when it is valid JSON, else ``(repaired value or None, False)``."""
    try:
        return json.loads(text), True
    except (ValueError, RecursionError):
        return repair_json(text), False


_JSON_TOKEN = re.compile(
    r"""(?P<string>"[^"\\]*(?:\\.[^"\\]*)*")"""
    r"""|(?P<cut>"[^"\\]*(?:\\.[^"\\]*)*\\?\Z)"""
    r"""|(?P<open>[{\[])|(?P<close>[}\]])"""
    r"""|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"""
    r"""|(?P<literal>true|false|null)""",
    re.DOTALL,
)
_CUT_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?\Z")
_LITERALS: Final[dict[str, Any]] = {"true": True, "false": False, "null": None}
_MISSING: Final = object()


def repair_json(text: str) -> Any:
    """Tolerantly read JSON cut short or otherwise damaged: open containers are closed at the end,
    a cut string keeps its text, and anything unreadable is skipped. None when nothing is found.

    Iterative, so nesting depth cannot exhaust the stack, and linear in the text's length.
    """
    root: Any = _MISSING
    stack: list[dict[str, Any] | list[Any]] = []
    keys: list[str | None] = []  # the pending member name of each open object

    def attach(value: Any) -> None:
        nonlocal root
        if not stack:
            root = value if root is _MISSING else root
        elif isinstance(top := stack[-1], list):
            top.append(value)
        elif keys[-1] is not None:
            top[keys[-1]] = value
            keys[-1] = None

    for match in _JSON_TOKEN.finditer(text):
        kind, token = match.lastgroup, match.group()
        if kind == "open":
            container: dict[str, Any] | list[Any] = {} if token == "{" else []
            attach(container)
            stack.append(container)
            keys.append(None)
        elif kind == "close":
            if stack:
                stack.pop()
                keys.pop()
        elif kind in ("string", "cut"):
            value = _decode_string(token, cut=kind == "cut")
            if stack and isinstance(stack[-1], dict) and keys[-1] is None:
                keys[-1] = value
            else:
                attach(value)
        elif kind == "literal":
            attach(_LITERALS[token])
        else:
            attach(_decode_number(token))
    return None if root is _MISSING else root


def _decode_string(token: str, *, cut: bool) -> str:
    if cut:
        token = _CUT_ESCAPE.sub("", token) + '"'
    try:
        value = json.loads(token)
    except ValueError:
        return token[1:-1]
    return value if isinstance(value, str) else token[1:-1]


def _decode_number(token: str) -> Any:
    try:
        return json.loads(token)
    except ValueError:
        return None


# --- Recounting -----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    """Texts to tokenise plus fixed tokens, and whether the formula missed something."""

    texts: list[str] = field(default_factory=list)
    constants: int = 0  # formula constants
    token_ids: int = 0  # tokens given as token arrays
    uncovered: bool = False

    def text(self, value: Any) -> None:
        if isinstance(value, str):
            self.texts.append(value)

    @property
    def has_text(self) -> bool:
        return self.token_ids > 0 or any(self.texts)

    def total(self, encoding: Encoding) -> TokenCount:
        counted = count_texts_bounded(encoding, self.texts)
        return TokenCount(counted.tokens + self.token_ids + self.constants, counted.exact)


class _Shape(StrEnum):
    CHAT = "chat"
    RESPONSES = "responses"
    EMBEDDINGS = "embeddings"
    COMPLETIONS = "completions"
    IMAGES = "images"  # image generation: billed per image or by image tokens, never as a completion
    SPEECH = "speech"  # text-to-speech: billed per character
    UNKNOWN = "unknown"


def _recount(event: Event, response: _Response) -> Usage:
    request, request_exact = read_json(event.request_body) if event.request_body.strip() else (None, True)
    model = _model(event, request, response)
    shape = _shape(event, request, response, model)
    prompt = _Tally()
    if isinstance(request, dict):
        _PROMPT_COUNTERS[shape](request, prompt)
    completion = _Tally()
    if shape in _NO_TOKENS:
        # Not a text call: no formula counts it, and its prompt is not billed as text tokens. Its
        # quantity (images, characters) comes from the event's billableUnits; the tokens are
        # unknown, so the row says so.
        return Usage(0, 0, 0, 0, UsageSource.ESTIMATED)
    if shape is not _Shape.EMBEDDINGS:
        _completion(response, completion)
    estimated = (
        event.truncated
        or not (request_exact and response.exact)
        or prompt.uncovered
        or completion.uncovered
        or not prompt.has_text
        or (shape is not _Shape.EMBEDDINGS and (not response.present or is_reasoning_model(model)))
    )
    encoding = encoding_for_model(model)
    prompt_count = prompt.total(encoding) if prompt.has_text else TokenCount(0)
    completion_count = completion.total(encoding)
    # Text past tiktoken's safe bounds (see chargeback.core.tokens) was estimated, not counted.
    estimated = estimated or not (prompt_count.exact and completion_count.exact)
    prompt_tokens, completion_tokens = prompt_count.tokens, completion_count.tokens
    if event.truncated:
        # The under-charge guard: what a cut body held past the cut is unknown, and counting only
        # what remains under-charges (a 120k-token prompt cut at 190 KB reads as 25k). A body the
        # policy cut is charged the most it can have been: the model's prompt limit for a cut
        # request, the request's own output cap (else the model's) for a cut response. Flagged
        # ``estimated``; the gateway log's counts supersede it when they come (UsageRevision).
        most_prompt, most_completion = token_limits(model)
        if not request_exact:
            prompt_tokens = max(prompt_tokens, most_prompt)
        if not response.exact and shape is not _Shape.EMBEDDINGS:
            completion_tokens = max(completion_tokens, _output_cap(request) or most_completion)
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cached_tokens=0,
        reasoning_tokens=0,
        source=UsageSource.ESTIMATED if estimated else UsageSource.RECOUNTED,
    )


def _output_cap(request: Any) -> int:
    """The request's own cap on output tokens (0 when it sets none or the value is not a count)."""
    if not isinstance(request, dict):
        return 0
    for name in ("max_completion_tokens", "max_output_tokens", "max_tokens"):
        value = request.get(name)
        if type(value) is int and value > 0:
            return value
    return 0


def _model(event: Event, request: Any, response: _Response) -> str:
    """The model whose encoding applies: the event's, the request's, the response's, the deployment."""
    candidates: list[Any] = [event.model]
    if isinstance(request, dict):
        candidates.append(request.get("model"))
    if response.stream is not None:
        candidates.append(response.stream.model)
    elif isinstance(response.document, dict):
        candidates.append(response.document.get("model"))
    return next((c for c in candidates if isinstance(c, str) and c.strip()), event.deployment)


_RESPONSES_ONLY_KEYS = frozenset(
    {"instructions", "previous_response_id", "max_output_tokens", "reasoning", "text", "tools", "tool_choice"}
    | {"store", "stream", "truncation", "include", "background", "conversation", "prompt"}
)
_EMBEDDINGS_ONLY_KEYS = frozenset({"dimensions", "encoding_format"})


_NO_TOKENS = frozenset({_Shape.IMAGES, _Shape.SPEECH})
# Keys only the images API takes (``n`` and ``prompt`` are shared with legacy completions).
_IMAGES_ONLY_KEYS = frozenset(
    {"size", "quality", "style", "output_format", "output_compression", "moderation", "partial_images"}
)
_IMAGE_MODEL_HINTS = ("dall-e", "dalle", "gpt-image", "image")


def _shape(event: Event, request: Any, response: _Response, model: str) -> _Shape:
    """Which API the request was for, from the body's keys first and from hints after that."""
    if isinstance(request, dict):
        if "messages" in request:
            return _Shape.CHAT
        if "voice" in request and "input" in request:
            return _Shape.SPEECH
        if "prompt" in request and "input" not in request and _is_images(event, request, response, model):
            return _Shape.IMAGES
        if "input" in request or "instructions" in request:
            return _Shape.RESPONSES if _is_responses(event, request, response, model) else _Shape.EMBEDDINGS
        if "prompt" in request:
            return _Shape.COMPLETIONS
    elif _images_document(response.document):
        return _Shape.IMAGES
    return _Shape.UNKNOWN


def _is_images(event: Event, request: dict[str, Any], response: _Response, model: str) -> bool:
    """An image-generation request (never to be read as a legacy completion's prompt)."""
    if not _IMAGES_ONLY_KEYS.isdisjoint(request):
        return True
    hints = f"{event.operation_id} {event.api_id} {model} {event.deployment}".lower()
    return any(hint in hints for hint in _IMAGE_MODEL_HINTS) or _images_document(response.document)


def _images_document(document: Any) -> bool:
    """An images API response: ``data`` items carrying ``url`` or ``b64_json``."""
    if not isinstance(document, dict):
        return False
    data = document.get("data")
    return (
        isinstance(data, list)
        and bool(data)
        and all(isinstance(item, dict) and ("url" in item or "b64_json" in item) for item in data)
    )


def _is_responses(event: Event, request: dict[str, Any], response: _Response, model: str) -> bool:
    """Responses API or embeddings: both take ``input`` (and ``model``)."""
    if not _RESPONSES_ONLY_KEYS.isdisjoint(request):
        return True
    if not _EMBEDDINGS_ONLY_KEYS.isdisjoint(request):
        return False
    items = request.get("input")
    if isinstance(items, list) and any(isinstance(item, dict) for item in items):
        return True
    hints = f"{event.operation_id} {event.api_id} {model}".lower()
    if "embedding" in hints:
        return False
    if "response" in hints or response.stream is not None:
        return True
    document = response.document
    return isinstance(document, dict) and document.get("object") == "response"


def _chat_prompt(request: dict[str, Any], tally: _Tally) -> None:
    messages = request.get("messages")
    if isinstance(messages, list):
        for message in messages:
            _message(message, tally)
    elif messages is not None:
        tally.uncovered = True
    tally.constants += REPLY_PRIMING
    _request_extras(request, tally)
    modalities = request.get("modalities")
    if (
        request.get("prediction") is not None
        or request.get("audio") is not None
        or (isinstance(modalities, list) and "audio" in modalities)
    ):
        # Predicted outputs bill rejected prediction tokens as completion tokens the response never
        # shows; audio output is billed as audio tokens: the formula counts neither.
        tally.uncovered = True


def _responses_prompt(request: dict[str, Any], tally: _Tally) -> None:
    instructions = request.get("instructions")
    if isinstance(instructions, str):
        _message({"role": "system", "content": instructions}, tally)
    items = request.get("input")
    if isinstance(items, str):
        _message({"role": "user", "content": items}, tally)
    elif isinstance(items, list):
        for item in items:
            _responses_item(item, tally)
    elif items is not None:
        tally.uncovered = True
    if request.get("prompt") is not None:
        tally.uncovered = True  # a stored prompt template: its text is not in the request
    tally.constants += REPLY_PRIMING
    _request_extras(request, tally)


_ITEM_BOOKKEEPING = frozenset({"type", "id", "call_id", "status"})


def _responses_item(item: Any, tally: _Tally) -> None:
    if isinstance(item, str):
        _message({"role": "user", "content": item}, tally)
    elif isinstance(item, dict) and "role" in item:
        _message({key: item[key] for key in ("role", "content", "name") if key in item}, tally)
    elif isinstance(item, dict):
        # function_call, function_call_output, reasoning, ...: outside the formula, count their text.
        tally.constants += TOKENS_PER_MESSAGE
        tally.uncovered = True
        _strings([value for key, value in item.items() if key not in _ITEM_BOOKKEEPING], tally)
    else:
        tally.uncovered = True


def _message(message: Any, tally: _Tally) -> None:
    if not isinstance(message, dict):
        tally.uncovered = True
        return
    tally.constants += TOKENS_PER_MESSAGE
    for key, value in message.items():
        if key == "content":
            _content(value, tally)
        elif isinstance(value, str):
            tally.texts.append(value)
            if key == "name":
                tally.constants += TOKENS_PER_NAME
        elif isinstance(value, dict | list):
            # tool_calls, function_call, audio: the formula does not say how they are rendered.
            tally.uncovered = True
            _strings(value, tally)


_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})


def _content(value: Any, tally: _Tally) -> None:
    """A message's content: a string, or a list of parts of which only text parts are covered."""
    if isinstance(value, str):
        tally.texts.append(value)
    elif isinstance(value, list):
        for part in value:
            _content_part(part, tally)
    elif value is not None:
        tally.uncovered = True


def _content_part(part: Any, tally: _Tally) -> None:
    if isinstance(part, str):
        tally.texts.append(part)
        return
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in _TEXT_PARTS and isinstance(text := part.get("text"), str):
        tally.texts.append(text)
    elif kind == "refusal" and isinstance(refusal := part.get("refusal"), str):
        tally.texts.append(refusal)
    else:
        # image_url, input_image, input_audio, file, input_file, or something unreadable.
        tally.uncovered = True


def _request_extras(request: dict[str, Any], tally: _Tally) -> None:
    """Tool definitions and JSON schemas cost prompt tokens in a rendering the formula does not cover:
    count their names, keys and descriptions as a rough estimate."""
    for key in ("tools", "functions", "tool_choice", "function_call"):
        value = request.get(key)
        if value is not None:
            tally.uncovered = True
            _strings(value, tally, with_keys=True)
    response_format = request.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        tally.uncovered = True
        _strings(response_format, tally, with_keys=True)


def _inputs_prompt(request: dict[str, Any], tally: _Tally, key: str) -> None:
    """Embeddings ``input`` or completions ``prompt``: a string, strings, a token array or arrays."""
    value = request.get(key)
    if isinstance(value, str):
        tally.texts.append(value)
    elif isinstance(value, list):
        for element in value:
            _input_element(element, tally)
    elif value is not None:
        tally.uncovered = True


def _input_element(element: Any, tally: _Tally) -> None:
    if isinstance(element, str):
        tally.texts.append(element)
    elif type(element) is int:
        tally.token_ids += 1
    elif isinstance(element, list):
        ids = sum(1 for token in element if type(token) is int)
        tally.token_ids += ids
        tally.uncovered = tally.uncovered or ids != len(element)
    else:
        tally.uncovered = True


def _embeddings_prompt(request: dict[str, Any], tally: _Tally) -> None:
    _inputs_prompt(request, tally, "input")


def _completions_prompt(request: dict[str, Any], tally: _Tally) -> None:
    """Legacy completions: counted, but always flagged (a request with ``prompt`` may be another API,
    and the service's own prompt rendering is not documented)."""
    _inputs_prompt(request, tally, "prompt")
    tally.text(request.get("suffix"))
    tally.uncovered = True


def _no_prompt(request: dict[str, Any], tally: _Tally) -> None:
    """Images and speech: their text is not billed as prompt tokens."""


def _unknown_prompt(request: dict[str, Any], tally: _Tally) -> None:
    tally.uncovered = True
    _strings(request, tally)


_PROMPT_COUNTERS: Final[dict[_Shape, Callable[[dict[str, Any], _Tally], None]]] = {
    _Shape.CHAT: _chat_prompt,
    _Shape.RESPONSES: _responses_prompt,
    _Shape.EMBEDDINGS: _embeddings_prompt,
    _Shape.COMPLETIONS: _completions_prompt,
    _Shape.IMAGES: _no_prompt,
    _Shape.SPEECH: _no_prompt,
    _Shape.UNKNOWN: _unknown_prompt,
}


def _strings(value: Any, tally: _Tally, *, with_keys: bool = False) -> None:
    """Every string inside a JSON value (and its member names, if asked), without recursion."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            tally.texts.append(item)
        elif isinstance(item, dict):
            if with_keys:
                tally.texts.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _completion(response: _Response, tally: _Tally) -> None:
    """Completion texts: a stream's joined deltas, or a JSON body's choices or output items."""
    if response.stream is not None:
        tally.texts.extend(response.stream.texts())
        tally.uncovered = response.stream.has_media
        return
    document = response.document
    if not isinstance(document, dict):
        return
    choices = document.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            _choice(choice, tally)
    output = document.get("output")
    if isinstance(output, list):
        for item in output:
            _output_item(item, tally)


def _choice(choice: Any, tally: _Tally) -> None:
    if not isinstance(choice, dict):
        return
    tally.text(choice.get("text"))
    message = choice.get("message")
    if not isinstance(message, dict):
        return
    _content(message.get("content"), tally)
    tally.text(message.get("refusal"))
    tally.text(message.get("reasoning_content"))
    _function(message.get("function_call"), tally)
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else ():
        if isinstance(call, dict):
            _function(call.get("function"), tally)
    if message.get("audio") is not None:
        tally.uncovered = True


def _function(function: Any, tally: _Tally) -> None:
    if isinstance(function, dict):
        tally.text(function.get("name"))
        tally.text(function.get("arguments"))


def _output_item(item: Any, tally: _Tally) -> None:
    """One Responses API output item."""
    kind = item.get("type") if isinstance(item, dict) else None
    if kind == "message":
        _content(item.get("content"), tally)
    elif kind == "function_call":
        _function(item, tally)
    else:
        # reasoning (its tokens are hidden; a summary is not them), web_search_call, image, ...
        tally.uncovered = True
