"""``floworch serve`` as a user runs it: a real uvicorn server on 127.0.0.1 in a subprocess,
driven over HTTP; it refuses a public address without a token and stops cleanly on Ctrl-C."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from .serve_support import Serve, write_project

pytestmark = pytest.mark.slow
HEADERS = {"X-Floworch-Request": "1"}


def _wait(client: httpx.Client, path: str, ok: Any, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path).json()
        if ok(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_serve_runs_flows_over_http_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    manifest = write_project(tmp_path / "flows")
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    serve = Serve(
        tmp_path,
        str(manifest),
        "--port",
        "0",
        "--db",
        db,
        env={"ORDERS_SECRET": "topsecret", "FLOWORCH_API_TOKEN": ""},
    )
    try:
        url = serve.wait_url()
        with httpx.Client(base_url=url, headers=HEADERS, timeout=30) as c:
            assert c.get("/readyz").json()["status"] == "ready"
            started = c.post("/api/flows/orders/runs", json={"orderId": 1})
            assert started.status_code == 202, started.text
            run_id = started.json()["runId"]

            def waiting(body: Any) -> bool:
                return any(
                    s["stepKey"] == "approve" and s["status"] == "Waiting" for s in body["steps"]
                )

            _wait(c, f"/api/runs/{run_id}", waiting)
            with c.stream("GET", f"/api/runs/{run_id}/stream") as events:
                signal = c.post(f"/api/runs/{run_id}/signals/approval", json={"ok": True})
                assert signal.json()["outcome"] == "Delivered"
                lines = [line for line in events.iter_lines() if line.startswith("event:")]
            assert lines[0] == "event: RunStarted" and lines[-1] == "event: end"
            assert "event: RunSucceeded" in lines
            done = c.get(f"/api/runs/{run_id}").json()
            assert done["status"] == "Succeeded"

            body = json.dumps({"orderId": 2}).encode()
            ts = str(int(time.time()))
            mac = hmac.new(b"topsecret", ts.encode() + b"." + body, hashlib.sha256).hexdigest()
            hook = c.post(
                "/api/webhooks/orders",
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "X-Floworch-Timestamp": ts,
                    "X-Floworch-Signature": f"sha256={mac}",
                    "X-Floworch-Delivery": "evt-1",
                },
            )
            assert hook.status_code == 202, hook.text
            cancel = c.post(f"/api/runs/{hook.json()['runId']}/cancel", json={"reason": "t"})
            assert cancel.json()["cancelled"] is True
            assert c.get("/api/runs").json()["total"] == 2
            missing = c.get("/api/runs/nope")
            assert missing.status_code == 404 and missing.json()["status"] == 404
    finally:
        code, err = serve.stop()
    assert code == 0, err
    assert "Traceback" not in err, err
    flows = subprocess.run(
        [sys.executable, "-m", "floworch", "flows", "list", "--db", db, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert flows.returncode == 0, flows.stderr
    assert json.loads(flows.stdout)[0]["lastRunStatus"] == "Cancelled"


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    manifest = write_project(tmp_path / "flows")
    env = Serve.clean_env()
    done = subprocess.run(
        [sys.executable, "-m", "floworch", "serve", str(manifest), "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
        env=env,
    )
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error:") and "FLOWORCH_API_TOKEN" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_flows_and_schedules_commands(tmp_path: Path) -> None:
    manifest = write_project(tmp_path / "flows")
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"

    def floworch(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "floworch", *args, "--db", db],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )

    assert floworch("run", str(manifest), "--timeout", "1").returncode in (0, 1)
    assert "disabled" in floworch("flows", "disable", "orders").stdout
    listed = json.loads(floworch("flows", "list", "--json").stdout)
    assert listed[0]["enabled"] is False and listed[0]["manifestEnabled"] is True
    unknown = floworch("flows", "enable", "nope")
    assert unknown.returncode == 2 and unknown.stderr.startswith("error:")  # docs/cli.md
    assert floworch("schedules", "pause", "orders", "nightly").returncode == 0
    (row,) = json.loads(floworch("schedules", "list", "--json").stdout)
    assert (row["triggerKey"], row["paused"], row["nextFireAt"]) == ("nightly", True, None)
    bad = floworch("schedules", "set-cron", "orders", "nightly", "nope")
    assert bad.returncode == 2 and "cron" in bad.stderr
