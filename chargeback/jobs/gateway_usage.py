"""The late-usage step: streams charged on an estimate get APIM's own counts when they arrive.

Every few minutes (``gateway_usage`` timer) ``run_gateway_usage`` reads, with
``kql/gateway_llm_usage.kql``, the usage rows of the last ``GATEWAY_LOG_WAIT_MINUTES`` that still
wait for APIM's LLM log (streams the policy let through unread), joined to the counts
``ApiManagementGatewayLlmLog`` holds for the same CorrelationId. Each one that has counts gets a
superseding row (``UsageSource = gateway-log``, ``UsageRevision`` one higher), priced by the same
``Pricer`` as ingestion, written through ``supersede``: in place in DuckDB, appended in Log
Analytics, where every query keeps the latest revision. Running twice changes nothing.

A row whose log has not arrived is left alone and counted as waiting; once it is older than the
wait it is no longer looked up and keeps its flagged estimate (``kql/stream_estimates.kql`` says
how much cost rests on such rows). Counts the log cannot have (negative, not whole) or a log that
names another subscription are refused with a reason and logged; the row keeps its estimate.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from chargeback.core.late_usage import gateway_counts, gateway_revision, is_waiting
from chargeback.core.pipeline import Row
from chargeback.core.pricing import Pricer
from chargeback.edges.kqlrun import KqlRunner
from chargeback.edges.sinks import RevisionWriter
from chargeback.errors import RejectedEvent

log = logging.getLogger("chargeback.jobs.gateway_usage")

QUERY = "gateway_llm_usage"
# The gateway stamps the start of processing; its log rows are read from this much before the window.
LOG_MARGIN = timedelta(hours=1)


@dataclass(slots=True)
class GatewayUsageResult:
    """What one run did: every waiting row in the window is counted in exactly one of the fields."""

    superseded: int = 0
    already_superseded: int = 0  # a revision as high was already stored (a repeated run)
    waiting: int = 0  # no LLM log row yet
    refused: Counter[str] = field(default_factory=Counter)  # reason -> rows (the estimate stays)
    failed: int = 0  # the writer could not take the revision: retried on the next run

    @property
    def looked_up(self) -> int:
        """Rows waiting for the gateway's counts in the window."""
        return (
            self.superseded
            + self.already_superseded
            + self.waiting
            + sum(self.refused.values())
            + self.failed
        )


def run_gateway_usage(
    runner: KqlRunner, writer: RevisionWriter, pricer: Pricer, *, now: datetime, wait: timedelta
) -> GatewayUsageResult:
    """Supersede the estimates of the last ``wait`` whose gateway counts have arrived."""
    since = now - wait
    records = runner.records(
        QUERY, {"Since": since, "Until": now}, window=(since - LOG_MARGIN, now + LOG_MARGIN)
    )
    result = GatewayUsageResult()
    revisions: list[Row] = []
    for record in records:
        if not is_waiting(record):
            continue
        try:
            counts = gateway_counts(record)
            if counts is None:
                result.waiting += 1
                continue
            revisions.append(gateway_revision(record, counts, pricer))
        except RejectedEvent as exc:
            result.refused[exc.reason.value] += 1
            log.warning(
                "gateway usage: %s keeps its estimate (%s): %s",
                record.get("RequestId"),
                exc.reason,
                exc.detail,
            )
    if revisions:
        written = writer.supersede(revisions)
        result.superseded = written.written
        result.already_superseded = written.duplicates
        result.failed = len(written.failed)
        for failure in written.failed[:5]:
            log.warning(
                "gateway usage: %s not written (%s): %s",
                failure.row.get("RequestId"),
                failure.reason,
                failure.detail,
            )
    log.info(
        "gateway usage since %s: superseded=%d already=%d waiting=%d refused=%s failed=%d",
        since.isoformat(),
        result.superseded,
        result.already_superseded,
        result.waiting,
        dict(result.refused),
        result.failed,
    )
    return result
