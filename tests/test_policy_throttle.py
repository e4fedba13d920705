"""The policy's throttle branch on Mono: a team over a ``throttle`` budget gets 429 until month end.

The throttle list is the named value that the real enforcement job wrote to the local APIM stand-in
(``tests.test_enforce``'s world: usage in DuckDB, the wiring, the APIM client); the policy is compiled
with that value substituted, as APIM substitutes ``{{aoai-chargeback-throttled}}``.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from chargeback.core.enforcement import Throttle, encode_throttle_list
from chargeback.wiring import handle_budget_enforcement
from tests.policy_harness.runner import THROTTLE_NAMED_VALUE, CompiledPolicy, fragment_host_policy
from tests.test_enforce import DECEMBER, MID_NOVEMBER, World, world  # noqa: F401  (the fixture)
from tests.test_policy import POLICY, chat_request, json_response, requires_mono, scenario

CHAT = "/openai/deployments/chat/chat/completions?api-version=2024-10-21"
USAGE = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}


def call(name: str, subscription: str, at: datetime) -> dict[str, Any]:
    """A chat call from ``subscription`` at ``at`` that Azure OpenAI would answer 200."""
    played = scenario(name, CHAT, chat_request(), json_response(200, {"model": "gpt-4o", "usage": USAGE}))
    played["subscription"] = {"id": subscription, "name": subscription.title(), "key": "SUBKEY-never-logged"}
    played["timestamp"] = at.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")
    return played


def play(
    tmp: Path, throttle_list: str, calls: list[dict[str, Any]], *, fragment: bool = False
) -> dict[str, Any]:
    """Compile the policy (or the fragment in a host policy) with the throttle list, play the calls."""
    import xml.etree.ElementTree as ET

    policy = fragment_host_policy() if fragment else ET.parse(POLICY).getroot()
    compiled = CompiledPolicy(policy, tmp, {THROTTLE_NAMED_VALUE: throttle_list})
    return compiled.run(calls)


def assert_throttled(result: dict[str, Any], budget: str) -> None:
    """429 with Retry-After and a JSON error naming the budget and its reset; nothing forwarded or emitted."""
    assert result["expressionErrors"] == []
    assert result["returned"] is True
    assert result["clientStatus"] == 429
    assert result["forwardedBody"] is None
    assert result["events"] == []
    error = json.loads(result["clientBody"])["error"]
    assert error["code"] == "BudgetExceeded"
    assert error["budget"] == budget
    assert error["resetsAt"] == "2026-12-01T00:00:00Z"
    assert budget in error["message"]
    assert "2026-12-01T00:00:00Z" in error["message"]
    assert int(result["clientHeaders"]["Retry-After"]) == error["retryAfterSeconds"] > 0
    assert result["clientHeaders"]["Content-Type"] == "application/json"


def assert_served(result: dict[str, Any]) -> None:
    """The call went through: forwarded, answered 200, one event emitted."""
    assert result["expressionErrors"] == []
    assert result["returned"] is False
    assert result["clientStatus"] == 200
    assert len(result["events"]) == 1


@requires_mono
@pytest.mark.parametrize("fragment", [False, True], ids=["policy", "fragment"])
def test_a_throttled_team_gets_429_until_the_month_rolls_over(
    world: World,  # noqa: F811  (the fixture imported from tests.test_enforce)
    tmp_path: Path,
    fragment: bool,
) -> None:
    """After the job throttles team-t, its calls get 429 (others pass); after the rollover lift, they pass."""
    handle_budget_enforcement(MID_NOVEMBER, world.environ)
    november = world.apim.named_value(THROTTLE_NAMED_VALUE) or ""
    results = play(
        tmp_path / "nov",
        november,
        [
            call("team-t", "team-t", MID_NOVEMBER),
            call("team-t-later", "team-t", datetime(2026, 11, 30, 23, 59, tzinfo=UTC)),
            call("team-ok", "team-ok", MID_NOVEMBER),
            call("team-t-december-before-the-lift", "team-t", datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)),
        ],
        fragment=fragment,
    )
    assert_throttled(results["team-t"], "Team-T")
    assert_throttled(results["team-t-later"], "Team-T")
    assert int(results["team-t-later"]["clientHeaders"]["Retry-After"]) == 60
    assert_served(results["team-ok"])
    assert_served(results["team-t-december-before-the-lift"])  # the reset time passed: not blocked

    handle_budget_enforcement(DECEMBER, world.environ)
    december = world.apim.named_value(THROTTLE_NAMED_VALUE) or ""
    assert_served(
        play(tmp_path / "dec", december, [call("team-t", "team-t", DECEMBER)], fragment=fragment)["team-t"]
    )
    kinds = [kind for kind, _ in world.alerts()]
    assert kinds.count("throttle") == 1
    assert kinds.count("lift-throttle") == 1


@requires_mono
def test_a_broken_throttle_list_blocks_nobody(tmp_path: Path) -> None:
    """An unreadable named value, a reset time that is not a number, or no subscription: never 429."""
    broken = base64.b64encode(b'{"team-a":["Team A","2026-12-01T00:00:00Z"]}').decode()
    calls = [call("team-a", "team-a", MID_NOVEMBER)]
    assert_served(play(tmp_path / "broken", broken, calls)["team-a"])
    assert_served(play(tmp_path / "garbage", "bm90IGpzb24=", calls)["team-a"])
    anonymous = call("anonymous", "team-a", MID_NOVEMBER)
    anonymous["subscription"] = None
    throttled = encode_throttle_list({"team-a": Throttle("Team A", "2026-12-01T00:00:00Z")})
    assert play(tmp_path / "anon", throttled, [anonymous])["anonymous"]["returned"] is False
