"""LiteLLM's side of bench/litellm_compare.py; runs inside bench/.venv-litellm only.

    bench/.venv-litellm/bin/python bench/_litellm_side.py EVENTS.jsonl RUNS

Prices every 2xx event that reports usage with ``litellm.cost_per_token`` (the function
``completion_cost`` ends in) and prints one JSON object: best time of RUNS, events priced, and
totals per (deployment, LiteLLM model).
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # the packaged price map, no network

import litellm

# How a deployment of the demo's map is named in LiteLLM's catalog: data zone is "azure/eu/...".
DATAZONE = {"chat-gpt4o-eu"}


def litellm_model(event: dict) -> str:
    model = event.get("model") or event["deployment"]
    zone = "eu/" if event["deployment"] in DATAZONE else ""
    return f"azure/{zone}{model}"


def price_all(lines: list[bytes]) -> tuple[int, dict[str, list[float]]]:
    totals: dict[str, list[float]] = {}
    priced = 0
    for line in lines:
        event = json.loads(line)
        usage = event.get("usage")
        if not usage or not 200 <= event["statusCode"] <= 299:
            continue
        prompt = usage.get("prompt_tokens", usage.get("input_tokens", 0))
        completion = usage.get("completion_tokens", usage.get("output_tokens", 0)) or 0
        details = usage.get("prompt_tokens_details") or usage.get("input_tokens_details") or {}
        cached = details.get("cached_tokens", 0) or 0
        model = litellm_model(event)
        call_type = "embedding" if "embedding" in model else "completion"
        try:
            cost_in, cost_out = litellm.cost_per_token(
                model=model,
                prompt_tokens=prompt,
                completion_tokens=completion,
                cache_read_input_tokens=cached,
                call_type=call_type,
            )
        except Exception:  # unknown model: LiteLLM raises; we write an unpriced row
            key = f"{event['deployment']}|{model}|unpriced"
            totals.setdefault(key, [0.0, 0])[1] += 1
            continue
        key = f"{event['deployment']}|{model}|{'cache-hit' if event.get('servedFromCache') else 'priced'}"
        entry = totals.setdefault(key, [0.0, 0])
        entry[0] += cost_in + cost_out
        entry[1] += 1
        priced += 1
    return priced, totals


def main() -> None:
    path, runs = sys.argv[1], int(sys.argv[2])
    with open(path, "rb") as handle:
        lines = handle.read().splitlines()
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        priced, totals = price_all(lines)
        best = min(best, time.perf_counter() - start)
    print(
        json.dumps(
            {
                "seconds": best,
                "events": len(lines),
                "priced": priced,
                "totals": totals,
                "version": litellm.__version__ if hasattr(litellm, "__version__") else "",
            }
        )
    )


if __name__ == "__main__":
    main()
