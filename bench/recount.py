"""Recount: tokens/s through the pipeline for streamed calls without usage, against bare tiktoken.

    .venv/bin/python bench/recount.py [--events 20000] [--runs 3]

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
    args = parser.parse_args()

    from chargeback.pipeline import Message, Source, process_batch
    from chargeback.pricing import Pricer
    from chargeback.tokens import encoding_for_model

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


if __name__ == "__main__":
    main()
