#!/bin/sh
# azd postprovision hook (also run by hand after `az deployment group create`, docs/deploy.md):
#   1. make the Function App's identity a database user (read/write only), then
#   2. migrate the schema as you, the signed-in member of the SQL admin group (DDL rights).
# azd exports the deployment's outputs (SQL_SERVER_FQDN, SQL_DATABASE_NAME, APP_IDENTITY_NAME,
# APP_IDENTITY_CLIENT_ID) to this script's environment.
set -eu
cd "$(dirname "$0")/../.."

python=${FLOWORCH_PYTHON:-}
if [ -z "$python" ]; then
  if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
if ! "$python" -c 'import floworch, pyodbc, azure.identity' 2>/dev/null; then
  echo "postprovision: $python lacks floworch[sqlserver]: run 'bash scripts/setup' (or pip install 'floworch[sqlserver]') and 'azd hooks run postprovision'" >&2
  exit 1
fi

for name in SQL_SERVER_FQDN SQL_DATABASE_NAME APP_IDENTITY_NAME APP_IDENTITY_CLIENT_ID; do
  eval "value=\${$name:-}"
  if [ -z "$value" ]; then
    echo "postprovision: $name is not set: run this from azd (azd hooks run postprovision), or export the deployment outputs first (docs/deploy.md)" >&2
    exit 1
  fi
done

echo "postprovision: granting ${APP_IDENTITY_NAME} read/write on ${SQL_DATABASE_NAME}"
"$python" infra/scripts/sql_grant.py

echo "postprovision: migrating the schema of ${SQL_DATABASE_NAME} (as the signed-in account)"
FLOWORCH_DB_URL="mssql+aioodbc://@${SQL_SERVER_FQDN}/${SQL_DATABASE_NAME}?driver=ODBC+Driver+18+for+SQL+Server" \
  "$python" -c "from floworch.cli.main import main; main()" db upgrade
