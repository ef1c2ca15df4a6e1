"""Smoke test of a deployment: the order example end to end, through Service Bus and over HTTP.

    python infra/scripts/smoke.py                  # after `azd up` (reads the azd outputs)
    python infra/scripts/smoke.py --function-key "$(az functionapp keys list ... -o tsv)"

For each way in (a Service Bus trigger message; POST /api/flows/order-fulfilment/runs when a
function key is given) it starts a run of `order-fulfilment`, waits until the run waits for its
approval, sends the approval signal, and waits until the run Succeeded with `ship` Succeeded.
It uses the floworch CLI as a user would (`floworch trigger --servicebus`, `runs list`,
`signal`, `runs show`), signed in as you (`az login`): you need Azure Service Bus Data Sender
on the namespace (Bicep grants it to operatorPrincipalId) and to be a database user (members of
the SQL admin group are). Prints one line per stage; exits 1 with one line on a failure.
Used by .github/workflows/smoke.yml; cannot run without Azure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

FLOW = "order-fulfilment"
TIMEOUT_SECONDS = 600.0


class SmokeError(Exception):
    """A failed stage, with a one-line message."""


def floworch(args: Sequence[str], env: Mapping[str, str]) -> str:
    executable = shutil.which("floworch") or os.path.join(
        os.path.dirname(sys.executable), "floworch"
    )
    done = subprocess.run(
        [executable, *args], env=dict(env), capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise SmokeError(f"floworch {' '.join(args[:2])} failed: {last[0]}")
    return done.stdout


def runs(env: Mapping[str, str], db: str) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(
        floworch(["runs", "list", "--flow", FLOW, "--json", "--db", db], env)
    )
    return listed


def wait_for(what: str, check: Any, timeout: float = TIMEOUT_SECONDS) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(5)
    raise SmokeError(f"timed out after {timeout:.0f} s waiting for {what}")


def new_run(env: Mapping[str, str], db: str, known: set[str]) -> str:
    def check() -> str | None:
        fresh = [r["runId"] for r in runs(env, db) if r["runId"] not in known]
        return fresh[0] if fresh else None

    run_id: str = wait_for(f"a new {FLOW} run (is the Function App running?)", check)
    return run_id


def show(env: Mapping[str, str], db: str, run_id: str) -> dict[str, Any]:
    shown: dict[str, Any] = json.loads(
        floworch(["runs", "show", run_id, "--json", "--db", db], env)
    )
    return shown


def approve_and_finish(env: Mapping[str, str], db: str, run_id: str) -> None:
    def waiting() -> bool:
        run = show(env, db, run_id)
        if run["status"] != "Running":
            raise SmokeError(f"run {run_id} ended {run['status']} before its approval")
        return run.get("steps", {}).get("approve", {}).get("status") == "Waiting"

    wait_for(f"run {run_id} to wait for its approval", waiting)
    payload = json.dumps({"approved": True, "by": "smoke"})
    floworch(["signal", run_id, "approval", "--payload", payload, "--db", db], env)

    def finished() -> dict[str, Any] | None:
        run = show(env, db, run_id)
        return run if run["status"] != "Running" else None

    run = wait_for(f"run {run_id} to finish", finished)
    ship = run.get("steps", {}).get("ship", {}).get("status")
    if run["status"] != "Succeeded" or ship != "Succeeded":
        raise SmokeError(f"run {run_id} ended {run['status']} (ship: {ship})")
    print(f"smoke: run {run_id} Succeeded")


def start_over_http(hostname: str, function_key: str, customer: str) -> None:
    request = urllib.request.Request(
        f"https://{hostname}/api/flows/{FLOW}/runs",
        data=json.dumps({"customerId": customer}).encode(),
        headers={"Content-Type": "application/json", "x-functions-key": function_key},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            status = response.status
    except OSError as exc:
        raise SmokeError(f"POST https://{hostname}/api/flows/{FLOW}/runs failed: {exc}") from None
    if status >= 300:
        raise SmokeError(f"POST https://{hostname}/api/flows/{FLOW}/runs answered {status}")


def main(argv: Sequence[str] | None = None) -> int:
    env = dict(os.environ)
    parser = argparse.ArgumentParser(prog="smoke.py", description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", default=env.get("SERVICEBUS_NAMESPACE_FQDN"))
    parser.add_argument("--sql-server", default=env.get("SQL_SERVER_FQDN"))
    parser.add_argument("--database", default=env.get("SQL_DATABASE_NAME"))
    parser.add_argument("--hostname", default=env.get("FUNCTION_APP_HOSTNAME"))
    parser.add_argument("--function-key", default=env.get("FUNCTION_KEY"))
    args = parser.parse_args(argv)
    if not (args.namespace and args.sql_server and args.database):
        parser.error("needs --namespace, --sql-server and --database (or the azd outputs)")
    db = f"mssql+aioodbc://@{args.sql_server}/{args.database}?driver=ODBC+Driver+18+for+SQL+Server"
    env.update(
        FLOWORCH_RUNTIME="servicebus",
        FLOWORCH_SERVICEBUS_NAMESPACE=args.namespace,
        FLOWORCH_DB_URL=db,
    )
    try:
        known = {r["runId"] for r in runs(env, db)}
        stamp = str(int(time.time()))
        body = json.dumps({"customerId": f"smoke-{stamp}"})
        floworch(["trigger", FLOW, "--servicebus", "--body", body], env)
        print("smoke: trigger message sent")
        run_id = new_run(env, db, known)
        approve_and_finish(env, db, run_id)
        if args.function_key and args.hostname:
            known.add(run_id)
            start_over_http(args.hostname, args.function_key, f"smoke-http-{stamp}")
            print("smoke: HTTP trigger accepted")
            approve_and_finish(env, db, new_run(env, db, known))
        else:
            print("smoke: no --function-key: HTTP trigger skipped")
    except (SmokeError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
        print(f"smoke: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
