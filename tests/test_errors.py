"""The exception tree: every class under ChargebackError, each with its reason, all drawn in the docstring."""

from __future__ import annotations

import inspect

import chargeback.errors as errors_module
from chargeback.errors import (
    ChargebackError,
    ConfigError,
    EncodingFileError,
    QueryError,
    Reason,
    RejectedEvent,
    SinkError,
    SinkUnavailable,
)


def exception_classes() -> list[type[BaseException]]:
    """Every exception class defined in chargeback.errors."""
    return [
        value
        for value in vars(errors_module).values()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == errors_module.__name__
    ]


def test_every_class_is_drawn_in_the_tree_comment():
    """The module docstring's tree names every exception class the module defines."""
    doc = errors_module.__doc__ or ""
    missing = [cls.__name__ for cls in exception_classes() if cls.__name__ not in doc]
    assert missing == []


def test_one_root_and_a_reason_code_on_each_class():
    """Every class descends from ChargebackError and carries a Reason that is a stable code."""
    for cls in exception_classes():
        assert issubclass(cls, ChargebackError)
        assert isinstance(cls.reason, Reason)
    assert SinkUnavailable.reason == Reason.SINK_UNAVAILABLE
    assert QueryError.reason == Reason.QUERY_FAILED
    assert EncodingFileError.reason == ConfigError.reason == Reason.CONFIG_INVALID
    assert issubclass(SinkUnavailable, SinkError)
    assert issubclass(EncodingFileError, ConfigError)


def test_a_rejection_carries_its_own_reason_and_field():
    """RejectedEvent names the contract rule broken and the field; detail is the message alone."""
    rejected = RejectedEvent(Reason.MISSING_FIELD, "requestId is missing", field="requestId")
    assert (rejected.reason, rejected.field, rejected.detail) == (
        Reason.MISSING_FIELD,
        "requestId",
        "requestId is missing",
    )


def test_reason_codes_are_unique_kebab_case_strings():
    """Reason values are distinct lower-case kebab strings (they appear in dead-letters and tables)."""
    values = [reason.value for reason in Reason]
    assert len(values) == len(set(values))
    assert all(value == value.lower() and " " not in value and "_" not in value for value in values)
