"""Recount: tokens/s through the pipeline for streamed calls without usage, against bare tiktoken.

    .venv/bin/python bench/recount.py [--events 20000] [--runs 3] [--lengths 50,200,1000] [--profile]

Every event is a streamed chat call logged with its request and SSE response bodies and no usage
anywhere, so the pipeline recounts it (cookbook prompt formula + joined stream deltas). The floor
is ``encode_ordinary`` of the same encoding on the same texts (each message's role and content, and
each choice's joined completion), already extracted, nothing else. Both sides count the same
tokens; throughput is those tokens over each side's time. Goal: pipeline >= 80 % of bare tiktoken.
The pipeline side is ``process_batch`` (parse, validate, SSE parse, recount, price, row): the store
is measured by bench/ingest.py.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

from _common import best_of, config_files, events_file, machine


def texts_of(line: bytes) -> tuple[str, list[str]]:
    """The model and the texts a recount tokenises, extracted without the pipeline."""
    event = json.loads(line)
    request = json.loads(event["requestBody"])
    texts = [value for message in request["messages"] for value in message.values()]
    pieces: list[str] = []
    for chunk in event["responseBody"].split("\n\n"):
        if chunk.startswith("data: {"):
            for choice in json.loads(chunk[6:])["choices"]:
                content = choice.get("delta", {}).get("content")
                if content:
                    pieces.append(content)
    return event["model"], [*texts, "".join(pieces)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--lengths", help="also measure streams of these completion lengths (tokens, comma-separated)"
    )
    args = parser.parse_args()

    from chargeback.core.pipeline import Message, Source, process_batch
    from chargeback.core.pricing import Pricer
    from chargeback.core.tokens import encoding_for_model

    path = events_file("recount", args.events)
    lines = path.read_bytes().splitlines()
    pricer = Pricer.from_files(*config_files())
    messages = [Message(line, Source("file")) for line in lines]
    extracted = [texts_of(line) for line in lines]
    encodings = {model: encoding_for_model(model) for model, _ in extracted}
    jobs = [(encodings[model].encode_ordinary, texts) for model, texts in extracted]

    def bare() -> int:
        return sum(len(encode(text)) for encode, texts in jobs for text in texts)

    def pipeline() -> int:
        result = process_batch(messages, pricer)
        assert not result.rejections, result.rejections[:1]
        sources = {charge.row["UsageSource"] for charge in result.charges}
        assert sources == {"recounted"}, sources
        return sum(c.row["TotalTokens"] for c in result.charges)

    if args.profile:
        import cProfile
        import pstats

        profiler = cProfile.Profile()
        profiler.runcall(pipeline)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
        return
    pipeline()  # warm: encodings are loaded once per process
    floor, tokens = best_of(args.runs, bare)
    seconds, charged = best_of(args.runs, pipeline)
    # The pipeline's totals add the formula's constants (3 per message, 3 reply priming).
    constants = charged - tokens
    print(
        f"recount: {len(lines):,} streamed events without usage, {tokens:,} text tokens, "
        f"best of {args.runs}; "
        f"{machine()}"
    )
    print(f"  floor: tiktoken encode_ordinary   {floor:6.2f} s  {tokens / floor:>12,.0f} tokens/s")
    print(
        f"  pipeline (process_batch)          {seconds:6.2f} s  {tokens / seconds:>12,.0f} tokens/s "
        f"(+{constants:,} formula tokens)"
    )
    share = floor / seconds
    verdict = "met" if share >= 0.8 else "NOT met"
    print(f"  pipeline share of bare tiktoken   {share:6.1%}          (goal >= 80 %: {verdict})")
    sides(args.runs, lines, jobs)
    for length in [int(n) for n in args.lengths.split(",")] if args.lengths else []:
        by_length(args.runs, length, min(args.events, 2_000), pricer)


def sides(runs: int, lines: list[bytes], jobs: list[tuple[Callable[[str], list[int]], list[str]]]) -> None:
    """The two recount steps alone against bare encode of their own texts (no event decode, no row)."""
    from chargeback.core.sse import parse_stream
    from chargeback.core.tokens import count_texts
    from chargeback.core.usage import _chat_prompt, _Tally, read_json

    events = [json.loads(line) for line in lines]
    encodings = [encode.__self__ for encode, _ in jobs]  # type: ignore[attr-defined]

    def prompt_bare() -> int:
        return sum(len(encode(text)) for encode, texts in jobs for text in texts[:-1])

    def prompt_ours() -> int:
        total = 0
        for event, encoding in zip(events, encodings, strict=True):
            tally = _Tally()
            _chat_prompt(read_json(event["requestBody"])[0], tally)
            total += tally.total(encoding).tokens - tally.constants
        return total

    def completion_bare() -> int:
        return sum(len(encode(texts[-1])) for encode, texts in jobs)

    def completion_ours() -> int:
        return sum(
            count_texts(encoding, parse_stream(event["responseBody"]).texts())
            for event, encoding in zip(events, encodings, strict=True)
        )

    for name, bare, ours in (
        ("prompt", prompt_bare, prompt_ours),
        ("completion", completion_bare, completion_ours),
    ):
        floor, tokens = best_of(runs, bare)
        seconds, counted = best_of(runs, ours)
        assert counted == tokens, (name, counted, tokens)
        print(
            f"  {name} side alone: {tokens / seconds:>12,.0f} vs {tokens / floor:>12,.0f} tokens/s bare "
            f"= {floor / seconds:6.1%} (read + count, no event decode or row)"
        )


def by_length(runs: int, length: int, count: int, pricer: Any) -> None:
    """``count`` streamed events whose completions are about ``length`` tokens: pipeline vs bare."""
    import random

    from _common import MONTH

    from chargeback.core.pipeline import Message, Source, process_batch
    from chargeback.core.tokens import encoding_for_model
    from chargeback.demo import BY_NAME, TEAMS, Generator

    gen = Generator(MONTH, length)
    rng = random.Random(length)
    lines = []
    for _ in range(count):
        team = rng.choice(TEAMS)
        deployment = BY_NAME["chat-gpt4o"]
        body = gen.base(team, deployment)
        body["stream"] = True
        prompt = [
            {"role": "system", "content": f"You are a helpful assistant for {team.name}."},
            {"role": "user", "content": gen.text(20, 400)},
        ]
        body["requestBody"] = json.dumps({"messages": prompt, "stream": True}, ensure_ascii=False)
        # One chunk per ~1.6 tokens (one or two words), as the service streams them.
        pieces = [gen.text(1, 2) + " " for _ in range(max(1, round(length / 1.6)))]
        body["responseBody"] = gen.sse(deployment.response_model, pieces, None)
        lines.append(json.dumps(body, ensure_ascii=False).encode("utf-8"))
    messages = [Message(line, Source("file")) for line in lines]
    extracted = [texts_of(line) for line in lines]
    encode = encoding_for_model("gpt-4o").encode_ordinary
    completion = sum(len(encode(texts[-1])) for _, texts in extracted) / count

    def bare() -> int:
        return sum(len(encode(text)) for _, texts in extracted for text in texts)

    def pipeline() -> None:
        result = process_batch(messages, pricer)
        assert not result.rejections

    floor, tokens = best_of(runs, bare)
    seconds, _ = best_of(runs, pipeline)
    print(
        f"  completions of ~{completion:,.0f} tokens ({count:,} events): pipeline "
        f"{tokens / seconds:>11,.0f} vs {tokens / floor:>11,.0f} tokens/s bare = {floor / seconds:6.1%}; "
        f"{(seconds - floor) / count * 1e6:,.0f} us per event above the floor"
    )


if __name__ == "__main__":
    main()
