"""Budgets that can bite: what a team's month-to-date position calls for at the gateway (pure).

A budget may carry an action besides its alerts (``budgets.csv`` optional columns; a file without
them keeps today's alert-only behaviour)::

    action            alert (default) | throttle | suspend
    action_threshold  percent of the monthly budget at which the action applies (default 100)
    grace             an amount in the budget's currency tolerated above that line (default 0)

- ``throttle``: the APIM policy answers the team's calls with 429 and a JSON error naming the budget
  and when it resets (the list of throttled subscriptions is an APIM named value the policy reads);
- ``suspend``: the APIM subscription is suspended (its key stops working everywhere);
- ``alert``: nothing is blocked.

The decision (``plan``) compares every team's counted spend with ``budget x threshold / 100 +
grace`` and the actions already in force (read back from the alerts table), and returns the steps:

- **apply** once per team, action, threshold and month (an action is recorded, and so in force,
  until its lift is recorded);
- **lift** when the month has rolled over, or when the team no longer qualifies in the month
  (budget or threshold raised, action changed back to ``alert``, budget removed, team exempted).

Safety: only spend that was priced exactly counts (``EnforcementPosition.counted``); unpriced calls
cost nothing here and estimated spend counts only when the operator asks for it, so a price error
never blocks a team. Exempt subscriptions are never acted on (an action in force is lifted).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from chargeback.core.config import ConfigErrors

ALERT, THROTTLE, SUSPEND = "alert", "throttle", "suspend"
ACTIONS = (ALERT, THROTTLE, SUSPEND)
ENFORCING = (THROTTLE, SUSPEND)
ENFORCEMENT_COLUMNS = ("action", "action_threshold", "grace")
DEFAULT_ACTION_THRESHOLD = Decimal(100)

# AlertKind values of the alerts table's enforcement rows.
KIND_APPLIED = "enforce"
KIND_LIFTED = "lift"
KIND_FAILED = "enforce-failed"


@dataclass(frozen=True, slots=True)
class Enforcement:
    """A budget's action: what happens at the gateway once spend passes ``threshold`` + ``grace``."""

    action: str = ALERT
    threshold: Decimal = DEFAULT_ACTION_THRESHOLD
    grace: Decimal = Decimal(0)

    @property
    def enforcing(self) -> bool:
        """True for throttle and suspend (alert blocks nothing)."""
        return self.action in ENFORCING

    def limit(self, monthly_budget: Decimal) -> Decimal:
        """The spend at which the action applies: threshold % of the budget plus the grace amount."""
        return monthly_budget * self.threshold / 100 + self.grace


ALERT_ONLY = Enforcement()


def _decimal(raw: str) -> Decimal | None:
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return None
    return value if value.is_finite() else None


def parse_enforcement(values: Mapping[str, str], line: int, errors: ConfigErrors) -> Enforcement:
    """The action columns of one budgets.csv row (absent or blank = alert only); errors name the line."""
    action = values.get("action", "").strip().lower() or ALERT
    if action not in ACTIONS:
        errors.add(line, f"action {action!r} is not one of {', '.join(ACTIONS)}")
        return ALERT_ONLY
    raw_threshold = values.get("action_threshold", "").strip()
    threshold = DEFAULT_ACTION_THRESHOLD
    if raw_threshold:
        parsed = _decimal(raw_threshold)
        if parsed is None or parsed <= 0:
            errors.add(line, f"action_threshold {raw_threshold!r} must be a positive percentage")
            return ALERT_ONLY
        threshold = parsed
    raw_grace = values.get("grace", "").strip()
    grace = Decimal(0)
    if raw_grace:
        parsed = _decimal(raw_grace)
        if parsed is None or parsed < 0:
            errors.add(line, f"grace {raw_grace!r} must be an amount of 0 or more")
            return ALERT_ONLY
        grace = parsed
    return Enforcement(action, threshold, grace)


def parse_exempt(raw: str) -> frozenset[str]:
    """The exempt list setting: subscription ids separated by commas, semicolons or spaces."""
    return frozenset(part for part in raw.replace(";", ",").replace(" ", ",").split(",") if part)


@dataclass(frozen=True, slots=True)
class EnforcementPosition:
    """One team's month to date, as enforcement sees it."""

    subscription_id: str
    subscription_name: str
    currency: str
    monthly_budget: Decimal | None
    enforcement: Enforcement
    spend: Decimal
    estimated_spend: Decimal = Decimal(0)

    def counted(self, *, count_estimated: bool) -> Decimal:
        """Spend that counts toward enforcement: exact spend, plus estimated spend only when asked."""
        return self.spend if count_estimated else self.spend - self.estimated_spend


@dataclass(frozen=True, slots=True)
class ActiveAction:
    """An action recorded in the alerts table and not lifted yet."""

    action_id: str
    month: str
    subscription_id: str
    action: str
    threshold: Decimal
    subscription_name: str = ""


@dataclass(frozen=True, slots=True)
class Step:
    """One thing to do at the gateway: apply or lift an action, and the record that says so."""

    kind: str  # KIND_APPLIED or KIND_LIFTED
    record_id: str  # AlertId of the row that records this step
    action_id: str  # AlertId of the action (the same as record_id for an apply)
    month: str
    subscription_id: str
    subscription_name: str
    action: str
    threshold: Decimal
    reason: str
    budget: Decimal | None = None
    limit: Decimal | None = None
    spend: Decimal | None = None
    currency: str = ""

    @property
    def is_apply(self) -> bool:
        """True for an apply, False for a lift."""
        return self.kind == KIND_APPLIED


def action_id(month: str, subscription_id: str, action: str, threshold: Decimal, occurrence: int = 1) -> str:
    """AlertId of an action: ``YYYY-MM/subscription/action/threshold`` (``/n`` from its 2nd time)."""
    base = f"{month}/{subscription_id}/{action}/{threshold.normalize():f}"
    return base if occurrence <= 1 else f"{base}/{occurrence}"


def lift_id(action_alert_id: str) -> str:
    """AlertId of the row that lifts an action."""
    return f"{action_alert_id}/lifted"


def failure_id(step: Step) -> str:
    """AlertId of the alert that says a step failed (one per step, so a failure alerts once)."""
    return f"{step.record_id}/failed"


def _money(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):,}"


def plan(
    positions: Iterable[EnforcementPosition],
    active: Sequence[ActiveAction],
    month: str,
    *,
    known_ids: Iterable[str] = (),
    exempt: frozenset[str] = frozenset(),
    count_estimated: bool = False,
) -> list[Step]:
    """The applies and lifts that ``month``'s positions call for, given the actions in force.

    ``known_ids`` are AlertIds already recorded (so that a second action in the same month after a
    lift gets a new id); lifts come first, then applies, each in subscription order.
    """
    by_subscription = {position.subscription_id: position for position in positions}
    known = set(known_ids)
    steps: list[Step] = []
    in_force: set[tuple[str, str]] = set()
    for entry in sorted(active, key=lambda item: (item.month, item.subscription_id, item.action_id)):
        position = by_subscription.get(entry.subscription_id)
        reason = ""
        if entry.month != month:
            reason = f"the month {entry.month} is over"
        elif entry.subscription_id in exempt:
            reason = "the subscription is exempt from enforcement"
        elif position is None or position.monthly_budget is None:
            reason = "the subscription no longer has a budget"
        elif position.enforcement.action != entry.action:
            reason = f"the budget's action is now {position.enforcement.action}"
        else:
            limit = position.enforcement.limit(position.monthly_budget)
            counted = position.counted(count_estimated=count_estimated)
            if counted < limit:
                reason = (
                    f"spend {_money(counted)} {position.currency} is below the new limit "
                    f"{_money(limit)} {position.currency} (budget or threshold raised)"
                )
        if not reason:
            in_force.add((entry.subscription_id, entry.action))
            continue
        name = (position.subscription_name if position else "") or entry.subscription_name
        steps.append(
            Step(
                KIND_LIFTED,
                lift_id(entry.action_id),
                entry.action_id,
                entry.month,
                entry.subscription_id,
                name,
                entry.action,
                entry.threshold,
                f"{entry.action} of {name or entry.subscription_id} lifted: {reason}",
                position.monthly_budget if position else None,
                None,
                position.spend if position else None,
                position.currency if position else "",
            )
        )
    for subscription_id in sorted(by_subscription):
        position = by_subscription[subscription_id]
        rule = position.enforcement
        if not rule.enforcing or position.monthly_budget is None or subscription_id in exempt:
            continue
        if (subscription_id, rule.action) in in_force:
            continue
        limit = rule.limit(position.monthly_budget)
        counted = position.counted(count_estimated=count_estimated)
        if counted < limit:
            continue
        occurrence = 1
        while action_id(month, subscription_id, rule.action, rule.threshold, occurrence) in known:
            occurrence += 1
        record = action_id(month, subscription_id, rule.action, rule.threshold, occurrence)
        name = position.subscription_name or subscription_id
        grace = f" plus {_money(rule.grace)} grace" if rule.grace else ""
        steps.append(
            Step(
                KIND_APPLIED,
                record,
                record,
                month,
                subscription_id,
                position.subscription_name,
                rule.action,
                rule.threshold,
                f"{name} {rule.action} applied: spent {_money(counted)} {position.currency} in {month}, "
                f"over {rule.threshold.normalize():f}% of its {_money(position.monthly_budget)} "
                f"{position.currency} budget{grace}",
                position.monthly_budget,
                limit,
                counted,
                position.currency,
            )
        )
    return steps


def month_reset(month_end: datetime) -> str:
    """When a throttle lifts by itself: the first instant of the next month, ISO 8601 UTC."""
    return month_end.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- the throttle list: the APIM named value the policy reads ---------------------------------

THROTTLE_NAMED_VALUE = "aoai-chargeback-throttled"
NAMED_VALUE_MAX = 4096  # APIM: a named value is 1 to 4096 characters, never blank
EMPTY_THROTTLE_LIST = "e30="  # base64 of "{}"


@dataclass(frozen=True, slots=True)
class Throttle:
    """One throttled subscription as the policy sees it: the budget's name and when it resets."""

    budget: str
    resets_at: str


def encode_throttle_list(entries: Mapping[str, Throttle]) -> str:
    """The named value: base64 of compact JSON ``{"subscription": ["budget name", resetEpochSeconds]}``.

    Base64 because APIM pastes a named value's text into the policy expression as is, inside a C#
    string literal: base64 has no quote, backslash or newline that could break it. The reset time
    is a number of seconds since 1970 because Newtonsoft.Json (in APIM) turns ISO date strings into
    dates that print in the gateway's culture. Raises ValueError when the list would not fit in a
    named value (4,096 characters) or a reset time is not ISO 8601.
    """
    import base64
    import json

    document = {key: [entries[key].budget, _epoch(entries[key].resets_at)] for key in sorted(entries)}
    text = json.dumps(document, separators=(",", ":"), ensure_ascii=False)
    value = base64.b64encode(text.encode("utf-8")).decode("ascii")
    if len(value) > NAMED_VALUE_MAX:
        raise ValueError(
            f"{len(entries)} throttled subscriptions need {len(value)} characters; "
            f"an APIM named value holds {NAMED_VALUE_MAX}"
        )
    return value


def _epoch(resets_at: str) -> int:
    from datetime import UTC

    moment = datetime.fromisoformat(resets_at.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def decode_throttle_list(value: str) -> dict[str, Throttle]:
    """The throttle list from the named value's text (blank = none); ValueError when it is not ours."""
    import base64
    import binascii
    import json

    text = value.strip()
    if not text:
        return {}
    try:
        document = json.loads(base64.b64decode(text, validate=True).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"the throttle list is not base64 JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ValueError("the throttle list is not a JSON object")
    from datetime import UTC

    entries = {}
    for key, item in document.items():
        if not (
            isinstance(item, list)
            and len(item) == 2
            and isinstance(item[0], str)
            and isinstance(item[1], int)
            and not isinstance(item[1], bool)
        ):
            raise ValueError(f"throttle entry {key!r} is not [budget, resetEpochSeconds]")
        try:
            reset = datetime.fromtimestamp(item[1], UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError(f"throttle entry {key!r} has no valid reset time") from None
        entries[str(key)] = Throttle(item[0], month_reset(reset))
    return entries
