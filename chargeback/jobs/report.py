"""The month's statement as one self-contained HTML page (``chargeback-YYYY-MM.report.html``).

Budget owners without portal access open one file: the month's total and each team's share; cost
by team, cost center, model and deployment type; the daily trend; this month against the previous
ones; budget burn with the forecast; the usage-quality picture (share of cost resting on reported,
stream-usage, gateway-log, recounted and estimated usage; unpriced calls); the PTU allocation; the
rate card versions used; and the reconciliation with the Azure invoice when one ran.

Every number is read from the statement's own CSVs (the bytes ``build_statement`` rendered and
``publish`` wrote), so the page equals the CSVs by construction; what the CSVs do not hold comes
from the same data they were written from: the usage-source split from the rollup's lines, the
daily trend from ``daily_cost.kql`` (its days sum to the statement's per-token cost), previous
months from their published summaries. Charts are drawn with matplotlib as inline SVG (text kept
as text); the page has no script and fetches nothing (a Content-Security-Policy of
``default-src 'none'`` says so to the browser), reads well on a phone and prints cleanly.

matplotlib and jinja2 are imported only when a report is rendered (the Function's cold start).
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib.resources import files
from typing import Any

from chargeback.jobs.budgets import forecast_month_end
from chargeback.jobs.rollup import (
    CHARGED_STATUSES,
    METERS,
    Rollup,
    meter_cost,
    month_window,
    previous_month,
    to_decimal,
    to_int,
    to_text,
)

log = logging.getLogger("chargeback.jobs.report")

KIND = "report.html"
DAILY_QUERY = "daily_cost"
HISTORY_MONTHS = 6
USAGE_SOURCES = ("reported", "stream-usage", "gateway-log", "recounted", "estimated")
CENT = Decimal("0.01")
CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; font-src 'none'; "
    "script-src 'none'; connect-src 'none'; base-uri 'none'; form-action 'none'"
)
PALETTE = ("#0b5cad", "#e07b00", "#2a9d4b", "#c2185b", "#6a4c93", "#00838f", "#8d6e63", "#7a7a7a")


def rows_of(data: bytes) -> list[dict[str, str]]:
    """CSV bytes as dictionaries."""
    return list(csv.DictReader(io.StringIO(data.decode("utf-8"))))


def _dec(text: str | None) -> Decimal:
    return Decimal(text) if text not in (None, "") else Decimal(0)


def money(value: Decimal) -> str:
    """Money for people: thousands separators, two decimals, never "-0.00"."""
    rounded = value.quantize(CENT)
    return f"{rounded if rounded else abs(rounded):,.2f}"


def pct(part: Decimal, whole: Decimal) -> str:
    """A share in percent with one decimal ("" when the whole is zero)."""
    return f"{(part * 100 / whole).quantize(Decimal('0.1'))}" if whole else ""


# ------------------------------------------------------------------------------------------------
# What the report shows, computed from the CSVs and the rollup (pure)


@dataclass(frozen=True, slots=True)
class Day:
    """One day's per-token cost of one subscription (from ``daily_cost.kql``)."""

    day: str
    subscription_id: str
    currency: str
    requests: int
    cost: Decimal


def daily_records(records: Iterable[Mapping[str, Any]]) -> list[Day]:
    """Typed rows of ``daily_cost.kql``."""
    days = []
    for record in records:
        moment = record["Day"]
        day = moment.strftime("%Y-%m-%d") if isinstance(moment, datetime) else str(moment)[:10]
        days.append(
            Day(
                day,
                to_text(record["SubscriptionId"]),
                to_text(record["Currency"]),
                to_int(record["Requests"]),
                to_decimal(record["Spend"]),
            )
        )
    return days


def usage_source_costs(rollup: Rollup) -> dict[str, dict[str, Decimal]]:
    """Per currency and usage source: requests and per-token cost (quantity x unit price, exact).

    The same arithmetic as the FOCUS usage rows (``meter_charges``), so the sources of a currency
    sum to the statement's per-token cost.
    """
    result: dict[str, dict[str, Decimal]] = {}
    for line in rollup.lines:
        source = line.usage_source or "reported"
        bucket = result.setdefault(f"{line.currency}|{source}", {"requests": Decimal(0), "cost": Decimal(0)})
        bucket["requests"] += line.requests
        if line.pricing_status not in CHARGED_STATUSES:
            continue
        for meter in METERS:
            tokens, _, price = line.meter(meter)
            if tokens > 0 and price is not None:
                bucket["cost"] += meter_cost(meter, tokens, price)
    return result


@dataclass(slots=True)
class ReportData:
    """Everything the page shows; numbers as Decimals, read from the statement CSVs."""

    month: str
    version: int
    focus: bytes
    summary: bytes
    rate_card_versions: tuple[str, ...]
    files: dict[str, str]  # kind -> file name
    days: list[Day] = field(default_factory=list)
    sources: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    history: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # month -> currency -> charged
    reconciliation: dict[str, Any] | None = None
    reconciliation_lines: list[dict[str, str]] = field(default_factory=list)
    as_of: datetime | None = None


def _group(rows: Iterable[Mapping[str, str]], key: str, value: str) -> list[tuple[str, str, Decimal]]:
    totals: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for row in rows:
        totals[(row.get(key, "") or "(none)", row.get("BillingCurrency", "") or row.get("Currency", ""))] += (
            _dec(row.get(value))
        )
    ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
    return [(name, currency, amount) for (name, currency), amount in ranked]


def build_view(data: ReportData) -> dict[str, Any]:
    """The page's content: tables of text, and the series the charts draw (pure)."""
    summary = rows_of(data.summary)
    focus = rows_of(data.focus)
    start, end = month_window(data.month)
    as_of = data.as_of or end
    closed = as_of >= end

    totals: dict[str, dict[str, Decimal]] = {}
    for row in summary:
        t = totals.setdefault(
            row["Currency"],
            {
                "ChargedCost": Decimal(0),
                "TotalCost": Decimal(0),
                "AllocatedCost": Decimal(0),
                "Requests": Decimal(0),
            },
        )
        for name in t:
            t[name] += _dec(row[name])
    currencies = sorted(totals, key=lambda c: (-totals[c]["ChargedCost"], c))

    teams = []
    for row in sorted(summary, key=lambda r: (-_dec(r["ChargedCost"]), r["SubscriptionId"])):
        charged = _dec(row["ChargedCost"])
        budget = _dec(row["Budget"]) if row["Budget"] else None
        forecast = charged if closed else forecast_month_end(charged, start, end, as_of).quantize(CENT)
        teams.append(
            {
                "id": row["SubscriptionId"],
                "name": row["SubscriptionName"] or row["SubscriptionId"] or "(unallocated)",
                "cost_center": row["CostCenter"],
                "owner": row["Owner"],
                "currency": row["Currency"],
                "requests": row["Requests"],
                "token_cost": row["TotalCost"],
                "allocated": row["AllocatedCost"],
                "charged": row["ChargedCost"],
                "charged_value": charged,
                "share": pct(charged, totals[row["Currency"]]["ChargedCost"]),
                "budget": row["Budget"],
                "used_pct": row["BudgetUsedPct"],
                "forecast": money(forecast),
                "forecast_pct": pct(forecast, budget) if budget else "",
                "over": bool(budget and forecast > budget),
                "unpriced": row["UnpricedRequests"],
            }
        )

    cost_centers = _group(summary, "CostCenter", "ChargedCost")
    models = _group(focus, "x_Model", "BilledCost")
    types = _group(focus, "x_DeploymentType", "BilledCost")
    focus_total: dict[str, Decimal] = defaultdict(Decimal)
    for row in focus:
        focus_total[row["BillingCurrency"]] += _dec(row["BilledCost"])
    tokens_by_model: dict[str, int] = defaultdict(int)
    for row in focus:
        if row.get("x_Tokens"):
            tokens_by_model[row["x_Model"]] += int(row["x_Tokens"])

    ptu = [
        {
            "deployment": row["x_PtuDeployment"],
            "model": row["x_Model"],
            "team": row["SubAccountName"] or row["SubAccountId"] or "(unallocated: no calls)",
            "weighted": row["x_AllocationWeightedTokens"],
            "total_weighted": row["x_AllocationTotalWeightedTokens"],
            "share": pct(
                _dec(row["x_AllocationWeightedTokens"]), _dec(row["x_AllocationTotalWeightedTokens"])
            ),
            "amount": money(_dec(row["BilledCost"])),
            "currency": row["BillingCurrency"],
        }
        for row in focus
        if row.get("x_Meter") == "ptu-allocation"
    ]

    quality: list[dict[str, Any]] = []
    for key, bucket in sorted(data.sources.items()):
        currency, source = key.split("|", 1)
        quality.append({"currency": currency, "source": source, **bucket})
    order = {name: index for index, name in enumerate(USAGE_SOURCES)}
    quality.sort(key=lambda q: (q["currency"], order.get(q["source"], 99), q["source"]))
    source_total: dict[str, Decimal] = defaultdict(Decimal)
    for q in quality:
        source_total[q["currency"]] += q["cost"]
    for q in quality:
        q["share"] = pct(q["cost"], source_total[q["currency"]])
    unpriced = sum((int(row["UnpricedRequests"] or 0) for row in summary), 0)

    history = [
        (month, data.history.get(month, {}))
        for month in sorted(set(data.history) | {data.month})
        if month <= data.month
    ]
    history = [
        (m, {**h, **({} if m != data.month else {c: t["ChargedCost"] for c, t in totals.items()})})
        for m, h in history
    ]

    recon = data.reconciliation
    return {
        "month": data.month,
        "version": data.version,
        "closed": closed,
        "as_of": as_of.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "files": data.files,
        "currencies": currencies,
        "totals": {
            c: {k: money(v) if k != "Requests" else f"{int(v):,}" for k, v in t.items()}
            for c, t in totals.items()
        },
        "totals_raw": totals,
        "teams": teams,
        "cost_centers": [(n, c, money(v)) for n, c, v in cost_centers],
        "models": [(n, c, money(v), f"{tokens_by_model.get(n, 0):,}") for n, c, v in models],
        "types": [(n, c, money(v)) for n, c, v in types],
        "focus_total": {c: money(v) for c, v in focus_total.items()},
        "focus_usage_total": {
            c: money(
                sum(
                    (
                        _dec(r["BilledCost"])
                        for r in focus
                        if r["BillingCurrency"] == c and r.get("x_Meter") != "ptu-allocation"
                    ),
                    Decimal(0),
                )
            )
            for c in currencies
        },
        "ptu": ptu,
        "quality": [
            {**q, "requests": f"{int(q['requests']):,}", "cost_text": money(q["cost"])} for q in quality
        ],
        "unpriced": unpriced,
        "rate_cards": data.rate_card_versions,
        "history": [(m, {c: money(v) for c, v in h.items()}) for m, h in history],
        "history_raw": history,
        "days": data.days,
        "reconciliation": recon,
        "reconciliation_lines": data.reconciliation_lines,
        "daily_total": {
            c: money(sum((d.cost for d in data.days if d.currency == c), Decimal(0))) for c in currencies
        },
    }


# ------------------------------------------------------------------------------------------------
# Charts: matplotlib to inline SVG


def _svg(figure: Any) -> str:
    """A figure as an inline <svg> that scales with its container (no fixed size, no XML prolog)."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    text = buffer.getvalue()
    text = text[text.index("<svg") :]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.DOTALL)  # RDF block: namespace URLs only
    text = re.sub(r'(<svg[^>]*?) width="[^"]*" height="[^"]*"', r"\1", text, count=1)
    return text.replace("<svg ", '<svg role="img" preserveAspectRatio="xMinYMin meet" ', 1)


def _figure(width: float, height: float) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=96, layout="constrained")
    axes = figure.add_subplot()
    axes.spines[["top", "right"]].set_visible(False)
    axes.grid(axis="x" if height > width else "y", color="#dddddd", linewidth=0.6)
    axes.set_axisbelow(True)
    return figure, axes


def _hbar(labels: Sequence[str], values: Sequence[float], unit: str, title: str) -> str:
    figure, axes = _figure(6.0, max(1.6, 0.45 * len(labels) + 0.9))
    axes.grid(axis="x", color="#dddddd", linewidth=0.6)
    axes.grid(axis="y", visible=False)
    positions = list(range(len(labels)))
    bars = axes.barh(positions, values, color=[PALETTE[i % len(PALETTE)] for i in positions])
    axes.set_yticks(positions, labels)
    axes.invert_yaxis()
    axes.bar_label(bars, labels=[f"{v:,.2f}" for v in values], padding=3, fontsize=10)
    axes.set_xlabel(unit)
    axes.set_title(title, loc="left", fontsize=11)
    axes.margins(x=0.18)
    return _svg(figure)


def render_charts(view: Mapping[str, Any]) -> dict[str, str]:
    """The page's charts as inline SVG strings (matplotlib imported here, not at module load)."""
    import matplotlib

    charts: dict[str, str] = {}
    currency = view["currencies"][0] if view["currencies"] else ""
    with matplotlib.rc_context(
        {
            "svg.fonttype": "none",
            "svg.hashsalt": "chargeback-report",
            "font.family": "sans-serif",
            "font.size": 10,
            "axes.titleweight": "bold",
        }
    ):
        teams = [t for t in view["teams"] if t["currency"] == currency]
        if teams:
            charts["teams"] = _hbar(
                [t["name"] for t in teams],
                [float(t["charged_value"]) for t in teams],
                currency,
                "Charged cost by team",
            )
        models = [(n, v) for n, c, v, _ in view["models"] if c == currency]
        if models:
            charts["models"] = _hbar(
                [n for n, _ in models],
                [float(Decimal(v.replace(",", ""))) for _, v in models],
                currency,
                "Cost by model",
            )
        charts.update(_daily_charts(view, currency))
        history = [(m, h.get(currency, Decimal(0))) for m, h in view["history_raw"]]
        if len(history) > 1:
            figure, axes = _figure(6.0, 2.6)
            bars = axes.bar(
                [m for m, _ in history],
                [float(v) for _, v in history],
                color=[PALETTE[0] if m == view["month"] else "#9db9d9" for m, _ in history],
            )
            axes.bar_label(bars, labels=[f"{float(v):,.2f}" for _, v in history], padding=2, fontsize=8)
            axes.set_ylabel(currency)
            axes.set_title("Charged cost by month", loc="left", fontsize=11)
            axes.margins(y=0.15)
            charts["history"] = _svg(figure)
        quality = [q for q in view["quality"] if q["currency"] == currency]
        if quality:
            charts["quality"] = _hbar(
                [q["source"] for q in quality],
                [float(q["cost"]) for q in quality],
                currency,
                "Per-token cost by usage source",
            )
    return charts


def _daily_charts(view: Mapping[str, Any], currency: str) -> dict[str, str]:
    start, end = month_window(view["month"])
    day_names = [(start + timedelta(days=n)).strftime("%Y-%m-%d") for n in range((end - start).days)]
    names = {t["id"]: t["name"] for t in view["teams"]}
    per_team: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for day in view["days"]:
        if day.currency == currency:
            per_team[day.subscription_id][day.day] += day.cost
    charts: dict[str, str] = {}
    if not per_team:
        return charts
    figure, axes = _figure(6.0, 3.0)
    bottom = [0.0] * len(day_names)
    ranked = sorted(per_team, key=lambda s: -sum(per_team[s].values()))
    for index, subscription in enumerate(ranked):
        heights = [float(per_team[subscription].get(d, Decimal(0))) for d in day_names]
        axes.bar(
            range(1, len(day_names) + 1),
            heights,
            bottom=bottom,
            label=names.get(subscription, subscription),
            color=PALETTE[index % len(PALETTE)],
            width=0.8,
        )
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.set_xlabel("day of month")
    axes.set_ylabel(currency)
    axes.set_xlim(0.3, len(day_names) + 0.7)
    axes.set_title("Daily per-token cost", loc="left", fontsize=11)
    axes.legend(fontsize=9, ncols=3, frameon=False, loc="upper left", bbox_to_anchor=(0, -0.25))
    charts["daily"] = _svg(figure)

    budgets = {
        t["id"]: Decimal(t["budget"]) for t in view["teams"] if t["budget"] and t["currency"] == currency
    }
    allocated = {t["id"]: Decimal(t["allocated"] or 0) for t in view["teams"]}
    if budgets:
        figure, axes = _figure(6.0, 3.2)
        for index, subscription in enumerate(sorted(budgets, key=lambda s: names.get(s, s))):
            running, points = Decimal(0), []
            for number, day in enumerate(day_names, start=1):
                running += per_team.get(subscription, {}).get(day, Decimal(0))
                accrued = allocated.get(subscription, Decimal(0)) * number / len(day_names)
                points.append(float((running + accrued) * 100 / budgets[subscription]))
            axes.plot(
                range(1, len(day_names) + 1),
                points,
                label=names.get(subscription, subscription),
                color=PALETTE[index % len(PALETTE)],
                linewidth=1.6,
            )
        axes.axhline(100, color="#b00020", linewidth=1, linestyle="--")
        axes.set_xlabel("day of month")
        axes.set_ylabel("% of monthly budget")
        axes.set_title("Budget burn (cumulative, PTU share accrued daily)", loc="left", fontsize=11)
        axes.legend(fontsize=9, ncols=3, frameon=False, loc="upper left", bbox_to_anchor=(0, -0.25))
        charts["burn"] = _svg(figure)
    return charts


# ------------------------------------------------------------------------------------------------
# The page


def render_html(data: ReportData) -> bytes:
    """The report page (deterministic: same data, same bytes)."""
    from jinja2 import Environment, StrictUndefined

    view = build_view(data)
    charts = render_charts(view)
    template_text = files("chargeback").joinpath("templates/report.html.j2").read_text(encoding="utf-8")
    environment = Environment(
        autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True
    )
    environment.filters["cents"] = lambda text: money(_dec(text)) if text else ""
    environment.filters["whole"] = lambda text: f"{_dec(text):,.0f}" if text else ""
    template = environment.from_string(template_text)
    from markupsafe import Markup

    html = template.render(
        view=view,
        csp=CSP,
        charts={
            name: Markup(svg) for name, svg in charts.items()
        },  # matplotlib's own SVG, no user text unescaped
    )
    return html.encode("utf-8")


def sha256(data: bytes) -> str:
    """Hex SHA-256 of bytes."""
    return hashlib.sha256(data).hexdigest()


def history_months(month: str, count: int = HISTORY_MONTHS) -> list[str]:
    """The ``count`` months before ``month``, oldest first."""
    months = []
    current = month
    for _ in range(count):
        current = previous_month(current)
        months.append(current)
    return sorted(months)


def summary_charged(summary: bytes) -> dict[str, Decimal]:
    """A summary CSV's charged cost per currency."""
    totals: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows_of(summary):
        totals[row["Currency"]] += _dec(row["ChargedCost"])
    return dict(totals)


# ------------------------------------------------------------------------------------------------
# The job


@dataclass(frozen=True, slots=True)
class ReportRun:
    """Where the report went, and the statement version it shows."""

    month: str
    version: int
    location: str
    name: str


def run_report(
    runner: Any,
    store: Any,
    month: str,
    *,
    budgets: Mapping[str, Any],
    ptu_deployments: Sequence[Any],
    output_weight: Decimal,
    now: datetime | None = None,
) -> ReportRun:
    """Roll up the month's statement (published when none is; refused when it differs), then its report.

    The report is written beside the statement (``chargeback-YYYY-MM.report.html``, or
    ``chargeback-YYYY-MM.vN.report.html`` for version N) and replaced when its content changes
    (a reconciliation ran since, a new previous month was published).
    """
    from chargeback.jobs.exports import publish, published_version
    from chargeback.jobs.reconcile import load_lines, load_summary, put_view, view_name
    from chargeback.jobs.rollup import run_rollup
    from chargeback.jobs.statement import build_statement, file_name

    now = now or datetime.now(UTC)
    rollup = run_rollup(runner, month)
    statement = build_statement(rollup, budgets, ptu_deployments, output_weight=output_weight)
    publication = publish(store, statement, now=now, new_version=False)
    start, end = month_window(month)
    days = daily_records(
        runner.records(DAILY_QUERY, {"MonthStart": start, "MonthEnd": end}, window=(start, end))
    )
    history: dict[str, dict[str, Decimal]] = {}
    for earlier in history_months(month):
        version = published_version(store, earlier)
        data = store.read(file_name(earlier, version, "summary.csv")) if version else None
        if data:
            history[earlier] = summary_charged(data)
    version = publication.version
    report = ReportData(
        month=month,
        version=version,
        focus=statement.focus,
        summary=statement.summary,
        rate_card_versions=statement.rate_card_versions,
        files={
            kind: file_name(month, version, kind) for kind in ("focus.csv", "summary.csv", "manifest.json")
        },
        days=days,
        sources=usage_source_costs(rollup),
        history=history,
        reconciliation=load_summary(store, month, version),
        reconciliation_lines=load_lines(store, month, version),
        as_of=now,
    )
    name = view_name(month, version, KIND)
    location = put_view(store, name, render_html(report))
    log.info("report %s (statement version %d) written to %s", month, version, location)
    return ReportRun(month, version, location, name)
