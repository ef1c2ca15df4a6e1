"""The ``floworch`` command, driven as a user would: validate, run, graph, schema, inspect,
steer from another process, and resume after a crash."""

from __future__ import annotations

import json
import signal
import textwrap
import time
from pathlib import Path

from tests.acceptance.conftest import ROOT, Cli

HELLO = str(ROOT / "examples/hello/flow.yaml")
ORDER = str(ROOT / "examples/order_fulfilment/flow.json")


def test_validate_accepts_the_examples(cli: Cli) -> None:
    done = cli.run(
        "validate", ORDER, "--handlers", str(ROOT / "examples/order_fulfilment/handlers.py")
    )
    assert done.returncode == 0, done.stderr
    assert "order-fulfilment (version 1): valid" in done.stdout


def test_validate_lists_every_error_with_its_path(cli: Cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "id": "bad",
                "version": "1",
                "triggers": {"nightly": {"type": "Cron", "cron": "99 * * * *"}},
                "steps": {
                    "approve": {"type": "A"},
                    "ship": {"type": "B", "runAfter": {"aprove": ["Succeeded"]}},
                    "x": {"type": "C", "inputs": {"v": "@triggerBody(.a"}},
                },
            }
        )
    )
    done = cli.run("validate", str(bad))
    assert done.returncode == 2
    assert (
        "steps.ship.runAfter.aprove: no step named 'aprove' (did you mean 'approve'?)"
        in done.stderr
    )
    assert "triggers.nightly.cron" in done.stderr
    assert "steps.x.inputs.v" in done.stderr


def test_run_hello_prints_the_run_as_json(cli: Cli) -> None:
    run = cli.json("run", HELLO, "--body", '{"name": "Ada"}', "--json")
    assert run["status"] == "Succeeded"
    assert run["steps"]["greet"] == {
        "status": "Succeeded",
        "output": {"greeting": "Hello, Ada!"},
        "error": None,
        "attempts": 1,
    }
    assert run["steps"]["shout"]["output"] == "HELLO, ADA!"
    assert (cli.cwd / ".floworch" / "floworch.db").exists()
    listed = cli.json("runs", "list", "--json")
    assert [r["runId"] for r in listed] == [run["runId"]]
    shown = cli.json("runs", "show", run["runId"], "--json")
    assert shown == run


def test_a_failed_run_exits_1_and_bad_input_exits_2(cli: Cli, tmp_path: Path) -> None:
    flow = tmp_path / "failing.py"
    flow.write_text(
        textwrap.dedent("""
        import floworch
        from floworch import Flow

        flow = Flow("failing", version="1")
        flow.manual()
        flow.step("boom", "Boom")

        @floworch.handler("Boom")
        def boom(inputs):
            raise ValueError("kaput")
    """)
    )
    done = cli.run("run", str(flow), "--json")
    assert done.returncode == 1, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "Failed"
    assert run["steps"]["boom"]["error"]["type"] == "ValueError"
    assert run["steps"]["boom"]["error"]["message"] == "kaput"
    assert cli.run("run", HELLO, "--body", "{not json").returncode == 2
    assert cli.run("run", HELLO, "--trigger", "nope").returncode == 1


def test_graph_and_schema(cli: Cli) -> None:
    graph = cli.run("graph", ORDER)
    assert graph.returncode == 0 and "flowchart" in graph.stdout and "approve" in graph.stdout
    schema = cli.json("schema")
    assert "steps" in json.dumps(schema)


def _wait_for(cli: Cli, predicate, timeout: float = 60.0) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = cli.run("runs", "list", "--json")
        if done.returncode == 0:
            for run in json.loads(done.stdout):
                shown = cli.run("runs", "show", run["runId"], "--json")
                if shown.returncode == 0 and predicate(json.loads(shown.stdout)):
                    return json.loads(shown.stdout)
        time.sleep(0.3)
    raise AssertionError("condition not reached")


def test_a_signal_from_another_process_resumes_the_run(cli: Cli) -> None:
    # Create the schema first: two processes migrating one fresh SQLite file at once can race.
    assert cli.run("db", "upgrade").returncode == 0
    proc = cli.popen("run", ORDER, "--body", '{"customerId": "c-9"}', "--json")
    try:
        run = _wait_for(cli, lambda r: r["steps"].get("approve", {}).get("status") == "Waiting")
        done = cli.run(
            "signal", run["runId"], "approval", "--payload", '{"approved": true, "by": "t"}'
        )
        assert done.returncode == 0 and done.stdout.strip() == "Delivered", done.stderr
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    final = json.loads(out)
    assert final["status"] == "Succeeded"
    assert final["steps"]["ship"]["output"]["note"] == "Order batch for c-9 approved by t"


def test_a_killed_run_is_finished_by_resume(cli: Cli, tmp_path: Path) -> None:
    flow = tmp_path / "chain.py"
    flow.write_text(
        textwrap.dedent("""
        import time
        import floworch
        from floworch import Flow

        flow = Flow("chain50", version="1")
        flow.manual()
        previous = None
        for i in range(50):
            flow.step(f"s{i}", "Tick", run_after={previous: ["Succeeded"]} if previous else None,
                      inputs={"i": i})
            previous = f"s{i}"

        @floworch.handler("Tick")
        def tick(inputs):
            time.sleep(0.05)
            return inputs["i"]
    """)
    )
    assert cli.run("db", "upgrade").returncode == 0
    proc = cli.popen("run", str(flow))
    try:
        _wait_for(cli, lambda r: sum(s["status"] == "Succeeded" for s in r["steps"].values()) >= 10)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    partial = cli.json("runs", "list", "--json")
    assert partial[0]["status"] == "Running"
    done = cli.run("resume", str(flow), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    run = cli.json("runs", "show", partial[0]["runId"], "--json")
    assert run["status"] == "Succeeded"
    assert len(run["steps"]) == 50
    assert all(
        s["status"] == "Succeeded" and s["output"] == int(k[1:]) for k, s in run["steps"].items()
    )
    assert all(s["attempts"] == 1 for s in run["steps"].values())
