"""CI (.github/workflows/mssql.yml): wait for the SQL Server container, then create the test
database `floworch_test`. Reads MSSQL_SA_PASSWORD; prints one line; exits 1 after 3 minutes."""

from __future__ import annotations

import os
import sys
import time

import pyodbc

DSN = (
    "Driver={ODBC Driver 18 for SQL Server};Server=tcp:127.0.0.1,1433;Database=master;"
    "UID=sa;PWD={password};Encrypt=yes;TrustServerCertificate=yes;Connection Timeout=5"
)


def main() -> int:
    password = os.environ["MSSQL_SA_PASSWORD"]
    deadline = time.monotonic() + 180
    while True:
        try:
            connection = pyodbc.connect(DSN.replace("{password}", password), autocommit=True)
            break
        except pyodbc.Error as exc:
            if time.monotonic() > deadline:
                print(f"mssql: SQL Server did not accept connections: {exc}", file=sys.stderr)
                return 1
            time.sleep(2)
    with connection:
        connection.execute("IF DB_ID('floworch_test') IS NULL CREATE DATABASE floworch_test")
    print("mssql: database floworch_test is ready")
    return 0


if __name__ == "__main__":
    sys.exit(main())
