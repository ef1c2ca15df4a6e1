"""Packing a Microsoft Entra access token for the SQL Server ODBC driver."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from floworch.storage.sql.mssql_auth import (
    AZURE_SQL_SCOPE,
    SQL_COPT_SS_ACCESS_TOKEN,
    install_entra_token_hook,
    pack_access_token,
    strip_auth_parameters,
    token_connect_attrs,
)


@dataclass
class _Token:
    token: str


class FakeCredential:
    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str) -> Any:
        self.scopes.append(scopes)
        return _Token(f"tok-{len(self.scopes)}")


def test_token_is_utf16le_with_a_little_endian_length_prefix() -> None:
    packed = pack_access_token("eyJ0é")
    body = "eyJ0é".encode("utf-16-le")
    assert packed[:4] == struct.pack("<I", len(body)) == bytes([10, 0, 0, 0])
    assert packed[4:] == body
    assert packed[4:6] == b"e\x00"


def test_connect_attrs_carry_a_fresh_token_for_the_sql_scope() -> None:
    credential = FakeCredential()
    attrs = token_connect_attrs(credential)
    assert list(attrs) == [SQL_COPT_SS_ACCESS_TOKEN] == [1256]
    assert attrs[1256] == pack_access_token("tok-1")
    assert credential.scopes == [(AZURE_SQL_SCOPE,)]


def test_every_new_connection_gets_a_token() -> None:
    url = make_url(
        "mssql+pyodbc://@srv.database.windows.net/db"
        "?driver=ODBC+Driver+18+for+SQL+Server&azure_client_id=abc"
    )
    assert "azure_client_id" not in strip_auth_parameters(url).query
    engine = create_engine(strip_auth_parameters(url))
    credential = FakeCredential()
    install_entra_token_hook(engine, url, credential)
    for expected in ("tok-1", "tok-2"):
        cparams: dict[str, Any] = {"dsn": "x"}
        dialect = engine.dialect
        dialect.dispatch.do_connect(dialect, None, [], cparams)
        assert cparams["attrs_before"] == {1256: pack_access_token(expected)}
    engine.dispose()
