# azd postprovision hook on Windows: the same two steps as postprovision.sh.
$ErrorActionPreference = 'Stop'
Set-Location (Join-Path $PSScriptRoot '..\..')
$python = if ($env:FLOWORCH_PYTHON) { $env:FLOWORCH_PYTHON } elseif (Test-Path '.venv\Scripts\python.exe') { '.venv\Scripts\python.exe' } else { 'python' }
foreach ($name in 'SQL_SERVER_FQDN', 'SQL_DATABASE_NAME', 'APP_IDENTITY_NAME', 'APP_IDENTITY_CLIENT_ID') {
  if (-not [Environment]::GetEnvironmentVariable($name)) {
    Write-Error "postprovision: $name is not set: run this from azd (azd hooks run postprovision)"
    exit 1
  }
}
& $python infra/scripts/sql_grant.py
if ($LASTEXITCODE -ne 0) { exit $LASTEXITCODE }
$env:FLOWORCH_DB_URL = "mssql+aioodbc://@$($env:SQL_SERVER_FQDN)/$($env:SQL_DATABASE_NAME)?driver=ODBC+Driver+18+for+SQL+Server"
& $python -c 'from floworch.cli.main import main; main()' db upgrade
exit $LASTEXITCODE
