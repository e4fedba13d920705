"""The monthly statement job: roll up, render (``jobs.statement``) and publish a new version if changed.

Files per month, in a local folder (EXPORTS_PATH) or a Blob container (EXPORTS_CONTAINER)::

    chargeback-2026-10.focus.csv      chargeback-2026-10.summary.csv      chargeback-2026-10.manifest.json
    chargeback-2026-10.v2.focus.csv   chargeback-2026-10.v2.summary.csv   chargeback-2026-10.v2.manifest.json

A statement is deterministic (sorted rows, fixed decimals, no timestamps inside the CSVs), so
re-running a month over unchanged data produces the same bytes and nothing is written. When the
data changed (late events, a corrected rate card) the next version is written beside the old one;
a published file is never overwritten (local files are opened with ``x``, blobs uploaded with
``overwrite=False``). The manifest is written last: a version without a manifest is incomplete and
is completed, or skipped, by the next run.

The job is handed its edges (KQL runner, export store, budgets, PTU deployments) and its clock
(``now``); ``chargeback.wiring`` builds them from the settings.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from chargeback.core.pricing import Deployment
from chargeback.edges.exportstore import ExportStore
from chargeback.edges.kqlrun import KqlRunner
from chargeback.errors import StatementError
from chargeback.jobs.budgets import Budget
from chargeback.jobs.rollup import DEFAULT_OUTPUT_WEIGHT, month_of, month_window, previous_month, run_rollup
from chargeback.jobs.statement import (
    MANIFEST,
    Statement,
    build_statement,
    file_name,
    payloads,
    render_manifest,
    sha256_hex,
)

log = logging.getLogger("chargeback.jobs.exports")


def _versions(names: set[str], month: str) -> dict[int, set[str]]:
    pattern = re.compile(
        rf"^chargeback-{re.escape(month)}(?:\.v(\d+))?\.(focus\.csv|summary\.csv|manifest\.json)$"
    )
    found: dict[int, set[str]] = {}
    for name in names:
        match = pattern.match(name)
        if match:
            found.setdefault(int(match[1] or 1), set()).add(match[2])
    return found


@dataclass(frozen=True, slots=True)
class Publication:
    """What ``publish`` did: the version that holds the statement and whether it was new."""

    month: str
    version: int
    focus: str
    summary: str
    manifest: str
    created: bool


def published_version(store: ExportStore, month: str) -> int:
    """The latest complete (manifested) version of a month, or 0 when none is published."""
    complete = [
        v for v, kinds in _versions(store.names(f"chargeback-{month}."), month).items() if MANIFEST in kinds
    ]
    return max(complete, default=0)


def publish(
    store: ExportStore, statement: Statement, *, now: datetime | None = None, new_version: bool = True
) -> Publication:
    """Publish a statement: nothing when identical to the latest version, else the next version.

    With ``new_version=False`` (the report and the reconciliation, which read a statement and
    must not replace one) a statement that differs from the published one is refused instead:
    a different rate card, deployments map or budgets file given by mistake must not publish.
    """
    month = statement.month
    data_by_kind = payloads(statement)
    versions = _versions(store.names(f"chargeback-{month}."), month)
    latest = max((v for v, kinds in versions.items() if MANIFEST in kinds), default=0)

    def pub(version: int, created: bool) -> Publication:
        return Publication(
            month,
            version,
            store.location(file_name(month, version, "focus.csv")),
            store.location(file_name(month, version, "summary.csv")),
            store.location(file_name(month, version, MANIFEST)),
            created,
        )

    previous: dict[str, Any] | None = None
    if latest:
        previous = json.loads(store.read(file_name(month, latest, MANIFEST)) or b"{}")
        files = previous.get("files", {})
        if all(files.get(kind, {}).get("sha256") == sha256_hex(data) for kind, data in data_by_kind.items()):
            log.info("statement %s unchanged: version %d stands", month, latest)
            return pub(latest, False)
    if latest and not new_version:
        raise StatementError(
            f"{month} as computed now differs from its published version {latest} (other rate card, "
            "deployments map or budgets, or late rows): run `chargeback rollup --month "
            f"{month}` to publish a new version on purpose, or pass the configuration it was made with"
        )
    version = latest + 1
    while True:  # a version left without manifest by a crashed run is reused when identical, else skipped
        existing = {kind: store.read(file_name(month, version, kind)) for kind in data_by_kind}
        if all(data is None or data == data_by_kind[kind] for kind, data in existing.items()):
            break
        version += 1
    for kind, data in data_by_kind.items():
        if existing[kind] is None:
            store.create(file_name(month, version, kind), data)
    body = render_manifest(statement, version, latest, now or datetime.now(UTC), previous)
    store.create(file_name(month, version, MANIFEST), body)
    log.info("statement %s published as version %d", month, version)
    return pub(version, True)


# ------------------------------------------------------------------------------------------------


def due_month(now: datetime, grace_hours: int) -> str:
    """The latest closed month whose grace period (ROLLUP_GRACE_HOURS after its end) has passed."""
    month = previous_month(month_of(now))
    while month_window(month)[1] + timedelta(hours=grace_hours) > now.astimezone(UTC):
        month = previous_month(month)
    return month


def run_statement(
    runner: KqlRunner,
    store: ExportStore,
    month: str,
    *,
    budgets: Mapping[str, Budget],
    ptu_deployments: Sequence[Deployment],
    output_weight: Decimal = DEFAULT_OUTPUT_WEIGHT,
    now: datetime,
    allow_empty: bool = False,
    new_version: bool = True,
) -> Publication:
    """Roll up a month (KQL), render both CSVs and publish them (a new version only if changed).

    A month without a single usage row is refused (StatementError) unless ``allow_empty``: an
    empty statement is nearly always a wrong store, workspace or month, and publishing it would
    supersede the real one.
    """
    rollup = run_rollup(runner, month)
    if not rollup.lines and not allow_empty:
        raise StatementError(
            f"{month} has no usage rows in this store or workspace: check --db / --month "
            "(or pass --allow-empty to publish an empty statement on purpose)"
        )
    statement = build_statement(rollup, budgets, ptu_deployments, output_weight=output_weight)
    return publish(store, statement, now=now, new_version=new_version)


def close_due_month(
    runner: KqlRunner,
    store: ExportStore,
    *,
    now: datetime,
    grace_hours: int,
    budgets: Mapping[str, Budget],
    ptu_deployments: Sequence[Deployment],
    output_weight: Decimal = DEFAULT_OUTPUT_WEIGHT,
) -> Publication | None:
    """The monthly timer's job (runs daily, idempotent): publish the due month if not yet published.

    The due month is the last closed month whose grace hours have passed (late events are in).
    Once its statement exists, later runs do nothing (None); ``chargeback rollup --month`` re-runs
    a month on purpose (a new version only if the data changed). A month without usage is not
    published (None, with a warning): an empty statement is only published on purpose.
    """
    month = due_month(now, grace_hours)
    version = published_version(store, month)
    if version:
        log.info("monthly rollup: %s already published (version %d); nothing to do", month, version)
        return None
    if not run_rollup(runner, month).lines:
        log.warning(
            "monthly rollup: %s has no usage; nothing published (chargeback rollup --month %s "
            "--allow-empty publishes an empty statement on purpose)",
            month,
            month,
        )
        return None
    publication = run_statement(
        runner,
        store,
        month,
        budgets=budgets,
        ptu_deployments=ptu_deployments,
        output_weight=output_weight,
        now=now,
    )
    log.info("monthly rollup: %s published as version %d: %s", month, publication.version, publication.focus)
    return publication
