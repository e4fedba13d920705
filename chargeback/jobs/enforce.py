"""Budget enforcement: apply and lift throttles and suspensions at the gateway, once, on the record.

Runs after a budget check of the current month (daily with the alerts, and hourly on its own) when
``BUDGET_ENFORCEMENT=on``. The decision is ``chargeback.core.enforcement.plan``; this job reads
what is in force, carries the steps out through the gateway, and records each one:

1. the actions in force: ``enforcement_actions.kql`` over the alerts table (an applied action
   without a ``.../lifted`` row);
2. the plan: applies and lifts for the month's positions;
3. ``suspend``: PATCH the APIM subscription to ``suspended`` (a lift PATCHes it back to ``active``,
   only if it is still ``suspended``: a subscription an admin cancelled meanwhile stays so);
4. ``throttle``: the named value ``aoai-chargeback-throttled`` (``APIM_THROTTLE_NAMED_VALUE``)
   holds the throttled subscriptions; the policy answers their calls with 429. The job owns that
   value: it is rewritten from the record whenever it differs (e.g. after a redeploy reset it);
5. every step that worked becomes a row in ``AOAIChargebackAlerts_CL`` (AlertKind ``throttle``,
   ``suspend``, ``lift-throttle``, ``lift-suspend``) and a line on the webhook;
6. a step that failed (after the client's retries) is not recorded as done, so the next run tries
   it again, and it raises an ``enforce-failed`` alert (once per step) and a webhook line; the
   caller raises ``EnforcementError`` at the end so the Function run shows as failed.

A dry run (``chargeback budgets check --dry-run``) is ``plan_enforcement``: it calls nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from chargeback.core.enforcement import (
    ALERT_ONLY,
    ENFORCING,
    KIND_FAILED,
    SUSPEND,
    THROTTLE,
    ActiveAction,
    EnforcementPosition,
    Step,
    Throttle,
    decode_throttle_list,
    encode_throttle_list,
    failure_id,
    month_reset,
    plan,
)
from chargeback.core.pipeline import Row
from chargeback.edges.kqlrun import KqlRunner
from chargeback.edges.sinks import AlertSink
from chargeback.errors import EnforcementError
from chargeback.jobs.alerts import Notify
from chargeback.jobs.budgets import BudgetCheck
from chargeback.jobs.rollup import month_window, to_decimal, to_text

log = logging.getLogger("chargeback.jobs.enforce")

ACTIONS_QUERY = "enforcement_actions"
LOOKBACK = timedelta(days=100)  # actions older than this are not looked for (three months and more)
ACTIVE, SUSPENDED = "active", "suspended"


class Gateway(Protocol):
    """The APIM management calls enforcement makes (``chargeback.edges.apim.ApimManagement``)."""

    def subscription_state(self, sid: str) -> str: ...

    def set_subscription_state(self, sid: str, state: str, comment: str = "") -> str: ...

    def named_value(self, name: str) -> str | None: ...

    def put_named_value(self, name: str, value: str) -> None: ...


@dataclass(frozen=True, slots=True)
class EnforcementOptions:
    """How enforcement runs (from settings, built by the wiring)."""

    exempt: frozenset[str] = frozenset()
    count_estimated: bool = False
    throttle_named_value: str = "aoai-chargeback-throttled"


@dataclass(slots=True)
class EnforcementRun:
    """What one enforcement run planned, did and could not do."""

    month: str
    steps: list[Step] = field(default_factory=list)
    done: list[Step] = field(default_factory=list)
    failed: list[tuple[Step, str]] = field(default_factory=list)
    recorded: list[Row] = field(default_factory=list)
    throttle_list_written: bool = False
    dry_run: bool = False
    active: list[ActiveAction] = field(default_factory=list)
    known: set[str] = field(default_factory=set)

    def lines(self) -> list[str]:
        """One readable line per planned step and failure (what the CLI prints)."""
        verb = "would" if self.dry_run else "did"
        lines = [f"{verb} {'apply' if s.is_apply else 'lift'}: {s.reason}" for s in self.steps]
        lines += [f"FAILED {s.kind} {s.action} {s.subscription_id}: {error}" for s, error in self.failed]
        return lines


def positions(check: BudgetCheck) -> list[EnforcementPosition]:
    """Each subscription's enforcement position from a budget check (one per subscription)."""
    found: dict[str, EnforcementPosition] = {}
    for spend in check.spends:
        budget = spend.budget
        if spend.subscription_id in found and budget is None:
            continue  # a second currency without the budget: the budgeted one decides
        found[spend.subscription_id] = EnforcementPosition(
            spend.subscription_id,
            spend.subscription_name,
            spend.currency,
            budget.monthly_budget if budget else None,
            budget.enforcement if budget else ALERT_ONLY,
            spend.spend,
            spend.estimated_spend,
        )
    return list(found.values())


def recorded_actions(runner: KqlRunner, now: datetime) -> tuple[list[ActiveAction], set[str]]:
    """The actions in force and every enforcement AlertId already recorded."""
    now = now.astimezone(UTC)
    since = now - LOOKBACK
    frame = runner.run(ACTIONS_QUERY, {"Since": since}, window=(since, now + timedelta(days=1)))
    rows = frame.to_dict("records")
    known = {to_text(row["AlertId"]) for row in rows}
    active = [
        ActiveAction(
            to_text(row["AlertId"]),
            to_text(row["Month"]),
            to_text(row["SubscriptionId"]),
            to_text(row["AlertKind"]),
            to_decimal(row["ThresholdPct"]),
            to_text(row["SubscriptionName"]),
        )
        for row in rows
        if to_text(row["AlertKind"]) in ENFORCING and f"{to_text(row['AlertId'])}/lifted" not in known
    ]
    return active, known


def step_row(step: Step, now: datetime, *, kind: str = "", message: str = "") -> Row:
    """The ``AOAIChargebackAlerts_CL`` row recording a step (or its failure)."""
    return {
        "TimeGenerated": now.astimezone(UTC),
        "AlertId": failure_id(step) if kind == KIND_FAILED else step.record_id,
        "Month": step.month,
        "SubscriptionId": step.subscription_id,
        "SubscriptionName": step.subscription_name,
        "CostCenter": "",
        "Owner": "",
        "AlertKind": kind or (step.action if step.is_apply else f"lift-{step.action}"),
        "ThresholdPct": step.threshold,
        "Budget": step.budget,
        "Spend": step.spend,
        "Forecast": None,
        "Currency": step.currency,
        "Message": message or step.reason,
    }


def _throttle_entries(active: Sequence[ActiveAction], steps: Sequence[Step]) -> dict[str, Throttle]:
    """The throttle list once the steps are done: throttles in force, minus lifts, plus applies."""
    lifted = {step.action_id for step in steps if not step.is_apply}
    entries: dict[str, Throttle] = {}
    for entry in active:
        if entry.action == THROTTLE and entry.action_id not in lifted:
            entries[entry.subscription_id] = Throttle(
                entry.subscription_name or entry.subscription_id, month_reset(month_window(entry.month)[1])
            )
    for step in steps:
        if step.is_apply and step.action == THROTTLE:
            entries[step.subscription_id] = Throttle(
                step.subscription_name or step.subscription_id, month_reset(month_window(step.month)[1])
            )
    return entries


def _sync_throttle_list(gateway: Gateway, name: str, wanted: dict[str, Throttle]) -> bool:
    """Write the named value if it differs from ``wanted``; True when it was written."""
    value = encode_throttle_list(wanted) if wanted else encode_throttle_list({})
    current = gateway.named_value(name)
    if current is not None:
        try:
            if decode_throttle_list(current) == wanted:
                return False
        except ValueError as exc:
            log.warning("named value %s was not a throttle list (%s): rewriting it", name, exc)
    gateway.put_named_value(name, value)
    return True


def plan_enforcement(
    check: BudgetCheck, runner: KqlRunner, options: EnforcementOptions, *, now: datetime
) -> EnforcementRun:
    """The month's applies and lifts, given what the alerts table says is in force (calls nothing)."""
    active, known = recorded_actions(runner, now)
    steps = plan(
        positions(check),
        active,
        check.month,
        known_ids=known,
        exempt=options.exempt,
        count_estimated=options.count_estimated,
    )
    return EnforcementRun(check.month, steps, active=active, known=known, dry_run=True)


def run_enforcement(
    check: BudgetCheck,
    runner: KqlRunner,
    sink: AlertSink,
    gateway: Gateway | None,
    options: EnforcementOptions,
    *,
    now: datetime,
    notify: Notify | None = None,
) -> EnforcementRun:
    """Plan the month's applies and lifts, carry them out through the gateway and record them.

    ``notify`` (the webhook poster, when one is configured) gets the rows recorded, once per run.
    """
    run = plan_enforcement(check, runner, options, now=now)
    run.dry_run = False
    steps, active, known = run.steps, run.active, run.known
    if gateway is None:
        raise EnforcementError("budget enforcement is on but no APIM management client was configured")
    for step in steps:
        if step.action != SUSPEND:
            continue
        try:
            if step.is_apply:
                gateway.set_subscription_state(step.subscription_id, SUSPENDED, step.reason)
            elif gateway.subscription_state(step.subscription_id) == SUSPENDED:
                gateway.set_subscription_state(step.subscription_id, ACTIVE, step.reason)
            run.done.append(step)
        except EnforcementError as exc:
            run.failed.append((step, exc.detail))
    throttle_steps = [step for step in steps if step.action == THROTTLE]
    try:
        run.throttle_list_written = _sync_throttle_list(
            gateway, options.throttle_named_value, _throttle_entries(active, throttle_steps)
        )
        run.done.extend(throttle_steps)
    except (EnforcementError, ValueError) as exc:
        detail = exc.detail if isinstance(exc, EnforcementError) else str(exc)
        run.failed.extend((step, detail) for step in throttle_steps)
        if not throttle_steps:  # the list drifted and could not be repaired: still worth an error
            log.error("could not repair the throttle list %s: %s", options.throttle_named_value, detail)
    rows = [step_row(step, now) for step in run.done]
    for step, error in run.failed:
        verb = "apply" if step.is_apply else "lift"
        message = (
            f"could not {verb} {step.action} of {step.subscription_name or step.subscription_id} "
            f"({error}); retried on the next check. Planned: {step.reason}"
        )
        log.error("budget enforcement failed: %s", message)
        if failure_id(step) not in known:
            rows.append(step_row(step, now, kind=KIND_FAILED, message=message))
    if rows:
        written = sink.write_alerts(rows)
        run.recorded = [row for row in rows if row["AlertId"] in written]
        missing = [str(row["AlertId"]) for row in rows if row["AlertId"] not in written]
        if missing:
            log.error(
                "budget enforcement: %d record(s) not written (%s); the next check redoes them",
                len(missing),
                ", ".join(missing),
            )
        for row in run.recorded:
            log.warning("budget enforcement %s: %s", row["AlertKind"], row["Message"])
        if notify is not None and run.recorded:
            notify(run.recorded)
    return run
