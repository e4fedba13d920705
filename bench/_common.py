"""Shared helpers of the benchmarks: input generation into ``bench/.data``, timing, memory.

Every figure is a ratio measured in one run on one machine; timings are the best of N runs
(default 3) because the machine is shared and a slow run says more about the neighbours than
about the code.
"""

from __future__ import annotations

import json
import os
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DATA = BENCH / ".data"
MONTH = "2026-10"

# BENCH_SRC=<another checkout> measures that tree's chargeback (e.g. a "before" worktree).
SRC = Path(os.environ.get("BENCH_SRC") or REPO)
if str(SRC) not in sys.path:
    sys.path.insert(0, str(SRC))

T = TypeVar("T")


def data_dir() -> Path:
    """``bench/.data`` (gitignored), created on demand."""
    DATA.mkdir(parents=True, exist_ok=True)
    return DATA


def best_of(runs: int, fn: Callable[[], T], setup: Callable[[], Any] | None = None) -> tuple[float, T]:
    """Fastest wall time of ``runs`` calls of ``fn`` and its last result; ``setup`` runs untimed."""
    best = float("inf")
    result: Any = None
    for _ in range(runs):
        if setup is not None:
            setup()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def config_files() -> tuple[Path, Path]:
    """The demo's rate card (shipped card + a mid-month change) and deployments map."""
    from chargeback.demo import write_config

    return write_config(data_dir(), MONTH, SRC / "chargeback" / "config" / "rate_card.csv")


def _reported_events(count: int, seed: int) -> Iterator[dict[str, Any]]:
    """The demo month's traffic mix, with every successful call carrying its reported usage."""
    from chargeback.demo import TEAMS, Generator

    gen = Generator(MONTH, seed)
    weights = [team.weight for team in TEAMS]
    for _ in range(count):
        body = gen.event(gen.rng.choices(TEAMS, weights)[0])
        if body["usage"] is None and body["statusCode"] < 400:
            # A stream whose usage arrived: the policy logs it as `usage`, without bodies.
            body.pop("requestBody", None)
            body.pop("responseBody", None)
            body.pop("truncated", None)
            body["usage"] = gen.chat_usage(reasoning=False)
        yield body


def _recount_events(count: int, seed: int) -> Iterator[dict[str, Any]]:
    """Streamed chat calls logged with both bodies and no usage anywhere: every one is recounted."""
    from chargeback.demo import BY_NAME, TEAMS, Generator

    gen = Generator(MONTH, seed)
    rng = random.Random(seed)
    chat = [BY_NAME[name] for name in ("chat-gpt4o", "chat-gpt4o-mini", "chat-gpt4o-eu")]
    for _ in range(count):
        team = rng.choice(TEAMS)
        deployment = rng.choice(chat)
        body = gen.base(team, deployment)
        body["stream"] = True
        messages = [
            {"role": "system", "content": f"You are a helpful assistant for {team.name}."},
            {"role": "user", "content": gen.text(20, 400)},
        ]
        body["requestBody"] = json.dumps({"messages": messages, "stream": True}, ensure_ascii=False)
        pieces = [gen.text(1, 4) + " " for _ in range(rng.randint(10, 200))]
        body["responseBody"] = gen.sse(deployment.response_model, pieces, None)
        yield body


KINDS = {"reported": _reported_events, "recount": _recount_events}


def events_file(kind: str, count: int, seed: int = 6) -> Path:
    """A JSONL file of ``count`` event bodies of one kind, generated once and cached."""
    path = data_dir() / f"{kind}-{count}-{seed}.jsonl"
    if not path.exists():
        temp = path.with_suffix(".tmp")
        with temp.open("wb") as handle:
            for body in KINDS[kind](count, seed):
                handle.write(json.dumps(body, ensure_ascii=False).encode("utf-8") + b"\n")
        os.replace(temp, path)
    return path


def machine() -> str:
    """One line describing where the figures were taken."""
    import platform

    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"{python}, {os.cpu_count()} cores, {platform.machine()}"
