"""Offline encodings: identical to tiktoken's own, verified by hash, cheap to import, model mapping."""

from __future__ import annotations

import gzip
import hashlib
import inspect
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import tiktoken
import tiktoken_ext.openai_public
from hypothesis import given, settings
from hypothesis import strategies as st

from chargeback.core.tokens import (
    CL100K_BASE,
    ENCODINGS,
    MAX_COUNT_CHARS,
    MAX_RUN,
    MEMO_MAX_CHARS,
    O200K_BASE,
    TokenCount,
    count_texts,
    count_texts_bounded,
    count_tokens,
    encoding_for_model,
    encoding_name_for_model,
    get_encoding,
    is_reasoning_model,
    ranks_from_gzip,
)
from chargeback.errors import EncodingFileError

ENCODINGS_DIR = Path(__file__).resolve().parent.parent / "chargeback" / "encodings"
BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"

CORPUS = [
    "hello world",
    "Hello, World! It's a test; they'll've done it. DON'T SHOUT",
    "The quick brown fox jumps over the lazy dog 1234567890 3.14159 -42 1e10",
    "日本語のテキストと中文文本，还有한국어 문장도 있습니다。",
    "emoji 🎉🚀👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷🇯🇵 and ❤️",
    'def f(x: int) -> dict[str, int]:\n    return {"a": x ** 2}  # comment\n\n\nclass A: pass\n',
    "SELECT id, name FROM users WHERE id IN (1, 2, 3) ORDER BY name DESC;",
    "   leading and trailing   ",
    "tabs\t\tand\r\nwindows\r\nlines\n\n\n\nand a long run" + " " * 100 + "end",
    "\n" * 50,
    "<|endoftext|> and <|endofprompt|> and <|fim_prefix|> are ordinary text here",
    "Ünïcödé ñ café naïve Straße İstanbul ǅ ΣΊΣΥΦΟΣ",
    "مرحبا بالعالم שלום עולם नमस्ते दुनिया",
    "a" * 5000,
    "123456789012345678901234567890",
    "https://example.com/path?query=1&x=%20#frag user@example.org",
    '{"role": "user", "content": "JSON inside text"}',
    "",
]


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tiktoken.Encoding]]:
    """tiktoken's own encodings, loaded from a cache seeded with our files so nothing is downloaded."""
    cache_dir = tmp_path_factory.mktemp("tiktoken-cache")
    for name in ENCODINGS:
        data = gzip.decompress((ENCODINGS_DIR / f"{name}.tiktoken.gz").read_bytes())
        # A mismatching file would make tiktoken download the real one: refuse before that.
        assert hashlib.sha256(data).hexdigest() == ENCODINGS[name].sha256
        (cache_dir / hashlib.sha1(BLOB_URL.format(name=name).encode()).hexdigest()).write_bytes(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIKTOKEN_CACHE_DIR", str(cache_dir))
        yield {name: tiktoken.get_encoding(name) for name in ENCODINGS}


@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_shipped_file_hash_is_the_one_tiktoken_expects(name: str) -> None:
    """The vendored data hashes to our constant, and that constant is in tiktoken's own source."""
    data = gzip.decompress((ENCODINGS_DIR / f"{name}.tiktoken.gz").read_bytes())
    assert hashlib.sha256(data).hexdigest() == ENCODINGS[name].sha256
    assert ENCODINGS[name].sha256 in inspect.getsource(tiktoken_ext.openai_public)


@pytest.mark.parametrize("name", sorted(ENCODINGS))
def test_regex_and_special_tokens_are_tiktokens(name: str, official: dict[str, tiktoken.Encoding]) -> None:
    """Our pat_str, special tokens and vocabulary size equal those of tiktoken's encoding."""
    ours, theirs = get_encoding(name), official[name]
    assert ours._pat_str == theirs._pat_str
    assert ours._special_tokens == theirs._special_tokens
    assert ours.n_vocab == theirs.n_vocab


@pytest.mark.parametrize("name", sorted(ENCODINGS))
@pytest.mark.parametrize("text", CORPUS, ids=range(len(CORPUS)))
def test_token_ids_match_official_tiktoken(
    name: str, text: str, official: dict[str, tiktoken.Encoding]
) -> None:
    """The shipped encoding yields exactly tiktoken.get_encoding's token ids on a varied corpus."""
    assert get_encoding(name).encode_ordinary(text) == official[name].encode_ordinary(text)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=300))
def test_token_ids_match_official_tiktoken_on_any_text(
    text: str, official: dict[str, tiktoken.Encoding]
) -> None:
    """For arbitrary Unicode text both encodings match tiktoken's ids."""
    for name in ENCODINGS:
        assert get_encoding(name).encode_ordinary(text) == official[name].encode_ordinary(text)


def test_hello_world_known_ids() -> None:
    """Literal known tokenisations of "hello world" in both encodings."""
    assert get_encoding(O200K_BASE).encode_ordinary("hello world") == [24912, 2375]
    assert get_encoding(CL100K_BASE).encode_ordinary("hello world") == [15339, 1917]
    assert count_tokens(get_encoding(O200K_BASE), "Hello, world!") == 4


def test_special_token_text_counts_as_ordinary_text() -> None:
    """User text that spells a special token is counted as plain text, never rejected."""
    encoding = get_encoding(O200K_BASE)
    assert count_tokens(encoding, "<|endoftext|>") == 7
    assert 199999 not in encoding.encode_ordinary("x <|endoftext|> y")


def test_lone_surrogate_is_counted() -> None:
    """A lone surrogate (possible from JSON "\\ud800" escapes) is counted without raising."""
    assert count_tokens(get_encoding(O200K_BASE), "a\ud800b") > 0


def test_count_texts_sums_each_text_separately() -> None:
    """count_texts is the sum of per-text counts, skipping empty strings."""
    encoding = get_encoding(CL100K_BASE)
    texts = ["hello world", "", "日本語", "a" * 100]
    assert count_texts(encoding, texts) == sum(len(encoding.encode_ordinary(t)) for t in texts)
    assert count_tokens(encoding, "") == 0


def test_encodings_are_built_once() -> None:
    """get_encoding returns the same cached object on every call."""
    assert get_encoding(O200K_BASE) is get_encoding(O200K_BASE)
    assert encoding_for_model("gpt-4") is get_encoding(CL100K_BASE)


def test_unknown_encoding_name_is_an_error() -> None:
    """Asking for an encoding that is not shipped raises ValueError naming the shipped ones."""
    with pytest.raises(ValueError, match="o200k_base"):
        get_encoding("p50k_base")


def test_tampered_file_fails_its_hash() -> None:
    """A .tiktoken.gz whose data differs from tiktoken's expected hash is refused clearly."""
    blob = gzip.compress(b"IQ== 0\nIg== 1\n")
    with pytest.raises(EncodingFileError, match="sha256"):
        ranks_from_gzip(blob, ENCODINGS[O200K_BASE])


def test_non_gzip_file_is_refused() -> None:
    """A file that is not gzip at all raises EncodingFileError, not a raw OSError."""
    with pytest.raises(EncodingFileError, match="gzip"):
        ranks_from_gzip(b"not gzip", ENCODINGS[CL100K_BASE])


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt-4o", O200K_BASE),
        ("gpt-4o-2024-08-06", O200K_BASE),
        ("gpt-4o-mini-2024-07-18", O200K_BASE),
        ("GPT-4o", O200K_BASE),
        ("gpt-4.1-nano", O200K_BASE),
        ("gpt-4.5-preview", O200K_BASE),
        ("gpt-5", O200K_BASE),
        ("gpt-5-mini-2025-08-07", O200K_BASE),
        ("o1-preview", O200K_BASE),
        ("o3-mini", O200K_BASE),
        ("o4-mini-2025-04-16", O200K_BASE),
        ("chatgpt-4o-latest", O200K_BASE),
        ("gpt-oss-120b", O200K_BASE),
        ("openai/gpt-oss-20b", O200K_BASE),
        ("codex-mini", O200K_BASE),
        ("gpt-4", CL100K_BASE),
        ("gpt-4-0613", CL100K_BASE),
        ("gpt-4-turbo-2024-04-09", CL100K_BASE),
        ("gpt-4-32k", CL100K_BASE),
        ("gpt-35-turbo", CL100K_BASE),
        ("gpt-35-turbo-16k", CL100K_BASE),
        ("gpt-3.5-turbo-0125", CL100K_BASE),
        ("text-embedding-3-small", CL100K_BASE),
        ("text-embedding-ada-002", CL100K_BASE),
        ("my-custom-deployment", O200K_BASE),
        ("", O200K_BASE),
    ],
)
def test_model_to_encoding(model: str, expected: str) -> None:
    """Model names (with date suffixes, any case) map to their family's encoding; unknown to o200k."""
    assert encoding_name_for_model(model) == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [("o3-mini", True), ("gpt-5", True), ("gpt-5-chat-latest", False), ("gpt-4o", False), ("gpt-4.1", False)],
)
def test_reasoning_models(model: str, expected: bool) -> None:
    """Reasoning families (o-series, gpt-5 except gpt-5-chat) are recognised."""
    assert is_reasoning_model(model) is expected


def _run(code: str, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, **env}
    )
    return result.stdout.strip()


def test_import_does_not_load_tiktoken() -> None:
    """Importing the token, stream and usage modules leaves tiktoken unimported (cheap cold start)."""
    code = (
        "import sys, chargeback.core.tokens, chargeback.core.sse, chargeback.core.usage;"
        " print('tiktoken' in sys.modules)"
    )
    assert _run(code) == "False"


def test_counting_needs_no_network_or_cache(tmp_path: Path) -> None:
    """With an empty tiktoken cache and an unreachable proxy, encodings still load and count."""
    code = "from chargeback.core.tokens import get_encoding as g; print(len(g('o200k_base').encode('hi')), len(g('cl100k_base').encode('hi')))"  # noqa: E501
    unreachable = "http://127.0.0.1:9"
    out = _run(code, TIKTOKEN_CACHE_DIR=str(tmp_path), HTTPS_PROXY=unreachable, HTTP_PROXY=unreachable)
    assert out == "1 1"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        (" " * 1_000_000, 7_000, 9_000),  # tiktoken alone: PanicException (o200k_base)
        (" \t" * 500_000, 400_000, 600_000),  # tiktoken alone: PanicException too
        ("x" + " " * 1_030, 2, 20),
        ("é" * (MAX_COUNT_CHARS + 10), MAX_COUNT_CHARS, MAX_COUNT_CHARS + 100),
    ],
)
def test_text_past_the_safe_bounds_is_estimated_not_a_panic(text: str, low: int, high: int):
    """Long runs and over-long text are cut before tiktoken sees them; the rest is estimated, flagged."""
    count = count_texts_bounded(get_encoding(O200K_BASE), [text])
    assert not count.exact
    assert low <= count.tokens <= high


def test_a_run_just_under_the_bound_is_counted_exactly():
    """Runs of MAX_RUN characters and ordinary long text are counted by tiktoken itself, exactly."""
    encoding = get_encoding(O200K_BASE)
    text = ("a" * MAX_RUN + " " * MAX_RUN + "word ") * 20
    expected = TokenCount(len(encoding.encode_ordinary(text)), exact=True)
    assert count_texts_bounded(encoding, [text]) == expected


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=" \t\nab", min_size=0, max_size=4000))
def test_bounded_count_equals_tiktoken_when_no_run_is_long(text: str):
    """Below the bounds the guard changes nothing: the same count as tiktoken's own."""
    encoding = get_encoding(O200K_BASE)
    count = count_texts_bounded(encoding, [text])
    if count.exact:
        assert count.tokens == len(encoding.encode_ordinary(text))


@st.composite
def _texts_with_runs(draw: st.DrawFn) -> str:
    """Text around runs just under, at and over MAX_RUN, of one character or of mixed whitespace."""
    parts = []
    for _ in range(draw(st.integers(1, 5))):
        length = draw(
            st.sampled_from([0, 1, MAX_RUN - 1, MAX_RUN, MAX_RUN + 1, MAX_RUN + 2, 2 * MAX_RUN + 7])
        )
        kind = draw(st.sampled_from(["same", "space", "mixed-space", "text"]))
        if kind == "same":
            parts.append(draw(st.sampled_from(["a", "é", "\n", "-", "😀"])) * length)
        elif kind == "space":
            parts.append(" " * length)
        elif kind == "mixed-space":
            parts.append("".join(draw(st.sampled_from([" ", "\t", "\n", "\u3000"])) for _ in range(length)))
        else:
            parts.append(draw(st.text(alphabet="ab \n", min_size=0, max_size=length)))
    return "".join(parts)


@settings(max_examples=300, deadline=None)
@given(_texts_with_runs())
def test_long_run_precheck_never_misses_a_run(text: str):
    """The cheap pre-check says 'no run' only where the run scan finds none, so counts are unchanged."""
    from chargeback.core.tokens import _LONG_RUN, _may_have_long_run

    if _LONG_RUN.search(text) is not None:
        assert _may_have_long_run(text)


def test_long_run_precheck_at_every_offset():
    """A run of MAX_RUN + 1 is found wherever it starts; prose of any length skips the scan."""
    from chargeback.core.tokens import _LONG_RUN, _may_have_long_run

    for offset in range(0, 1100, 37):
        for run in ("x" * (MAX_RUN + 1), " \t" * (MAX_RUN // 2) + " "):
            text = "ab" * offset + run + "cd" * 300
            assert _LONG_RUN.search(text) is not None
            assert _may_have_long_run(text), offset
        plain = "ab " * offset + "x" * MAX_RUN + " word" * 300
        assert _LONG_RUN.search(plain) is None
        prose = "The quick brown fox jumps over the lazy dog.\n" * (offset + 30)
        assert not _may_have_long_run(prose)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(["system", "user", "You are a helpful assistant.", "é" * 40]) | st.text()))
def test_remembered_counts_of_short_texts_are_tiktoken_counts(texts: list[str]):
    """Counting the same short texts again (from the memo) gives tiktoken's counts, per encoding."""
    for name in (O200K_BASE, CL100K_BASE):
        encoding = get_encoding(name)
        expected = sum(len(encoding.encode_ordinary(text)) for text in texts)
        assert count_texts_bounded(encoding, texts) == TokenCount(expected)
        assert count_texts_bounded(encoding, texts + texts) == TokenCount(2 * expected)


def test_the_memo_of_short_texts_stays_bounded():
    """Many distinct short texts never grow the memo past its bound, and counts stay right."""
    from chargeback.core import tokens

    encoding = get_encoding(O200K_BASE)
    texts = [f"t{n}" for n in range(tokens._MEMO_MAX_ENTRIES + 10)]
    assert count_texts_bounded(encoding, texts).tokens == sum(len(encoding.encode_ordinary(t)) for t in texts)
    assert len(tokens._memos[O200K_BASE]) <= tokens._MEMO_MAX_ENTRIES
    longer = "word " * (MEMO_MAX_CHARS // 5 + 1)
    count_texts_bounded(encoding, [longer])
    assert longer not in tokens._memos[O200K_BASE]
