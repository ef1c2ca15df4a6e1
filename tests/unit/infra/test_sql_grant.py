"""The SQL grant script: SID bytes, quoting, the T-SQL it runs, and its one-line failures.

No SQL Server runs here, so the side that talks to Azure is driven through its two seams (the
token source and the connect function) with small recording fakes.
"""

from __future__ import annotations

import importlib.util
import struct
import sys
import uuid
from types import ModuleType
from typing import Any

import pytest

from floworch.storage.sql.mssql_auth import SQL_COPT_SS_ACCESS_TOKEN
from tests.unit.infra.conftest import ROOT

CLIENT_ID = "2ff8edf0-dccb-4148-a649-2c1154e1e129"
SID = "0xF0EDF82FCBDC4841A6492C1154E1E129"  # the published example (azure-notes 4.5)


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sql_grant", ROOT / "infra/scripts/sql_grant.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sql_grant"] = module
    spec.loader.exec_module(module)
    return module


grant = _load()


def request(**overrides: Any) -> Any:
    values = {
        "server": "sql-x.database.windows.net",
        "database": "floworch",
        "identity_name": "id-floworch-x",
        "client_id": CLIENT_ID,
    }
    return grant.GrantRequest(**{**values, **overrides})


def test_sid_is_the_client_id_in_sql_server_guid_layout() -> None:
    assert grant.sid_literal(CLIENT_ID) == SID
    assert grant.sid_bytes(CLIENT_ID) == uuid.UUID(CLIENT_ID).bytes_le
    assert grant.sid_literal(CLIENT_ID.upper()) == SID


def test_a_client_id_that_is_no_guid_is_refused_in_one_line() -> None:
    with pytest.raises(grant.GrantError, match="is not a GUID: pass the identity's client id"):
        grant.sid_bytes("id-floworch-x")


def test_identifiers_and_strings_are_quoted() -> None:
    assert grant.quote_identifier("a]b") == "[a]]b]"
    assert grant.quote_string("it's") == "N'it''s'"
    for bad in ("", "x\x00y", "a" * 129):
        with pytest.raises(grant.GrantError):
            grant.quote_identifier(bad)


def test_the_statements_create_the_user_by_sid_and_grant_read_write_only() -> None:
    statements = grant.grant_statements(request())
    assert statements[0] == (
        "IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = N'id-floworch-x') "
        f"CREATE USER [id-floworch-x] WITH SID = {SID}, TYPE = E;"
    )
    assert [s.split("ALTER ROLE ")[1] for s in statements[1:]] == [
        "[db_datareader] ADD MEMBER [id-floworch-x];",
        "[db_datawriter] ADD MEMBER [id-floworch-x];",
    ]
    assert "FROM EXTERNAL PROVIDER" not in " ".join(statements)
    assert not any("ddladmin" in s or "db_owner" in s for s in statements)


def test_a_hostile_name_cannot_break_out_of_the_statement() -> None:
    statements = grant.grant_statements(request(identity_name="x]; DROP TABLE runs; --'"))
    assert "[x]]; DROP TABLE runs; --']" in statements[0]
    assert "N'x]; DROP TABLE runs; --'''" in statements[0]


def test_an_unknown_role_is_refused() -> None:
    with pytest.raises(grant.GrantError, match="role 'db_owner' is not one of"):
        grant.grant_statements(request(roles=("db_owner",)))


def test_the_token_is_packed_for_the_odbc_driver() -> None:
    seen: dict[str, Any] = {}

    def connect(conn_str: str, attrs: dict[int, bytes]) -> Any:
        seen["conn_str"], seen["attrs"] = conn_str, attrs
        return FakeConnection()

    grant.connect_with_retry(request(), connect, lambda: "tok")
    packed = seen["attrs"][SQL_COPT_SS_ACCESS_TOKEN]
    assert packed == struct.pack("<I6s", 6, "tok".encode("utf-16-le"))
    assert (
        "Server=tcp:sql-x.database.windows.net,1433;Database=floworch;Encrypt=yes"
        in seen["conn_str"]
    )
    assert "TrustServerCertificate=no" in seen["conn_str"]


class FakeCursor:
    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection
        self.last = ""

    def execute(self, sql: str, *params: Any) -> None:
        self.connection.executed.append((sql, params))
        self.last = sql
        if self.connection.fail_on and self.connection.fail_on in sql:
            raise RuntimeError(self.connection.error)

    def fetchone(self) -> Any:
        return None if self.connection.existing_sid is None else (self.connection.existing_sid,)

    def fetchall(self) -> list[Any]:
        return [(role,) for role in self.connection.roles_after]


class FakeConnection:
    def __init__(
        self,
        *,
        existing_sid: bytes | None = None,
        roles_after: tuple[str, ...] = ("db_datareader", "db_datawriter"),
        fail_on: str = "",
        error: str = "",
    ) -> None:
        self.existing_sid = existing_sid
        self.roles_after = roles_after
        self.fail_on = fail_on
        self.error = error
        self.executed: list[tuple[str, tuple[Any, ...]]] = []
        self.committed = False
        self.closed = False

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def commit(self) -> None:
        self.committed = True

    def close(self) -> None:
        self.closed = True


ENV = {
    "SQL_SERVER_FQDN": "sql-x.database.windows.net",
    "SQL_DATABASE_NAME": "floworch",
    "APP_IDENTITY_NAME": "id-floworch-x",
    "APP_IDENTITY_CLIENT_ID": CLIENT_ID,
}


def run(
    capsys: pytest.CaptureFixture[str], connection: FakeConnection, argv: list[str] | None = None
) -> tuple[int, str, str]:
    code = grant.main(argv or [], ENV, connect=lambda _c, _a: connection, get_token=lambda: "tok")
    out, err = capsys.readouterr()
    return code, out, err


def test_main_grants_from_the_azd_environment(capsys: pytest.CaptureFixture[str]) -> None:
    connection = FakeConnection()
    code, out, err = run(capsys, connection)
    assert (code, err) == (0, "")
    assert out == (
        "sql_grant: [id-floworch-x] is a user of floworch on sql-x.database.windows.net "
        "with db_datareader, db_datawriter\n"
    )
    sql = [s for s, _ in connection.executed]
    assert sql[0].startswith("SELECT sid FROM sys.database_principals")
    assert sql[1:4] == grant.grant_statements(request())
    assert connection.committed and connection.closed


def test_an_existing_user_of_another_identity_is_refused(
    capsys: pytest.CaptureFixture[str],
) -> None:
    other = uuid.uuid4().bytes_le
    code, out, err = run(capsys, FakeConnection(existing_sid=other))
    assert code == 1 and out == ""
    assert err.count("\n") == 1
    assert "already exists with another SID" in err and "DROP USER [id-floworch-x]" in err


def test_rerunning_for_the_same_identity_is_fine(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, _err = run(capsys, FakeConnection(existing_sid=grant.sid_bytes(CLIENT_ID)))
    assert code == 0


def test_a_grant_that_did_not_take_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    code, _out, err = run(capsys, FakeConnection(roles_after=("db_datareader",)))
    assert code == 1 and "still lacks db_datawriter" in err


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            "[08001] Cannot open server 'sql-x' requested by the login. Client with IP address "
            "'203.0.113.7' is not allowed to access the server. (40615)",
            "set DEPLOYER_IP_ADDRESS",
        ),
        (
            "[28000] Login failed for user '<token-identified principal>'. (18456)",
            "must be a member of the server's Entra admin group",
        ),
        (
            "[01000] [unixODBC][Driver Manager]Can't open lib 'ODBC Driver 18 for SQL Server'",
            "install msodbcsql18",
        ),
    ],
)
def test_connection_failures_are_one_clear_line(
    capsys: pytest.CaptureFixture[str], error: str, expected: str
) -> None:
    def connect(_c: str, _a: dict[int, bytes]) -> Any:
        raise RuntimeError(error)

    code = grant.main([], ENV, connect=connect, get_token=lambda: "tok")
    out, err = capsys.readouterr()
    assert code == 1 and out == ""
    assert err.startswith("sql_grant: ") and err.count("\n") == 1
    assert expected in err


def test_a_paused_database_is_retried_then_explained() -> None:
    calls: list[float] = []

    def connect(_c: str, _a: dict[int, bytes]) -> Any:
        raise RuntimeError(
            "Database 'floworch' on server 'sql-x' is not currently available. (40613)"
        )

    with pytest.raises(
        grant.GrantError, match=r"SQL error on sql-x\.database\.windows\.net/floworch"
    ):
        grant.connect_with_retry(request(), connect, lambda: "tok", attempts=3, sleep=calls.append)
    assert calls == [5.0, 10.0]


def test_a_failing_statement_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    connection = FakeConnection(
        fail_on="CREATE USER", error="[42000] User does not have permission (15247)"
    )
    code, _out, err = run(capsys, connection)
    assert code == 1 and "not allowed to create users in" in err
    assert connection.closed and not connection.committed


def test_missing_arguments_name_the_flag_and_the_variable(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        grant.main([], {}, connect=lambda _c, _a: FakeConnection(), get_token=lambda: "tok")
    assert exit_info.value.code == 2
    assert "missing --server (or SQL_SERVER_FQDN)" in capsys.readouterr().err


def test_print_sql_prints_the_statements(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _err = run(capsys, FakeConnection(), ["--print-sql", "--role", "db_ddladmin"])
    assert code == 0
    assert "ALTER ROLE [db_ddladmin] ADD MEMBER [id-floworch-x];" in out
    assert "db_datareader" not in out
