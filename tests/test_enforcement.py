"""The pure enforcement decision: which actions apply and lift, once, and never on a price error."""

from __future__ import annotations

from decimal import Decimal

import pytest

from chargeback.core.config import ConfigErrors
from chargeback.core.enforcement import (
    ALERT_ONLY,
    KIND_APPLIED,
    KIND_LIFTED,
    ActiveAction,
    Enforcement,
    EnforcementPosition,
    Throttle,
    action_id,
    decode_throttle_list,
    encode_throttle_list,
    lift_id,
    parse_enforcement,
    parse_exempt,
    plan,
)

MONTH = "2026-11"
THROTTLE_100 = Enforcement("throttle", Decimal(100))


def position(sub: str, spend: str, rule: Enforcement = THROTTLE_100, **kw: object) -> EnforcementPosition:
    """A team with a 10 USD budget and the given month-to-date spend."""
    fields: dict[str, object] = {"monthly_budget": Decimal(10), "estimated_spend": Decimal(0)} | kw
    return EnforcementPosition(sub, sub.title(), "USD", enforcement=rule, spend=Decimal(spend), **fields)  # type: ignore[arg-type]


def active(sub: str, action: str = "throttle", month: str = MONTH) -> ActiveAction:
    """An action in force since earlier in the month."""
    return ActiveAction(action_id(month, sub, action, Decimal(100)), month, sub, action, Decimal(100))


def test_action_columns_default_to_alert_only() -> None:
    """A row without the action columns (an old budgets file) keeps today's alert-only behaviour."""
    errors = ConfigErrors("budgets.csv")
    assert parse_enforcement({}, 2, errors) == ALERT_ONLY
    assert parse_enforcement({"action": "", "action_threshold": "", "grace": ""}, 2, errors) == ALERT_ONLY
    errors.raise_if_any()


def test_action_columns_parse_and_bad_values_name_the_line() -> None:
    """throttle at 90 % with 1.50 grace parses; an unknown action or a negative grace is an error."""
    errors = ConfigErrors("budgets.csv")
    rule = parse_enforcement({"action": "Throttle", "action_threshold": "90", "grace": "1.50"}, 3, errors)
    assert rule == Enforcement("throttle", Decimal(90), Decimal("1.50"))
    assert rule.limit(Decimal(10)) == Decimal("10.50")
    parse_enforcement({"action": "block"}, 4, errors)
    parse_enforcement({"action": "suspend", "grace": "-1"}, 5, errors)
    parse_enforcement({"action": "suspend", "action_threshold": "0"}, 6, errors)
    assert [e.split(":")[0] for e in errors.messages] == ["line 4", "line 5", "line 6"]


def test_crossing_a_throttle_budget_applies_once() -> None:
    """Spend at the limit applies the action; with it in force, the next check does nothing."""
    steps = plan([position("team-a", "10.00"), position("team-b", "9.99")], [], MONTH)
    assert [(s.kind, s.subscription_id, s.action, s.record_id) for s in steps] == [
        (KIND_APPLIED, "team-a", "throttle", "2026-11/team-a/throttle/100")
    ]
    assert "10.00 USD" in steps[0].reason
    assert plan([position("team-a", "12")], [active("team-a")], MONTH) == []


def test_grace_and_threshold_move_the_line() -> None:
    """With 2.00 grace at 80 %, the action waits until 10.00 (8.00 + 2.00)."""
    rule = Enforcement("suspend", Decimal(80), Decimal(2))
    assert plan([position("t", "9.99", rule)], [], MONTH) == []
    assert [s.action for s in plan([position("t", "10", rule)], [], MONTH)] == ["suspend"]


def test_alert_only_exempt_and_budgetless_teams_are_never_acted_on() -> None:
    """alert, an exempt subscription and a team without a budget are not throttled however much they spend."""
    positions = [
        position("alerting", "99", ALERT_ONLY),
        position("vip", "99"),
        position("nobudget", "99", monthly_budget=None),
    ]
    assert plan(positions, [], MONTH, exempt=frozenset({"vip"})) == []


def test_estimated_spend_does_not_count_unless_configured() -> None:
    """8 exact + 3 estimated is below a 10 limit by default, over it when estimated spend counts."""
    team = position("team-a", "11", estimated_spend=Decimal(3))
    assert plan([team], [], MONTH) == []
    assert len(plan([team], [], MONTH, count_estimated=True)) == 1


def test_month_rollover_lifts_last_months_actions() -> None:
    """An action of October still in force in November is lifted, even if the team is still over."""
    steps = plan([position("team-a", "0")], [active("team-a", month="2026-10")], MONTH)
    assert [(s.kind, s.month, s.record_id) for s in steps] == [
        (KIND_LIFTED, "2026-10", lift_id("2026-10/team-a/throttle/100"))
    ]
    assert "2026-10 is over" in steps[0].reason


@pytest.mark.parametrize(
    ("team", "exempt", "why"),
    [
        (position("team-a", "12", monthly_budget=Decimal(20)), frozenset(), "below the new limit"),
        (position("team-a", "12", ALERT_ONLY), frozenset(), "action is now alert"),
        (position("team-a", "12"), frozenset({"team-a"}), "exempt"),
        (position("team-a", "12", monthly_budget=None), frozenset(), "no longer has a budget"),
    ],
)
def test_a_raised_budget_changed_action_or_exemption_lifts(
    team: EnforcementPosition, exempt: frozenset[str], why: str
) -> None:
    """Within the month, an action is lifted once the team no longer qualifies for it."""
    steps = plan([team], [active("team-a")], MONTH, exempt=exempt)
    assert [s.kind for s in steps] == [KIND_LIFTED]
    assert why in steps[0].reason


def test_a_second_crossing_in_the_month_gets_a_new_id() -> None:
    """After a lift in the same month, crossing again applies under ``.../2`` (the first id is taken)."""
    first = action_id(MONTH, "team-a", "throttle", Decimal(100))
    steps = plan([position("team-a", "25")], [], MONTH, known_ids={first, lift_id(first)})
    assert [s.record_id for s in steps] == [f"{first}/2"]


def test_exempt_list_setting_splits_on_commas_semicolons_and_spaces() -> None:
    """``a, b;c`` names three subscriptions."""
    assert parse_exempt("a, b;c") == {"a", "b", "c"}
    assert parse_exempt("") == frozenset()


def test_throttle_list_round_trips_and_stays_a_safe_literal() -> None:
    """The named value is base64 (no quote or backslash for the C# literal) and decodes back."""
    entries = {'t"eam\\x': Throttle('Bud"get\n€', "2026-12-01T00:00:00Z")}
    value = encode_throttle_list(entries)
    assert not set(value) & set('"\\\n{}')
    assert decode_throttle_list(value) == entries
    assert decode_throttle_list(encode_throttle_list({})) == {}


def test_throttle_list_refuses_what_a_named_value_cannot_hold() -> None:
    """More throttled teams than 4,096 characters hold is an error, and foreign text is rejected."""
    many = {f"subscription-{i:04d}": Throttle("A budget name", "2026-12-01T00:00:00Z") for i in range(80)}
    with pytest.raises(ValueError, match="4096"):
        encode_throttle_list(many)
    with pytest.raises(ValueError, match="not base64"):
        decode_throttle_list("not a list!")
