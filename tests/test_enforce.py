"""Budget enforcement end to end: usage in DuckDB, the real wiring and APIM client, the local APIM."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from chargeback.core.enforcement import decode_throttle_list
from chargeback.core.schema import ALERTS_TABLE
from chargeback.edges.alertsinks import StoreAlertSink
from chargeback.edges.apim import ApimManagement
from chargeback.edges.azure_clients import LocalStandInCredential
from chargeback.edges.kqlrun import LocalKqlRunner
from chargeback.errors import EnforcementError
from chargeback.jobs.budgets import check_budgets, load_budgets
from chargeback.jobs.enforce import EnforcementOptions, run_enforcement
from chargeback.settings import Settings
from chargeback.wiring import build_writer, handle_budget_enforcement
from chargeback_dev.apimserver import LocalApim
from tests import monthdata
from tests.conftest import DEPLOYMENTS, RATE_CARD, make_event

NAMED_VALUE = "aoai-chargeback-throttled"
MID_NOVEMBER = datetime(2026, 11, 20, 12, tzinfo=UTC)
DECEMBER = datetime(2026, 12, 1, 0, 15, tzinfo=UTC)
BUDGETS = """\
subscription_id,subscription_name,cost_center,owner,monthly_budget,currency,thresholds,action,action_threshold,grace
team-t,Team T,CC-T,t@example.com,0.02,USD,,throttle,100,
team-s,Team S,CC-S,s@example.com,0.02,USD,,suspend,90,0.001
team-x,Team X,CC-X,x@example.com,0.02,USD,,throttle,,
team-e,Team E,CC-E,e@example.com,0.005,USD,,throttle,,
team-ok,Team OK,CC-O,o@example.com,100.00,USD,,suspend,,
"""


def estimated_event(subscription: str, index: int) -> dict[str, Any]:
    """A call whose usage is missing and whose body was cut: recounted as ``estimated``."""
    request = {"messages": [{"role": "user", "content": "Summarise the quarterly report " * 40}]}
    response = {"model": "gpt-4o-2024-11-20", "choices": [{"message": {"content": "A summary " * 30}}]}
    return make_event(
        requestId=f"00000000-0000-4000-8000-{index:012d}",
        subscriptionId=subscription,
        subscriptionName=subscription.title(),
        timestamp=f"2026-11-{1 + index % 15:02d}T08:00:00Z",
        usage=None,
        requestBody=json.dumps(request),
        responseBody=json.dumps(response),
        truncated=True,
    )


@dataclass
class World:
    """A store with November usage, its config files, the local APIM and the settings environment."""

    store: Any
    config: dict[str, Path]
    apim: LocalApim
    environ: dict[str, str]

    def alerts(self, kind_prefix: str = "") -> list[tuple[str, str]]:
        """(AlertKind, AlertId) of the alerts table's enforcement rows."""
        rows = self.store.connection.execute(
            f'SELECT "AlertKind", "AlertId" FROM "{ALERTS_TABLE}" ORDER BY 2'
        ).fetchall()
        return [(k, i) for k, i in rows if k.startswith(kind_prefix) and k not in ("actual", "forecast")]

    def throttled(self) -> set[str]:
        """Subscriptions in the throttle list the policy reads."""
        return set(decode_throttle_list(self.apim.named_value(NAMED_VALUE) or ""))

    def check(self, now: datetime) -> Any:
        """The budget check of the month of ``now``."""
        return check_budgets(
            LocalKqlRunner(self.store.connection),
            load_budgets(self.config["budgets"]),
            [],
            now.strftime("%Y-%m"),
            now,
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """Ten priced calls each for team-t/s/x, one for team-ok, one priced and six estimated for team-e."""
    config = {"rate_card": tmp_path / "rate_card.csv", "deployments": tmp_path / "deployments.csv"}
    config["budgets"] = tmp_path / "budgets.csv"
    config["rate_card"].write_text(RATE_CARD, encoding="utf-8")
    config["deployments"].write_text(DEPLOYMENTS, encoding="utf-8")
    config["budgets"].write_text(BUDGETS, encoding="utf-8")
    environ = {
        "CHARGEBACK_DUCKDB_PATH": str(tmp_path / "store.duckdb"),
        "RATE_CARD_PATH": str(config["rate_card"]),
        "DEPLOYMENTS_PATH": str(config["deployments"]),
        "BUDGETS_PATH": str(config["budgets"]),
        "DEADLETTER_PATH": str(tmp_path / "dl"),
        "BUDGET_ENFORCEMENT": "on",
        "BUDGET_ENFORCEMENT_EXEMPT": "team-x",
    }
    with LocalApim() as apim:
        for team in ("team-t", "team-s", "team-x", "team-e", "team-ok"):
            apim.add_subscription(team, team.title())
        apim.set_named_value(NAMED_VALUE, "e30=")  # what the Bicep deployment creates
        environ |= {"APIM_MANAGEMENT_ENDPOINT": apim.endpoint, "APIM_RESOURCE_ID": apim.service_id}
        store = build_writer(Settings.from_env(environ))
        events = [
            make_event(
                subscriptionId=team, subscriptionName=team.title(), timestamp=f"2026-11-{2 + i:02d}T09:00:00Z"
            )
            for team in ("team-t", "team-s", "team-x")
            for i in range(10)
        ]
        events += [
            make_event(subscriptionId=team, timestamp="2026-11-03T09:00:00Z")
            for team in ("team-ok", "team-e")
        ]
        events += [estimated_event("team-e", i) for i in range(6)]
        monthdata.ingest(store, config, events, tmp_path / "dl")
        yield World(store, config, apim, environ)


def test_estimated_spend_is_reported_apart(world: World) -> None:
    """month_to_date_spend.kql returns team-e's estimated spend apart; it alone exceeds the budget."""
    spend = {s.subscription_id: s for s in world.check(MID_NOVEMBER).spends}
    assert spend["team-e"].estimated_spend > spend["team-e"].budget.monthly_budget
    assert spend["team-e"].spend - spend["team-e"].estimated_spend < Decimal("0.005")
    assert spend["team-t"].estimated_spend == 0


def test_crossing_teams_are_throttled_and_suspended_once_and_lifted_when_the_month_rolls_over(
    world: World,
) -> None:
    """team-t is throttled and team-s suspended once; exempt, estimated-only and in-budget teams are not."""
    handle_budget_enforcement(MID_NOVEMBER, world.environ)
    assert world.throttled() == {"team-t"}
    assert decode_throttle_list(world.apim.named_value(NAMED_VALUE) or "")["team-t"].resets_at == (
        "2026-12-01T00:00:00Z"
    )
    assert world.apim.subscription_state("team-s") == "suspended"
    assert {t: world.apim.subscription_state(t) for t in ("team-x", "team-e", "team-ok")} == dict.fromkeys(
        ("team-x", "team-e", "team-ok"), "active"
    )
    assert world.alerts() == [
        ("suspend", "2026-11/team-s/suspend/90"),
        ("throttle", "2026-11/team-t/throttle/100"),
    ]
    writes = len(world.apim.writes())

    handle_budget_enforcement(MID_NOVEMBER.replace(hour=13), world.environ)
    assert len(world.apim.writes()) == writes
    assert len(world.alerts()) == 2

    handle_budget_enforcement(DECEMBER, world.environ)
    assert world.throttled() == set()
    assert world.apim.subscription_state("team-s") == "active"
    assert world.alerts("lift") == [
        ("lift-suspend", "2026-11/team-s/suspend/90/lifted"),
        ("lift-throttle", "2026-11/team-t/throttle/100/lifted"),
    ]
    handle_budget_enforcement(DECEMBER.replace(hour=1), world.environ)
    assert len(world.alerts()) == 4


def test_a_raised_budget_lifts_the_throttle_within_the_month(world: World) -> None:
    """Raising team-t's budget above its spend lifts the throttle at the next check, and records it."""
    handle_budget_enforcement(MID_NOVEMBER, world.environ)
    world.config["budgets"].write_text(
        BUDGETS.replace("team-t,Team T,CC-T,t@example.com,0.02", "team-t,Team T,CC-T,t@example.com,5")
    )
    handle_budget_enforcement(MID_NOVEMBER.replace(hour=14), world.environ)
    assert world.throttled() == set()
    assert ("lift-throttle", "2026-11/team-t/throttle/100/lifted") in world.alerts()
    assert world.apim.subscription_state("team-s") == "suspended"


def test_a_reset_throttle_list_is_rewritten_without_a_new_record(world: World) -> None:
    """A redeploy that resets the named value to {} is repaired by the next check, recorded once."""
    handle_budget_enforcement(MID_NOVEMBER, world.environ)
    world.apim.set_named_value(NAMED_VALUE, "e30=")
    handle_budget_enforcement(MID_NOVEMBER.replace(hour=13), world.environ)
    assert world.throttled() == {"team-t"}
    assert len(world.alerts()) == 2


def test_a_failed_action_is_alerted_once_and_retried_by_the_next_check(world: World) -> None:
    """An APIM outage past the retries is an enforce-failed alert (once); the next run applies it."""
    runner = LocalKqlRunner(world.store.connection)
    sink = StoreAlertSink(world.store)
    options = EnforcementOptions(exempt=frozenset({"team-x"}))
    gateway = ApimManagement(
        world.apim.endpoint,
        world.apim.service_id,
        LocalStandInCredential(),
        retry_total=1,
        retry_backoff_factor=0.01,
    )
    with gateway:
        world.apim.fail_next(100)
        first = run_enforcement(world.check(MID_NOVEMBER), runner, sink, gateway, options, now=MID_NOVEMBER)
        assert {step.subscription_id for step, _ in first.failed} == {"team-t", "team-s"}
        assert [k for k, _ in world.alerts()] == ["enforce-failed", "enforce-failed"]
        run_enforcement(world.check(MID_NOVEMBER), runner, sink, gateway, options, now=MID_NOVEMBER)
        assert len(world.alerts()) == 2  # failures alert once
        world.apim.state.failures.clear()
        third = run_enforcement(world.check(MID_NOVEMBER), runner, sink, gateway, options, now=MID_NOVEMBER)
    assert not third.failed
    assert world.throttled() == {"team-t"}
    assert world.apim.subscription_state("team-s") == "suspended"
    assert sorted(k for k, _ in world.alerts()) == ["enforce-failed", "enforce-failed", "suspend", "throttle"]


def test_the_timer_fails_loudly_when_an_action_fails(world: World) -> None:
    """Through the wiring, a failed step still records its alert and then raises EnforcementError."""
    world.apim.fail_next(1000, 400)
    with pytest.raises(EnforcementError, match="budget action"):
        handle_budget_enforcement(MID_NOVEMBER, world.environ)
    assert {k for k, _ in world.alerts()} == {"enforce-failed"}


def test_enforcement_is_off_unless_configured(world: World) -> None:
    """Without BUDGET_ENFORCEMENT=on the hourly timer does nothing and calls no APIM API."""
    environ = {k: v for k, v in world.environ.items() if k != "BUDGET_ENFORCEMENT"}
    assert handle_budget_enforcement(MID_NOVEMBER, environ) is None
    assert world.apim.state.requests == []


class _Hook(BaseHTTPRequestHandler):
    posts: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        _Hook.posts.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_actions_and_lifts_go_to_the_webhook(world: World) -> None:
    """The webhook gets one message for the two actions, then one for the two lifts."""
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    environ = world.environ | {"ALERT_WEBHOOK_URL": f"http://127.0.0.1:{server.server_address[1]}/hook"}
    try:
        handle_budget_enforcement(MID_NOVEMBER, environ)
        handle_budget_enforcement(DECEMBER, environ)
    finally:
        server.shutdown()
        server.server_close()
    texts = [post["text"] for post in _Hook.posts]
    assert len(texts) == 2
    assert "[throttle] Team-T throttle applied" in texts[0]
    assert "[suspend]" in texts[0]
    assert "[lift-throttle]" in texts[1]
    assert "2026-11 is over" in texts[1]


def test_dry_run_prints_the_plan_and_writes_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``budgets check --dry-run`` lists the actions it would apply; no alert, no APIM call."""
    from chargeback.cli import main

    for key, value in world.environ.items():
        monkeypatch.setenv(key, value)
    code = main(["budgets", "check", "--dry-run", "--as-of", "2026-11-20T12:00:00Z"])
    out = capsys.readouterr().out
    assert code == 0
    assert "would apply: Team-T throttle applied" in out
    assert "would apply: Team-S suspend applied" in out
    assert world.alerts() == []
    assert world.apim.state.requests == []
