"""``floworch run`` (SQLite) exports through the real OTLP/HTTP exporter, and the docs' console
example runs verbatim: one JSON object per log record, with its run, step and trace ids."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from floworch.testing.telemetry_capture import QUIET_AZURE_MONITOR, OtlpCapture
from tests.acceptance.conftest import ROOT


@pytest.mark.slow
def test_the_docs_example_logs_json_lines_in_the_exported_trace(tmp_path: Path) -> None:
    doc = (ROOT / "docs" / "observability.md").read_text()
    (command,) = re.findall(r"```sh\n(.*?)\n```", doc, flags=re.S)
    args = shlex.split(command)
    assert args[0] == "floworch"
    with OtlpCapture() as otlp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "FLOWORCH_"))}
        env.update(
            QUIET_AZURE_MONITOR,
            OTEL_EXPORTER_OTLP_ENDPOINT=otlp.endpoint,
            FLOWORCH_DB_URL=f"sqlite:///{tmp_path / 'runs.db'}",
        )
        done = subprocess.run(
            [sys.executable, "-m", "floworch", *args[1:]],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
        spans = otlp.spans()
        records = otlp.log_records()
    greeting = next(line for line in lines if line["message"] == "greeting world")
    assert greeting["step_key"] == "greet" and greeting["attempt"] == 1
    run_id = greeting["run_id"]
    mine = [s for s in spans if s["attributes"].get("floworch.run_id") == run_id]
    assert {s["trace_id"] for s in mine} == {greeting["trace_id"]}
    assert {s["name"] for s in mine} == {"flow.trigger", "flow.dispatch", "flow.step"}
    step = next(
        s
        for s in mine
        if s["name"] == "flow.step" and s["attributes"]["floworch.step_key"] == "greet"
    )
    assert step["span_id"] == greeting["span_id"]  # the line names the span that wrote it
    exported = next(r for r in records if r["body"] == "greeting world")
    assert exported["trace_id"] == greeting["trace_id"]
    assert exported["attributes"]["floworch.run_id"] == run_id
