"""Microsoft Entra (managed identity) authentication for SQL Server / Azure SQL.

The Microsoft ODBC driver accepts an access token through the pre-connect attribute
``SQL_COPT_SS_ACCESS_TOKEN`` (1256): the token's UTF-16-LE bytes prefixed by their length as a
little-endian 32-bit integer. pyodbc passes it via ``attrs_before``. A fresh token is fetched
(azure-identity caches and refreshes it) each time the pool opens a connection; open connections
stay authenticated after the token expires.

URL: ``mssql+pyodbc://@myserver.database.windows.net/mydb?driver=ODBC+Driver+18+for+SQL+Server``
(no user name = token authentication). Add ``azure_client_id=<id>`` to the query to pick a
user-assigned managed identity.
"""

from __future__ import annotations

import struct
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.engine import URL, Engine

SQL_COPT_SS_ACCESS_TOKEN = 1256
"""The msodbcsql pre-connect attribute that carries an access token."""

AZURE_SQL_SCOPE = "https://database.windows.net/.default"
CLIENT_ID_PARAMETER = "azure_client_id"


class TokenCredential(Protocol):
    """The part of an azure-identity credential this module uses."""

    def get_token(self, *scopes: str) -> Any: ...


def pack_access_token(token: str) -> bytes:
    """Packs an access token as the ODBC driver expects it in ``SQL_COPT_SS_ACCESS_TOKEN``.

    Args:
        token: the bearer token (a JWT string) for the Azure SQL scope.

    Returns:
        ``len(utf16)`` as little-endian uint32, then the token encoded UTF-16-LE.
    """
    encoded = token.encode("utf-16-le")
    return struct.pack(f"<I{len(encoded)}s", len(encoded), encoded)


def token_connect_attrs(credential: TokenCredential) -> dict[int, bytes]:
    """The ``attrs_before`` mapping for pyodbc holding a fresh token from ``credential``."""
    token = credential.get_token(AZURE_SQL_SCOPE).token
    return {SQL_COPT_SS_ACCESS_TOKEN: pack_access_token(token)}


def default_credential(client_id: str | None) -> TokenCredential:
    """A managed-identity-first credential (DefaultAzureCredential also covers ``az login``)."""
    from azure.identity import DefaultAzureCredential

    if client_id:
        return DefaultAzureCredential(managed_identity_client_id=client_id)
    return DefaultAzureCredential()


def strip_auth_parameters(url: URL) -> URL:
    """Removes floworch's own query parameters before the URL reaches the ODBC driver."""
    return url.difference_update_query([CLIENT_ID_PARAMETER])


def install_entra_token_hook(
    engine: Engine, url: URL, credential: TokenCredential | None = None
) -> None:
    """Makes every new connection of ``engine`` authenticate with an Entra access token."""
    client_id = url.query.get(CLIENT_ID_PARAMETER)
    chosen = credential or default_credential(client_id if isinstance(client_id, str) else None)

    @event.listens_for(engine, "do_connect")
    def _provide_token(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        attrs = dict(cparams.get("attrs_before") or {})
        attrs.update(token_connect_attrs(chosen))
        cparams["attrs_before"] = attrs
