"""Budgets per subscription, the month-end forecast and the alerts they raise.

``budgets.csv`` maps an APIM subscription to its cost center, owner, monthly budget, currency and
alert thresholds (percent of budget, ``;``-separated, default ``50;80;100``)::

    subscription_id,subscription_name,cost_center,owner,monthly_budget,currency,thresholds

and optionally a budget action, ``action,action_threshold,grace`` (``chargeback.core.enforcement``:
alert by default; throttle or suspend at the gateway once spend passes the threshold plus grace).

Month-to-date spend comes from ``month_to_date_spend.kql`` (per-token cost, deduplicated) plus the
PTU cost accrued so far (``monthly cost x elapsed / month length``, allocated by weighted tokens).

Forecast (straight-line run rate)::

    elapsed  = min(as_of, month_end) - month_start
    forecast = spend x (month_end - month_start) / elapsed        (= spend once the month is over)

Alerts, each identified by ``YYYY-MM/subscription/kind/threshold`` so that it fires once:

- ``actual``: spend >= threshold% of budget;
- ``forecast``: forecast >= threshold% of budget while spend is still below it, and only after
  ``MIN_FORECAST_ELAPSED`` of the month (a run rate from the first hours is noise);
- ``unpriced``: the subscription made calls no rate card row priced (threshold 0);
- ``estimated``: at least ``ESTIMATED_SHARE_PCT`` % of the subscription's per-token spend is on
  estimated counts (cut bodies charged their upper bound, recounts that could not be exact), so
  its bill rests on estimates rather than the service's own counts: worth a look at the policy.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from chargeback.core.config import (
    ConfigErrors,
    decode_config,
    parse_currency,
    parse_decimal,
    read_config_bytes,
    read_table,
)
from chargeback.core.enforcement import ALERT_ONLY, ENFORCEMENT_COLUMNS, Enforcement, parse_enforcement
from chargeback.core.pricing import Deployment
from chargeback.edges.kqlrun import KqlRunner
from chargeback.jobs.rollup import (
    CENT,
    DEFAULT_OUTPUT_WEIGHT,
    allocate_ptu,
    month_window,
    ptu_weighted_tokens,
    to_decimal,
    to_int,
    to_text,
)

log = logging.getLogger("chargeback.jobs.budgets")

BUDGET_COLUMNS = ("subscription_id", "cost_center", "owner", "monthly_budget", "currency")
BUDGET_OPTIONAL = ("subscription_name", "thresholds", *ENFORCEMENT_COLUMNS)
DEFAULT_THRESHOLDS = (Decimal(50), Decimal(80), Decimal(100))
MIN_FORECAST_ELAPSED = timedelta(days=3)
SPEND_QUERY = "month_to_date_spend"


@dataclass(frozen=True, slots=True)
class Budget:
    """One subscription's monthly budget."""

    subscription_id: str
    cost_center: str
    owner: str
    monthly_budget: Decimal
    currency: str
    thresholds: tuple[Decimal, ...] = DEFAULT_THRESHOLDS
    subscription_name: str = ""
    enforcement: Enforcement = ALERT_ONLY


def _thresholds(raw: str, line: int, errors: ConfigErrors) -> tuple[Decimal, ...]:
    if not raw.strip():
        return DEFAULT_THRESHOLDS
    values = []
    for part in raw.replace(",", ";").split(";"):
        value = parse_decimal(part.strip(), "threshold", line, errors)
        if value is None:
            continue
        if value == 0:
            errors.add(line, "threshold 0 must be a positive percentage")
            continue
        values.append(value)
    return tuple(sorted(set(values)))


def parse_budgets(text: str, source: str = "<budgets>") -> dict[str, Budget]:
    """Validate budgets CSV text by the config files' rules (``core.config``); lists every faulty line."""
    errors = ConfigErrors(source)
    budgets: dict[str, Budget] = {}
    for line, values in read_table(text, BUDGET_COLUMNS, BUDGET_OPTIONAL, errors):
        subscription = values["subscription_id"]
        if not subscription:
            errors.add(line, "subscription_id is blank")
            continue
        if subscription in budgets:
            errors.add(line, f"subscription {subscription!r} is listed twice")
            continue
        amount = parse_decimal(values["monthly_budget"], "monthly_budget", line, errors)
        currency = parse_currency(values["currency"], line, errors)
        if amount is not None and amount == 0:
            errors.add(line, "monthly_budget must be positive")
            amount = None
        thresholds = _thresholds(values.get("thresholds", ""), line, errors)
        if amount is None or currency is None:
            continue
        budgets[subscription] = Budget(
            subscription,
            values["cost_center"],
            values["owner"],
            amount,
            currency,
            thresholds,
            values.get("subscription_name", ""),
            parse_enforcement(values, line, errors),
        )
    errors.raise_if_any()
    return budgets


def load_budgets(path: Path | str) -> dict[str, Budget]:
    """Read ``budgets.csv``; a missing file means no budgets (alerts for unpriced usage only)."""
    file = Path(path)
    if not file.exists():
        log.warning("no budgets file at %s: budget alerts are off", file)
        return {}
    return parse_budgets(decode_config(read_config_bytes(file, "budgets"), str(file)), str(file))


def elapsed_fraction(start: datetime, end: datetime, as_of: datetime) -> Decimal:
    """Share of the month elapsed at ``as_of`` (0 before the month, 1 after it)."""
    total = Decimal((end - start).total_seconds())
    elapsed = Decimal((min(max(as_of, start), end) - start).total_seconds())
    return elapsed / total


def forecast_month_end(spend: Decimal, start: datetime, end: datetime, as_of: datetime) -> Decimal:
    """Straight-line run rate: spend x month length / elapsed (spend itself once the month is over)."""
    fraction = elapsed_fraction(start, end, as_of)
    if fraction >= 1:
        return spend
    if fraction <= 0:
        return Decimal(0)
    return spend / fraction


# The share of a subscription's per-token spend on estimated counts that raises an ``estimated`` alert.
ESTIMATED_SHARE_PCT = Decimal(10)


@dataclass(slots=True)
class SubscriptionSpend:
    """A subscription's month to date (one currency)."""

    subscription_id: str
    subscription_name: str
    currency: str
    requests: int = 0
    token_spend: Decimal = Decimal(0)
    ptu_spend: Decimal = Decimal(0)
    unpriced_requests: int = 0
    estimated_spend: Decimal = Decimal(0)  # per-token spend on estimated counts (budget enforcement)
    estimated_final_spend: Decimal = Decimal(0)  # the same, less streams still waiting for the LLM log
    forecast: Decimal = Decimal(0)
    budget: Budget | None = None

    @property
    def spend(self) -> Decimal:
        """Per-token spend plus the PTU share accrued so far."""
        return self.token_spend + self.ptu_spend

    @property
    def used_pct(self) -> Decimal | None:
        """Spend as a percentage of the budget, or None without a budget."""
        if self.budget is None:
            return None
        return self.spend * 100 / self.budget.monthly_budget


@dataclass(frozen=True, slots=True)
class AlertCandidate:
    """An alert the check would raise (it is written only if its AlertId is new)."""

    alert_id: str
    month: str
    kind: str
    threshold: Decimal
    spend: SubscriptionSpend
    message: str


@dataclass(slots=True)
class BudgetCheck:
    """The result of one budget check."""

    month: str
    as_of: datetime
    spends: list[SubscriptionSpend] = field(default_factory=list)
    candidates: list[AlertCandidate] = field(default_factory=list)


def alert_id(month: str, subscription_id: str, kind: str, threshold: Decimal) -> str:
    """Stable id of an alert: ``YYYY-MM/subscription/kind/threshold``."""
    return f"{month}/{subscription_id}/{kind}/{threshold.normalize():f}"


def _money(value: Decimal) -> str:
    return f"{value.quantize(CENT):,}"


def evaluate(
    spend: SubscriptionSpend, month: str, start: datetime, end: datetime, as_of: datetime
) -> list[AlertCandidate]:
    """The alerts a subscription's month-to-date position calls for (see the module docstring)."""
    candidates = []
    name = spend.subscription_name or spend.subscription_id
    if spend.unpriced_requests:
        candidates.append(
            AlertCandidate(
                alert_id(month, spend.subscription_id, "unpriced", Decimal(0)),
                month,
                "unpriced",
                Decimal(0),
                spend,
                f"{name}: {spend.unpriced_requests} call(s) in {month} have no price in the rate card "
                "(charged at 0 until the rate card is fixed and the month is rolled up again)",
            )
        )
    if spend.token_spend > 0 and spend.estimated_final_spend * 100 >= ESTIMATED_SHARE_PCT * spend.token_spend:
        share = spend.estimated_final_spend * 100 / spend.token_spend
        candidates.append(
            AlertCandidate(
                alert_id(month, spend.subscription_id, "estimated", ESTIMATED_SHARE_PCT),
                month,
                "estimated",
                ESTIMATED_SHARE_PCT,
                spend,
                f"{name}: {share.quantize(Decimal(1))}% of its {_money(spend.token_spend)} {spend.currency} "
                f"in {month} is charged on estimated counts, not the service's (cut bodies are charged "
                "their upper bound): check the APIM policy's capture for this subscription",
            )
        )
    budget = spend.budget
    if budget is None:
        return candidates
    forecast_ready = min(as_of, end) - start >= MIN_FORECAST_ELAPSED
    for threshold in budget.thresholds:
        limit = budget.monthly_budget * threshold / 100
        if spend.spend >= limit:
            candidates.append(
                AlertCandidate(
                    alert_id(month, spend.subscription_id, "actual", threshold),
                    month,
                    "actual",
                    threshold,
                    spend,
                    f"{name} has spent {_money(spend.spend)} {spend.currency} in {month}: "
                    f"{threshold.normalize():f}% of its {_money(budget.monthly_budget)} budget reached",
                )
            )
        elif forecast_ready and spend.forecast >= limit and as_of < end:
            candidates.append(
                AlertCandidate(
                    alert_id(month, spend.subscription_id, "forecast", threshold),
                    month,
                    "forecast",
                    threshold,
                    spend,
                    f"{name} is on course for {_money(spend.forecast)} {spend.currency} in {month}: "
                    f"forecast above {threshold.normalize():f}% of its "
                    f"{_money(budget.monthly_budget)} budget ({_money(spend.spend)} spent so far)",
                )
            )
    return candidates


def check_budgets(
    runner: KqlRunner,
    budgets: Mapping[str, Budget],
    ptu_deployments: Sequence[Deployment],
    month: str,
    as_of: datetime,
    *,
    output_weight: Decimal = DEFAULT_OUTPUT_WEIGHT,
) -> BudgetCheck:
    """Month-to-date spend, forecast and alert candidates for every subscription with usage or a budget."""
    start, end = month_window(month)
    as_of = as_of.astimezone(UTC)
    until = min(max(as_of, start), end)
    frame = runner.run(SPEND_QUERY, {"MonthStart": start, "AsOf": until}, window=(start, max(until, start)))
    spends: dict[tuple[str, str], SubscriptionSpend] = {}
    ptu_lines: list[tuple[str, str, int, int]] = []
    for record in frame.to_dict("records"):
        key = (to_text(record["SubscriptionId"]), to_text(record["Currency"]))
        entry = spends.get(key)
        if entry is None:
            entry = spends[key] = SubscriptionSpend(key[0], to_text(record["SubscriptionName"]), key[1])
        entry.subscription_name = max(entry.subscription_name, to_text(record["SubscriptionName"]))
        entry.requests += to_int(record["Requests"])
        entry.token_spend += to_decimal(record["Spend"])
        entry.unpriced_requests += to_int(record["UnpricedRequests"])
        if "EstimatedSpend" in record:
            entry.estimated_spend += to_decimal(record["EstimatedSpend"])
        if "EstimatedFinalSpend" in record:
            entry.estimated_final_spend += to_decimal(record["EstimatedFinalSpend"])
        deployment = to_text(record["PtuDeployment"])
        if deployment:
            ptu_lines.append(
                (deployment, key[0], to_int(record["PtuPromptTokens"]), to_int(record["PtuCompletionTokens"]))
            )
    fraction = elapsed_fraction(start, end, as_of)
    weighted = ptu_weighted_tokens(ptu_lines, output_weight)
    for allocation in allocate_ptu(ptu_deployments, weighted, fraction=fraction):
        if allocation.unallocated:
            continue
        key = (allocation.subscription_id, allocation.deployment.currency)
        entry = spends.get(key)
        if entry is None:
            entry = spends[key] = SubscriptionSpend(allocation.subscription_id, "", key[1])
        entry.ptu_spend += allocation.amount
    for subscription_id, budget in budgets.items():
        if not any(key[0] == subscription_id for key in spends):
            spends[(subscription_id, budget.currency)] = SubscriptionSpend(
                subscription_id, budget.subscription_name, budget.currency
            )
    check = BudgetCheck(month, as_of)
    for key in sorted(spends):
        entry = spends[key]
        found = budgets.get(entry.subscription_id)
        if found is not None and found.currency == entry.currency:
            entry.budget = found
            entry.subscription_name = entry.subscription_name or found.subscription_name
        elif found is not None:
            log.warning(
                "budget of %s is in %s but its spend is in %s: not compared",
                entry.subscription_id,
                found.currency,
                entry.currency,
            )
        entry.forecast = forecast_month_end(entry.spend, start, end, as_of)
        check.spends.append(entry)
        check.candidates.extend(evaluate(entry, month, start, end, as_of))
    return check
