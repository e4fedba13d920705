"""One settings object, read from an environment mapping on demand (never at import time).

The names are binding: the same in ``local.settings.sample.json``, the Bicep app settings and the
README. ``Settings.from_env(os.environ)`` is called by each trigger invocation and by the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from importlib import resources
from pathlib import Path

from chargeback.edges.endpoints import check_endpoint, is_local_endpoint
from chargeback.errors import ConfigError

__all__ = ["SINKS", "Settings", "check_endpoint", "default_config_path", "is_local_endpoint"]

SINKS = ("duckdb", "loganalytics")
ENFORCEMENT_MODES = ("off", "on")


def default_config_path(name: str) -> Path:
    """Path of a configuration file shipped inside the package (rate card, deployments, budgets)."""
    return Path(str(resources.files("chargeback").joinpath("config", name)))


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting the app reads; the attribute is the environment name in lower case."""

    chargeback_sink: str = "duckdb"
    chargeback_duckdb_path: str = ".chargeback/chargeback.duckdb"
    eventhub_name: str = ""
    eventhub_consumer_group: str = "$Default"
    eventhub__fullyqualifiednamespace: str = ""
    logs_ingestion_endpoint: str = ""
    logs_dcr_immutable_id: str = ""
    logs_stream_name: str = "Custom-AOAIChargeback_CL"
    logs_alerts_stream_name: str = "Custom-AOAIChargebackAlerts_CL"
    log_analytics_workspace_id: str = ""
    log_analytics_query_endpoint: str = ""
    azure_client_id: str = ""
    storage_blob_endpoint: str = ""
    storage_connection_string: str = ""
    deadletter_container: str = ""
    exports_container: str = ""
    deadletter_path: str = ".chargeback/deadletter"
    exports_path: str = ".chargeback/exports"
    rate_card_path: str = ""
    deployments_path: str = ""
    budgets_path: str = ""
    config_container: str = ""
    rollup_grace_hours: int = 48
    gateway_log_wait_minutes: int = 120
    ptu_output_weight: str = "4"
    alert_webhook_url: str = ""
    budget_enforcement: str = "off"
    budget_enforcement_exempt: str = ""
    budget_enforcement_count_estimated: str = "false"
    apim_resource_id: str = ""
    apim_management_endpoint: str = "https://management.azure.com"
    apim_throttle_named_value: str = "aoai-chargeback-throttled"
    deadletter_redact_bodies: str = "false"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read settings from ``environ`` (default ``os.environ``); blank values mean the default."""
        env = os.environ if environ is None else environ
        # Names are matched case-insensitively: Linux app settings keep their case, and the
        # Functions convention spells some in mixed case (EVENTHUB__fullyQualifiedNamespace).
        upper = {key.upper(): value for key, value in env.items()}
        values: dict[str, object] = {}
        for spec in fields(cls):
            raw = upper.get(spec.name.upper(), "").strip()
            if not raw:
                continue
            if spec.type == "int":
                try:
                    values[spec.name] = int(raw)
                except ValueError:
                    raise ConfigError(f"{spec.name.upper()}={raw!r} must be a whole number") from None
            else:
                values[spec.name] = raw
        settings = cls(**values)  # type: ignore[arg-type]
        settings.validate()
        return settings

    def validate(self) -> None:
        """Raise ConfigError for settings that cannot work together."""
        if self.chargeback_sink not in SINKS:
            raise ConfigError(f"CHARGEBACK_SINK={self.chargeback_sink!r}; expected one of {', '.join(SINKS)}")
        if self.rollup_grace_hours < 0:
            raise ConfigError("ROLLUP_GRACE_HOURS must not be negative")
        if self.gateway_log_wait_minutes < 1:
            raise ConfigError("GATEWAY_LOG_WAIT_MINUTES must be at least 1")
        try:
            weight = Decimal(self.ptu_output_weight)
        except ArithmeticError:
            raise ConfigError(f"PTU_OUTPUT_WEIGHT={self.ptu_output_weight!r} is not a number") from None
        if not weight.is_finite() or weight < 0:
            raise ConfigError(f"PTU_OUTPUT_WEIGHT={self.ptu_output_weight!r} must be a non-negative number")
        if self.chargeback_sink == "loganalytics":
            missing = [
                name.upper()
                for name in ("logs_ingestion_endpoint", "logs_dcr_immutable_id")
                if not getattr(self, name)
            ]
            if missing:
                raise ConfigError(f"CHARGEBACK_SINK=loganalytics needs {', '.join(missing)}")
        for name in ("logs_ingestion_endpoint", "log_analytics_query_endpoint", "storage_blob_endpoint"):
            value = getattr(self, name)
            if value:
                check_endpoint(name.upper(), value)
        if self.alert_webhook_url:
            check_endpoint("ALERT_WEBHOOK_URL", self.alert_webhook_url)
        if self.deadletter_redact_bodies.lower() not in ("true", "false"):
            raise ConfigError(
                f"DEADLETTER_REDACT_BODIES={self.deadletter_redact_bodies!r} must be true or false"
            )
        self._validate_enforcement()

    def _validate_enforcement(self) -> None:
        """Budget enforcement is off unless BUDGET_ENFORCEMENT=on, which needs the APIM instance."""
        if self.budget_enforcement.lower() not in ENFORCEMENT_MODES:
            raise ConfigError(
                f"BUDGET_ENFORCEMENT={self.budget_enforcement!r}; expected {' or '.join(ENFORCEMENT_MODES)}"
            )
        if self.budget_enforcement_count_estimated.lower() not in ("true", "false"):
            raise ConfigError(
                f"BUDGET_ENFORCEMENT_COUNT_ESTIMATED={self.budget_enforcement_count_estimated!r}; "
                "expected true or false"
            )
        check_endpoint("APIM_MANAGEMENT_ENDPOINT", self.apim_management_endpoint)
        if self.enforcement_on:
            if not self.apim_resource_id:
                raise ConfigError(
                    "BUDGET_ENFORCEMENT=on needs APIM_RESOURCE_ID (the API Management instance's resource id)"
                )
            from chargeback.edges.apim import check_resource_id

            check_resource_id(self.apim_resource_id)

    @property
    def enforcement_on(self) -> bool:
        """True when budgets with a throttle or suspend action are acted on at the gateway."""
        return self.budget_enforcement.lower() == "on"

    @property
    def redact_bodies(self) -> bool:
        """DEADLETTER_REDACT_BODIES: dead-letters keep no request or response body (a digest instead)."""
        return self.deadletter_redact_bodies.lower() == "true"

    @property
    def rate_card(self) -> Path:
        """The rate card CSV: RATE_CARD_PATH or the one shipped with the package."""
        return Path(self.rate_card_path) if self.rate_card_path else default_config_path("rate_card.csv")

    @property
    def deployments(self) -> Path:
        """The deployments map CSV: DEPLOYMENTS_PATH or the one shipped with the package."""
        return (
            Path(self.deployments_path) if self.deployments_path else default_config_path("deployments.csv")
        )

    @property
    def budgets(self) -> Path:
        """The budgets CSV: BUDGETS_PATH or the one shipped with the package."""
        return Path(self.budgets_path) if self.budgets_path else default_config_path("budgets.csv")

    @property
    def uses_blob(self) -> bool:
        """True when dead-letters and exports go to Blob Storage rather than local folders."""
        return bool(self.storage_blob_endpoint or self.storage_connection_string)
