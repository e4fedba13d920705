"""Azure SDK clients from endpoints and an identity, with managed identity and no secrets.

Every function takes the endpoint (and the user-assigned identity's client id, when there is one)
as arguments: ``chargeback.wiring`` reads them from ``Settings`` and calls these.

In Azure the Function App's managed identity signs every call (``AZURE_CLIENT_ID`` picks a
user-assigned one). Elsewhere ``DefaultAzureCredential`` takes a developer's login. The local
stand-ins (Azurite, the local Log Analytics server on localhost) need no Azure credential: they get
a fixed local token, and Azurite is reached through ``STORAGE_CONNECTION_STRING`` with its public
development key, which is refused for any non-local account.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from chargeback.edges.endpoints import is_local_endpoint
from chargeback.errors import ConfigError

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential
    from azure.monitor.ingestion import LogsIngestionClient
    from azure.monitor.query import LogsQueryClient
    from azure.storage.blob import BlobServiceClient


class LocalStandInCredential:
    """A credential for localhost stand-ins only: a fixed token that no Azure service accepts."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("local-stand-in", int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo("local-stand-in", int(time.time()) + 3600)


def credential(client_id: str = "", endpoint: str = "") -> TokenCredential:
    """Managed identity in Azure, a developer login elsewhere, a fixed token for localhost.

    ``client_id`` picks a user-assigned managed identity (AZURE_CLIENT_ID); blank means the
    system-assigned one. ``endpoint`` on localhost gets the local stand-in credential.
    """
    if endpoint and is_local_endpoint(endpoint):
        return LocalStandInCredential()
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    if os.environ.get("IDENTITY_ENDPOINT") or os.environ.get("MSI_ENDPOINT"):
        return ManagedIdentityCredential(client_id=client_id or None)
    return DefaultAzureCredential(managed_identity_client_id=client_id or None)


def _is_local_connection_string(value: str) -> bool:
    parts = dict(part.split("=", 1) for part in value.split(";") if "=" in part)
    if parts.get("UseDevelopmentStorage", "").lower() == "true":
        return True
    endpoint = parts.get("BlobEndpoint", "")
    return bool(endpoint) and is_local_endpoint(endpoint)


def blob_service(
    endpoint: str = "", connection_string: str = "", client_id: str = "", **client_options: Any
) -> BlobServiceClient:
    """Blob client: identity on ``endpoint`` (STORAGE_BLOB_ENDPOINT), or Azurite's connection string."""
    from azure.storage.blob import BlobServiceClient

    if endpoint:
        return BlobServiceClient(endpoint, credential=credential(client_id, endpoint), **client_options)
    if connection_string:
        if not _is_local_connection_string(connection_string):
            raise ConfigError(
                "STORAGE_CONNECTION_STRING is only for Azurite on localhost; use STORAGE_BLOB_ENDPOINT "
                "with a managed identity for a real storage account"
            )
        return BlobServiceClient.from_connection_string(connection_string, **client_options)
    raise ConfigError(
        "no Blob Storage configured: set STORAGE_BLOB_ENDPOINT (or STORAGE_CONNECTION_STRING for Azurite)"
    )


def logs_ingestion_client(endpoint: str, client_id: str = "", **client_options: Any) -> LogsIngestionClient:
    """Logs Ingestion client for the data collection rule's endpoint (LOGS_INGESTION_ENDPOINT)."""
    from azure.monitor.ingestion import LogsIngestionClient

    if not endpoint:
        raise ConfigError("LOGS_INGESTION_ENDPOINT is not set")
    return LogsIngestionClient(endpoint, credential(client_id, endpoint), **client_options)


def logs_query_client(endpoint: str = "", client_id: str = "", **client_options: Any) -> LogsQueryClient:
    """Log Analytics query client (public cloud unless ``endpoint``, LOG_ANALYTICS_QUERY_ENDPOINT, is set)."""
    from azure.monitor.query import LogsQueryClient

    if endpoint:
        return LogsQueryClient(credential(client_id, endpoint), endpoint=endpoint, **client_options)
    return LogsQueryClient(credential(client_id), **client_options)
