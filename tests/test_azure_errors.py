"""The one SDK-error table: what is worth retrying (SinkUnavailable) and what was refused (SinkError)."""

from __future__ import annotations

import pytest
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from chargeback.edges.azure_errors import classify, describe, sink_error
from chargeback.errors import SinkError, SinkUnavailable


def http(status: int | None, cls: type[HttpResponseError] = HttpResponseError) -> HttpResponseError:
    """An SDK HTTP error with a status code, as the SDK raises it."""
    error = cls(f"status {status}")
    error.status_code = status
    return error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ServiceRequestError("cannot connect"), SinkUnavailable),
        (ServiceResponseError("read timed out"), SinkUnavailable),
        (TimeoutError("timed out"), SinkUnavailable),
        (ConnectionResetError("reset by peer"), SinkUnavailable),
        (http(408), SinkUnavailable),
        (http(429), SinkUnavailable),
        (http(500), SinkUnavailable),
        (http(503), SinkUnavailable),
        (http(None), SinkUnavailable),
        (http(400), SinkError),
        (http(401), SinkError),
        (http(403), SinkError),
        (http(404, ResourceNotFoundError), SinkError),
        (http(409, ResourceExistsError), SinkError),
    ],
)
def test_each_row_of_the_table(error: BaseException, expected: type[SinkError]):
    """Transport failures and 408/429/5xx are worth retrying; any other HTTP status is a refusal."""
    assert classify(error) is expected
    assert type(sink_error(error, "blob")) is expected


def test_a_bug_is_not_an_sdk_error():
    """An exception outside the table is not classified (the caller lets it surface as a bug)."""
    assert classify(KeyError("x")) is None
    assert classify(ValueError("x")) is None
    assert type(sink_error(KeyError("x"), "blob")) is SinkError


def test_the_detail_names_what_failed_in_one_bounded_line():
    """sink_error's message is `what: Type: first line`, at most 300 characters."""
    error = sink_error(http(403), "dead-letter container dl refused 2 records")
    assert error.detail == "dead-letter container dl refused 2 records: HttpResponseError: status 403"
    long = ServiceResponseError("x" * 1000 + "\nsecond line")
    assert describe(long).startswith("ServiceResponseError: xxx")
    assert "second line" not in describe(long)
    assert len(sink_error(long, "w").detail) <= 300
