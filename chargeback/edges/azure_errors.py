"""One table from Azure SDK and transport errors to ours: worth retrying, or refused.

    error (azure.core.exceptions unless named)   meaning                          ours
    ServiceRequestError                          no connection made               SinkUnavailable
    ServiceResponseError                         no answer, read timeout          SinkUnavailable
    TimeoutError, ConnectionError (builtins)     the socket gave up               SinkUnavailable
    HttpResponseError 408/429/500/502/503/504    throttled, busy or down          SinkUnavailable
    HttpResponseError without a status           no usable answer                 SinkUnavailable
    HttpResponseError, any other status          refused: auth, bad request, 404  SinkError
    anything else                                a bug, not an outage             (not an SDK error)

Every edge that talks to Azure reads it: the Blob dead-letter and export stores raise
``sink_error(...)``; the Log Analytics writer retries a chunk only when ``classify`` says
SinkUnavailable; the KQL runner turns a failed query into ``QueryError`` with the same detail.
``azure.core`` is imported on first use (the Functions host times module import).
"""

from __future__ import annotations

from chargeback.errors import SinkError, SinkUnavailable

UNAVAILABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_DETAIL_LIMIT = 300


def classify(exc: BaseException) -> type[SinkError] | None:
    """SinkUnavailable or SinkError for an Azure SDK or transport error; None for any other exception."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, (ServiceRequestError, ServiceResponseError, TimeoutError, ConnectionError)):
        return SinkUnavailable
    if isinstance(exc, HttpResponseError):
        status = exc.status_code
        return SinkUnavailable if status is None or status in UNAVAILABLE_STATUSES else SinkError
    return None


def describe(exc: BaseException) -> str:
    """``TypeName: first line of the message``, cut to a length a log line and a dead-letter can carry."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:_DETAIL_LIMIT]


def sink_error(exc: BaseException, what: str) -> SinkError:
    """The error an edge raises for ``exc``: SinkUnavailable (retry later) or SinkError (refused).

    An exception that is not in the table (a bug) becomes SinkError, so the caller's message names
    what failed; the original stays chained as ``__cause__``.
    """
    kind = classify(exc) or SinkError
    return kind(f"{what}: {describe(exc)}"[:_DETAIL_LIMIT])
