"""The peers of ``bench/compare.py``: DBOS (SQLite, PostgreSQL) and Celery on Redis.

Their benchmark scripts live in ``shared/bench-peers`` (found by walking up from this repository,
or given with ``--peers-dir``); their virtualenvs live outside the project, under
``$PEERS_DIR`` (default ``${TMPDIR:-/tmp}/peers``), exactly where ``run_all.sh`` puts them, with
the versions ``run_all.sh`` pins (read from that script, so the pins live in one place).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEERS = ("dbos", "dbos-pg", "celery")
_VENV_OF = {"dbos": "dbos", "dbos-pg": "dbos", "celery": "celery"}
_SPEC_VARIABLE = {"dbos": "DBOS_SPEC", "celery": "CELERY_SPEC"}
_FALLBACK_SPECS = {"dbos": ["dbos==3.4.0"], "celery": ["celery[redis]==5.7.0"]}


def find_peers_dir(start: Path) -> Path | None:
    """``shared/bench-peers`` in ``start`` or one of its parents."""
    for folder in (start, *start.parents):
        candidate = folder / "shared" / "bench-peers"
        if (candidate / "benchlib.py").is_file():
            return candidate
    return None


def venvs_dir() -> Path:
    """Where the peers' virtualenvs live (as in run_all.sh)."""
    default = Path(os.environ.get("TMPDIR", "/tmp")) / "peers"
    return Path(os.environ.get("PEERS_DIR", str(default)))


def pinned_spec(peers_dir: Path, venv: str) -> list[str]:
    """The pip requirements run_all.sh pins for a venv (``DBOS_SPEC=(${DBOS_SPEC:-"..."})``)."""
    script = (peers_dir / "run_all.sh").read_text(encoding="utf-8")
    match = re.search(rf"^{_SPEC_VARIABLE[venv]}=\(\$\{{\w+:-(.*?)\}}\)", script, re.MULTILINE)
    if match is None:
        return _FALLBACK_SPECS[venv]
    return re.findall(r'"([^"]+)"', match.group(1)) or _FALLBACK_SPECS[venv]


def ensure_venv(peers_dir: Path, peer: str, *, setup: bool) -> tuple[Path | None, str]:
    """The venv's python for ``peer``, building it if allowed; (None, why) when unavailable."""
    name = _VENV_OF[peer]
    venv = venvs_dir() / f"{name}-venv"
    python = venv / "bin" / "python"
    probe = "dbos" if name == "dbos" else "celery"
    if python.is_file() and _imports(python, probe):
        return python, "ok"
    if not setup:
        return None, f"no usable venv at {venv} (run without --no-peer-setup to build it)"
    if name == "celery" and shutil.which("redis-server") is None:
        return None, "redis-server is not installed (apt-get install -y redis-server)"
    logs = venvs_dir() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log_path = logs / f"pip-{name}.log"
    spec = pinned_spec(peers_dir, name)
    print(f"[compare] building {venv} with {' '.join(spec)} (log: {log_path})", file=sys.stderr)
    with log_path.open("a") as log:
        steps = []
        if not python.is_file():
            steps.append([sys.executable, "-m", "venv", str(venv)])
        steps.append([str(python), "-m", "pip", "install", "-q", *spec])
        for command in steps:
            if subprocess.run(command, stdout=log, stderr=log, check=False).returncode != 0:
                return None, f"building its venv failed: {' '.join(command)} (see {log_path})"
    if not _imports(python, probe):
        return None, f"its venv {venv} cannot import {probe} (see {log_path})"
    return python, "ok"


def _imports(python: Path, module: str) -> bool:
    done = subprocess.run(
        [str(python), "-c", f"import {module}"], capture_output=True, check=False, timeout=120
    )
    return done.returncode == 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class PeerRun:
    """What one invocation of a peer script produced."""

    records: list[dict[str, Any]]
    check: str
    error: str | None = None


@contextmanager
def _pg_database(server_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database for DBOS (dropped afterwards); yields its plain URL."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"dbos_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(drivername="postgresql", database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def run_peer(
    peer: str,
    python: Path,
    peers_dir: Path,
    *,
    workloads: list[str],
    runs: int,
    pause: float,
    pg_url: str,
    timeout: float,
) -> PeerRun:
    """Runs one peer's script once (warm-up + ``runs`` timed runs per workload)."""
    script = peers_dir / f"{_VENV_OF[peer]}_bench.py"
    with tempfile.TemporaryDirectory(prefix=f"compare-{peer}-") as tmp:
        env = {
            **os.environ,
            "BENCH_RUNS": str(runs),
            "BENCH_PAUSE_S": str(pause),
            "BENCH_ONLY": ",".join(workloads),
            "BENCH_PEER_LABEL": peer,
            "BENCH_RESULTS_JSONL": str(Path(tmp) / "results.jsonl"),
            "BENCH_TMP": tmp,
            "DBOS_BENCH_QUEUE": "0",
            "CELERY_BENCH_REDIS_PORT": str(free_port()),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if peer == "dbos-pg":
            with _pg_database(pg_url) as url:
                env["DBOS_SYSTEM_DATABASE_URL"] = url
                return _invoke(peer, python, script, env, timeout, Path(tmp))
        env.pop("DBOS_SYSTEM_DATABASE_URL", None)
        return _invoke(peer, python, script, env, timeout, Path(tmp))


def _invoke(
    peer: str, python: Path, script: Path, env: dict[str, str], timeout: float, tmp: Path
) -> PeerRun:
    try:
        done = subprocess.run(
            [str(python), str(script)],
            cwd=script.parent,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return PeerRun([], "", f"{peer} did not finish within {timeout:.0f} s")
    records: list[dict[str, Any]] = []
    check = "result of every run checked by benchlib"
    jsonl = tmp / "results.jsonl"
    lines = jsonl.read_text().splitlines() if jsonl.is_file() else []
    for line in lines:
        record = json.loads(line)
        if "workload" in record:
            records.append({**record, "engine": peer})
        elif "db_check" in record:
            check = _dbos_check(record)
    error = None
    if done.returncode != 0 and not records:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        error = f"{peer} exited with {done.returncode}: {tail[0][:300]}"
    return PeerRun(records, check, error)


def _dbos_check(record: dict[str, Any]) -> str:
    """DBOS keeps one operation_outputs row per executed step: compare with what ran."""
    outputs = record["db_check"].get("operation_outputs")
    executed = record.get("steps_executed")
    verdict = "ok" if outputs == executed else "MISMATCH"
    return f"{verdict}: operation_outputs={outputs}, steps executed={executed}"
