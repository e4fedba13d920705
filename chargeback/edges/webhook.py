"""The budget alert webhook: one POST of ``{"text": "..."}`` per check that raised something.

That shape is what both Slack and Microsoft Teams incoming webhooks accept. ``post_webhook`` never
raises: a failed POST is logged and not retried, because the alert itself is already recorded in
the alerts table (and an Azure Monitor rule can alert on that table). The URL comes from
ALERT_WEBHOOK_URL, checked by ``Settings`` (https, or http on localhost only).
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence

from chargeback.core.pipeline import Row

log = logging.getLogger("chargeback.edges.webhook")

WEBHOOK_TIMEOUT = 10.0


def webhook_payload(rows: Sequence[Row]) -> dict[str, str]:
    """``{"text": ...}``: one line per alert, accepted by Slack and Teams incoming webhooks."""
    lines = [f"Azure OpenAI chargeback: {len(rows)} new alert(s)"]
    lines += [f"- [{row['AlertKind']}] {row['Message']}" for row in rows]
    return {"text": "\n".join(lines)}


def post_webhook(url: str, rows: Sequence[Row], timeout: float = WEBHOOK_TIMEOUT) -> bool:
    """POST the alerts as JSON; True on a 2xx answer, False (logged) otherwise."""
    body = json.dumps(webhook_payload(rows), ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json; charset=utf-8"}
    )
    try:
        with urllib.request.urlopen(
            request, timeout=timeout
        ) as response:  # URL from settings (http(s) checked)
            status = int(response.status)
    except (urllib.error.URLError, OSError) as exc:
        log.error("alert webhook failed: %s", exc)
        return False
    if not 200 <= status < 300:
        log.error("alert webhook answered HTTP %s", status)
        return False
    return True
