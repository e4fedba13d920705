"""The one exception tree of the pipeline, and the reason codes that name every failure.

    ChargebackError                    base; carries a Reason                      (internal-error)
    ├── RejectedEvent                  an event that can never be charged as sent  (its own reason:
    │                                  invalid-json, missing-field, negative-tokens, ...)
    ├── ConfigError                    a rate card, deployments map, budget file   (config-invalid)
    │   │                              or setting is wrong
    │   └── EncodingFileError          a shipped tiktoken encoding file is missing or corrupt
    ├── QueryError                     a KQL query failed or came back incomplete  (query-failed)
    ├── SinkError                      a writer or store could not take data       (write-failed)
    │   └── SinkUnavailable            ... and it is worth retrying later          (sink-unavailable)
    │                                  (throttled, down, timeout)
    ├── EnforcementError               a budget action (throttle, suspend, lift)   (enforcement-failed)
    │                                  failed at the gateway
    ├── InputMissing                   a file or store named for the run does not  (input-missing)
    │                                  exist (nothing is created in its place)
    └── StatementError                 a monthly statement that must not be        (statement-refused)
                                       published (no usage, totals that disagree)

Azure SDK and transport errors become SinkError or SinkUnavailable through one table,
``chargeback.edges.azure_errors``. The CLI prints any ChargebackError as one line with its reason
and exits 2 (3 for a refused statement).

A bad event is normally a *value* (a ``Rejection`` built from a ``RejectedEvent``), never an
exception that fails a batch: validators raise ``RejectedEvent`` and the pipeline turns it into a
dead-letter record. Only ``SinkError`` may escape a trigger, and only when neither the usage table
nor the dead-letter store could take an event (so that the retry policy holds the checkpoint).
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Reason codes: stable strings that appear in dead-letters, summaries and alerts."""

    # The body itself
    INVALID_JSON = "invalid-json"
    INVALID_ENCODING = "invalid-encoding"
    NOT_AN_OBJECT = "not-an-object"
    BODY_TOO_LARGE = "body-too-large"
    # The contract
    UNKNOWN_SCHEMA_VERSION = "unknown-schema-version"
    MISSING_FIELD = "missing-field"
    WRONG_TYPE = "wrong-type"
    INVALID_VALUE = "invalid-value"
    BAD_TIMESTAMP = "bad-timestamp"
    # Strings at the door: ids, names and tags must be storable and printable as they are
    UNENCODABLE_TEXT = "unencodable-text"  # a lone surrogate: not encodable as UTF-8
    CONTROL_CHARACTERS = "control-characters"  # C0/C1 controls, line separators, bidi overrides
    VALUE_TOO_LONG = "value-too-long"  # an id, name or tag longer than its bound
    TOO_MANY_TAGS = "too-many-tags"
    # Duplicates: the same RequestId with a different subscription or usage (not a redelivery)
    CONFLICT = "conflict"
    # Token arithmetic
    NEGATIVE_TOKENS = "negative-tokens"
    TOKENS_TOO_LARGE = "tokens-too-large"
    CACHED_EXCEEDS_PROMPT = "cached-exceeds-prompt"
    REASONING_EXCEEDS_COMPLETION = "reasoning-exceeds-completion"
    MODALITY_MISMATCH = "modality-mismatch"  # audio/image/text parts do not add up to the total
    # Late usage of streams (APIM's LLM log)
    GATEWAY_LOG_MISMATCH = "gateway-log-mismatch"
    # Writing
    WRITE_FAILED = "write-failed"
    SINK_UNAVAILABLE = "sink-unavailable"
    # Configuration and queries
    CONFIG_INVALID = "config-invalid"
    QUERY_FAILED = "query-failed"
    # Budget enforcement at the gateway (APIM management API)
    ENFORCEMENT_FAILED = "enforcement-failed"
    # The command line and the monthly close
    INPUT_MISSING = "input-missing"
    STATEMENT_REFUSED = "statement-refused"
    # Anything the pipeline did not foresee: still dead-lettered, never lost
    INTERNAL_ERROR = "internal-error"
    # Native code (e.g. tiktoken's Rust core) raised a BaseException while handling one event
    NATIVE_FAULT = "native-fault"


class ChargebackError(Exception):
    """Base of every error the pipeline raises on purpose."""

    reason: Reason = Reason.INTERNAL_ERROR

    def __init__(self, message: str, *, reason: Reason | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def detail(self) -> str:
        """The human-readable message, without the reason code."""
        return str(self.args[0]) if self.args else ""


class RejectedEvent(ChargebackError):
    """An event that breaks the contract; it is dead-lettered with its reason, never charged."""

    def __init__(self, reason: Reason, message: str, *, field: str | None = None) -> None:
        super().__init__(message, reason=reason)
        self.field = field


class ConfigError(ChargebackError):
    """A configuration file or setting is missing or malformed."""

    reason = Reason.CONFIG_INVALID


class SinkError(ChargebackError):
    """A usage writer or dead-letter store refused data for good (bad request, too large, auth)."""

    reason = Reason.WRITE_FAILED


class SinkUnavailable(SinkError):
    """A usage writer or dead-letter store could not take data now; retrying later may work."""

    reason = Reason.SINK_UNAVAILABLE


class EncodingFileError(ConfigError):
    """A shipped encoding file is missing, corrupt or not the one tiktoken expects."""


class QueryError(ChargebackError):
    """A KQL query failed or came back incomplete (partial result, row limit, bad syntax)."""

    reason = Reason.QUERY_FAILED


class EnforcementError(ChargebackError):
    """A budget action could not be applied or lifted through the APIM management API."""

    reason = Reason.ENFORCEMENT_FAILED


class InputMissing(ChargebackError):
    """A file, folder or store that the run needs does not exist (nothing is created in its place)."""

    reason = Reason.INPUT_MISSING


class StatementError(ChargebackError):
    """A monthly statement that must not be published: no rows, or totals that do not reconcile."""

    reason = Reason.STATEMENT_REFUSED
