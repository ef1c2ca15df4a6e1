"""Makes the Function App's managed identity a user of its Azure SQL database.

    python infra/scripts/sql_grant.py            # after `azd provision` (reads the azd outputs)
    python infra/scripts/sql_grant.py --server sql-x.database.windows.net --database floworch \\
        --identity-name id-floworch-x --client-id 00000000-0000-0000-0000-000000000000

Run it as a member of the server's Microsoft Entra admin group (`az login` first, or in CI after
azure/login). It creates the user with ``CREATE USER [name] WITH SID = <client id>, TYPE = E``, so
the server needs no Microsoft Graph permissions (``FROM EXTERNAL PROVIDER`` would), and grants
only what the app needs at run time: db_datareader and db_datawriter (floworch uses no stored
procedures, so no EXECUTE). The schema migration is a separate step (`floworch db upgrade`, run
by an identity with DDL rights); `--role db_ddladmin` exists for a dedicated migration identity,
never for the app. Rerunning it is safe: an existing user or role membership is left as it is.

Defaults come from the azd environment (the outputs of infra/bicep/main.bicep): SQL_SERVER_FQDN,
SQL_DATABASE_NAME, APP_IDENTITY_NAME, APP_IDENTITY_CLIENT_ID. Needs pyodbc, azure-identity and
the Microsoft ODBC Driver 18 for SQL Server (`pip install 'floworch[sqlserver]'`).
Each failure prints one line saying what went wrong and what to do; the exit code is 1 (2 for
bad arguments).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from floworch.storage.sql.mssql_auth import (
    AZURE_SQL_SCOPE,
    SQL_COPT_SS_ACCESS_TOKEN,
    pack_access_token,
)

APP_ROLES = ("db_datareader", "db_datawriter")
"""What the app identity needs at run time."""
ALLOWED_ROLES = (*APP_ROLES, "db_ddladmin")
ODBC_DRIVER = "ODBC Driver 18 for SQL Server"
MAX_NAME_LENGTH = 128
CONNECT_ATTEMPTS = 6
"""A paused serverless database refuses the first connections while it resumes (about a minute)."""


class GrantError(Exception):
    """A failure with a one-line message for the user."""


@dataclass(frozen=True)
class GrantRequest:
    """Who becomes a database user, where, with which roles."""

    server: str
    database: str
    identity_name: str
    client_id: str
    roles: tuple[str, ...] = APP_ROLES


# --- pure parts: SID, quoting, T-SQL ------------------------------------------------------------


def sid_bytes(client_id: str) -> bytes:
    """The database SID of a managed identity or service principal: its client id, bytes_le.

    SQL Server stores a GUID in its mixed-endian (little-endian first three fields) layout, which
    is what :attr:`uuid.UUID.bytes_le` returns.
    """
    try:
        return uuid.UUID(client_id.strip()).bytes_le
    except ValueError:
        raise GrantError(
            f"client id {client_id!r} is not a GUID: pass the identity's client id "
            "(APP_IDENTITY_CLIENT_ID), not its name or principal id"
        ) from None


def sid_literal(client_id: str) -> str:
    """The SID as a T-SQL binary literal, e.g. ``0xF0EDF82FCBDC4841A6492C1154E1E129``."""
    return "0x" + sid_bytes(client_id).hex().upper()


def check_name(name: str, what: str) -> str:
    """Refuses a name SQL Server cannot hold as an identifier."""
    if not name or not name.strip():
        raise GrantError(f"{what} is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise GrantError(f"{what} {name[:20]!r}... is longer than {MAX_NAME_LENGTH} characters")
    if any(ord(char) < 32 for char in name):
        raise GrantError(f"{what} {name!r} contains a control character")
    return name


def quote_identifier(name: str) -> str:
    """``[name]`` with ``]`` doubled: the T-SQL delimited identifier for any name."""
    return "[" + check_name(name, "name").replace("]", "]]") + "]"


def quote_string(value: str) -> str:
    """``N'value'`` with ``'`` doubled: a T-SQL Unicode string literal."""
    return "N'" + value.replace("'", "''") + "'"


ROLE_MEMBERS_QUERY = (
    "SELECT r.name FROM sys.database_role_members AS m "
    "JOIN sys.database_principals AS r ON r.principal_id = m.role_principal_id "
    "JOIN sys.database_principals AS u ON u.principal_id = m.member_principal_id WHERE 1 = 1"
)
"""The roles of database users; the statements and the final check add conditions to it."""


def grant_statements(request: GrantRequest) -> list[str]:
    """The idempotent T-SQL batch that creates the user and adds it to its roles."""
    user = quote_identifier(request.identity_name)
    name = quote_string(request.identity_name)
    statements = [
        f"IF NOT EXISTS (SELECT 1 FROM sys.database_principals WHERE name = {name}) "
        f"CREATE USER {user} WITH SID = {sid_literal(request.client_id)}, TYPE = E;"
    ]
    for role in request.roles:
        if role not in ALLOWED_ROLES:
            raise GrantError(f"role {role!r} is not one of {', '.join(ALLOWED_ROLES)}")
        statements.append(
            f"IF NOT EXISTS ({ROLE_MEMBERS_QUERY} AND r.name = {quote_string(role)} "
            f"AND u.name = {name}) ALTER ROLE {quote_identifier(role)} ADD MEMBER {user};"
        )
    return statements


def check_existing_user(request: GrantRequest, existing_sid: bytes | None) -> None:
    """Refuses to grant to a user of the same name that belongs to another identity."""
    if existing_sid is not None and bytes(existing_sid) != sid_bytes(request.client_id):
        raise GrantError(
            f"database user [{request.identity_name}] already exists with another SID "
            f"(0x{bytes(existing_sid).hex().upper()}; a deleted identity of the same name?): "
            f"run DROP USER [{request.identity_name}] in {request.database}, then rerun"
        )


def check_roles(request: GrantRequest, granted: set[str]) -> None:
    """Refuses to report success unless the user now holds every requested role."""
    missing = [role for role in request.roles if role not in granted]
    if missing:
        raise GrantError(
            f"[{request.identity_name}] still lacks {', '.join(missing)} in {request.database} "
            "after the grant: check that you are a member of the server's Entra admin group"
        )


def connection_string(server: str, database: str) -> str:
    """The ODBC connection string (encrypted, certificate checked; the token goes separately)."""
    return (
        f"Driver={{{ODBC_DRIVER}}};Server=tcp:{server},1433;Database={database};"
        "Encrypt=yes;TrustServerCertificate=no;Connection Timeout=30"
    )


def explain_odbc_error(exc: BaseException, request: GrantRequest) -> str:
    """One line for a driver error: what failed and what to do."""
    text = " ".join(str(exc).split())
    where = f"{request.server}/{request.database}"
    if "IM002" in text or "Can't open lib" in text or "file not found" in text.lower():
        return (
            f"the ODBC driver '{ODBC_DRIVER}' is not installed: install msodbcsql18 "
            "(Microsoft's package repository) and rerun"
        )
    if "40615" in text:
        return (
            f"the SQL firewall of {request.server} refuses this machine: set DEPLOYER_IP_ADDRESS "
            "to your public IP (azd env set DEPLOYER_IP_ADDRESS <ip>; azd provision) and rerun"
        )
    if "18456" in text or "Login failed" in text:
        return (
            f"login to {where} failed: the signed-in account must be a member of the server's "
            "Entra admin group (SQL_ADMIN_GROUP_NAME)"
        )
    if "15247" in text or "permission" in text.lower():
        return f"not allowed to create users in {where}: sign in as a member of the admin group"
    return f"SQL error on {where}: {text}"


# --- the side that talks to Azure -------------------------------------------------------------


class Cursor(Protocol):
    def execute(self, sql: str, *params: Any) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    def cursor(self) -> Cursor: ...

    def commit(self) -> None: ...

    def close(self) -> None: ...


Connect = Callable[[str, dict[int, bytes]], Connection]
GetToken = Callable[[], str]


def default_get_token() -> str:
    """An Azure SQL token for the signed-in account (az login, CI's federated identity...)."""
    try:
        from azure.identity import DefaultAzureCredential
    except ImportError:
        raise GrantError(
            "azure-identity is not installed: pip install 'floworch[sqlserver]'"
        ) from None
    try:
        with DefaultAzureCredential(exclude_interactive_browser_credential=True) as credential:
            return str(credential.get_token(AZURE_SQL_SCOPE).token)
    except Exception as exc:
        first = " ".join(str(exc).split())[:200]
        raise GrantError(
            f"could not get an Azure SQL token ({type(exc).__name__}: {first}): "
            "run `az login` (or azure/login in CI) and rerun"
        ) from None


def default_connect(conn_str: str, attrs_before: dict[int, bytes]) -> Connection:
    try:
        import pyodbc
    except ImportError:
        raise GrantError(
            "pyodbc is not installed (or unixODBC is missing): pip install 'floworch[sqlserver]'"
        ) from None
    connection: Connection = pyodbc.connect(conn_str, attrs_before=attrs_before, autocommit=False)
    return connection


def is_transient(exc: BaseException) -> bool:
    """A paused serverless database or a busy server: worth another attempt."""
    text = str(exc)
    return any(code in text for code in ("40613", "40501", "40197", "49918", "HYT00", "08S01"))


def connect_with_retry(
    request: GrantRequest,
    connect: Connect,
    get_token: GetToken,
    *,
    attempts: int = CONNECT_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
) -> Connection:
    attrs = {SQL_COPT_SS_ACCESS_TOKEN: pack_access_token(get_token())}
    conn_str = connection_string(request.server, request.database)
    for attempt in range(1, attempts + 1):
        try:
            return connect(conn_str, attrs)
        except GrantError:
            raise
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise GrantError(explain_odbc_error(exc, request)) from None
            sleep(min(5.0 * 2 ** (attempt - 1), 30.0))
    raise AssertionError("unreachable")


def grant(request: GrantRequest, connect: Connect, get_token: GetToken) -> list[str]:
    """Creates the user and its role memberships; returns the statements it ran."""
    statements = grant_statements(request)
    connection = connect_with_retry(request, connect, get_token)
    try:
        cursor = connection.cursor()
        try:
            cursor.execute(
                "SELECT sid FROM sys.database_principals WHERE name = ?", request.identity_name
            )
            row = cursor.fetchone()
            check_existing_user(request, None if row is None else row[0])
            for statement in statements:
                cursor.execute(statement)
            connection.commit()
            cursor.execute(ROLE_MEMBERS_QUERY + " AND u.name = ?", request.identity_name)
            check_roles(request, {str(row[0]) for row in cursor.fetchall()})
        except GrantError:
            raise
        except Exception as exc:
            raise GrantError(explain_odbc_error(exc, request)) from None
    finally:
        connection.close()
    return statements


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> tuple[GrantRequest, bool]:
    """The request and whether to only print the T-SQL (``--print-sql``)."""
    parser = argparse.ArgumentParser(
        prog="sql_grant.py",
        description="Make the Function App's managed identity a user of its Azure SQL database.",
    )
    parser.add_argument("--server", default=env.get("SQL_SERVER_FQDN"), help="SQL server FQDN")
    parser.add_argument("--database", default=env.get("SQL_DATABASE_NAME"), help="database name")
    parser.add_argument(
        "--identity-name", default=env.get("APP_IDENTITY_NAME"), help="the identity's name"
    )
    parser.add_argument(
        "--client-id", default=env.get("APP_IDENTITY_CLIENT_ID"), help="the identity's client id"
    )
    parser.add_argument(
        "--role",
        action="append",
        choices=ALLOWED_ROLES,
        help="a role to grant (repeatable; default: db_datareader and db_datawriter)",
    )
    parser.add_argument(
        "--print-sql", action="store_true", help="print the T-SQL instead of running it"
    )
    args = parser.parse_args(list(argv))
    names = {
        "--server": ("SQL_SERVER_FQDN", args.server),
        "--database": ("SQL_DATABASE_NAME", args.database),
        "--identity-name": ("APP_IDENTITY_NAME", args.identity_name),
        "--client-id": ("APP_IDENTITY_CLIENT_ID", args.client_id),
    }
    missing = [f"{flag} (or {var})" for flag, (var, value) in names.items() if not value]
    if missing:
        parser.error("missing " + ", ".join(missing))
    request = GrantRequest(
        server=check_name(args.server, "--server"),
        database=check_name(args.database, "--database"),
        identity_name=check_name(args.identity_name, "--identity-name"),
        client_id=args.client_id,
        roles=tuple(dict.fromkeys(args.role or APP_ROLES)),
    )
    sid_bytes(request.client_id)
    return request, bool(args.print_sql)


def main(
    argv: Sequence[str] | None = None,
    env: Mapping[str, str] | None = None,
    *,
    connect: Connect = default_connect,
    get_token: GetToken = default_get_token,
) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        request, print_sql = parse_args(arguments, os.environ if env is None else env)
        if print_sql:
            print("\n".join(grant_statements(request)))
            return 0
        grant(request, connect, get_token)
    except GrantError as exc:
        print(f"sql_grant: {exc}", file=sys.stderr)
        return 1
    print(
        f"sql_grant: [{request.identity_name}] is a user of {request.database} on "
        f"{request.server} with {', '.join(request.roles)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
