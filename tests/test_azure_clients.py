"""Azure clients from endpoints: a fixed token for local stand-ins, Azurite only by its connection string."""

from __future__ import annotations

import pytest

from chargeback.edges.azure_clients import (
    LocalStandInCredential,
    blob_service,
    credential,
    logs_ingestion_client,
    logs_query_client,
)
from chargeback.errors import ConfigError

AZURITE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
)


def test_a_local_endpoint_gets_the_stand_in_credential_with_a_token():
    """localhost needs no Azure login: the stand-in credential hands out a fixed token."""
    cred = credential("", "http://127.0.0.1:8089")
    assert isinstance(cred, LocalStandInCredential)
    assert cred.get_token("https://monitor.azure.com/.default").token == "local-stand-in"


def test_a_real_endpoint_gets_an_azure_identity_credential():
    """Any other endpoint gets azure-identity's credential (managed identity in Azure)."""
    cred = credential("00000000-0000-0000-0000-000000000001", "https://dce.ingest.monitor.azure.com")
    assert not isinstance(cred, LocalStandInCredential)
    assert type(cred).__module__.startswith("azure.identity")


def test_azurite_is_reached_through_its_connection_string_only():
    """The development key works for Azurite on localhost; a real account's key string is refused."""
    service = blob_service(connection_string=AZURITE)
    assert service.url.startswith("http://127.0.0.1:10000/devstoreaccount1")
    real = AZURITE.replace("http://127.0.0.1:10000/devstoreaccount1", "https://acct.blob.core.windows.net")
    with pytest.raises(ConfigError, match="only for Azurite"):
        blob_service(connection_string=real)
    with pytest.raises(ConfigError, match="no Blob Storage configured"):
        blob_service()


def test_an_identity_endpoint_builds_the_blob_client_with_a_credential():
    """STORAGE_BLOB_ENDPOINT on localhost: the client targets it with the stand-in credential."""
    service = blob_service(endpoint="https://localhost:10000/devstoreaccount1")
    assert service.url.startswith("https://localhost:10000/devstoreaccount1")
    assert isinstance(service.credential, LocalStandInCredential)


def test_the_monitor_clients_take_their_endpoints():
    """The ingestion client needs its endpoint; the query client uses one when given."""
    with pytest.raises(ConfigError, match="LOGS_INGESTION_ENDPOINT"):
        logs_ingestion_client("")
    assert logs_ingestion_client("http://127.0.0.1:8089") is not None
    assert logs_query_client("http://127.0.0.1:8089") is not None
