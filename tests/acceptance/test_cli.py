"""The ``floworch`` command, driven as a user would: validate, run, graph, schema, inspect, the
README's folder layout, exit codes, handled failures and what ``runs show`` tells.

Most checks go through the entry point in this process (``floworch`` fixture); one runs a real
process to see what a terminal sees (stderr log lines, JSON on stdout). Handler types are named
``Cli*`` so that they never clash with other tests' handlers in this process.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.acceptance.conftest import ROOT, Cli, InProcessCli

HELLO = str(ROOT / "examples/hello/flow.yaml")
ORDER = str(ROOT / "examples/order_fulfilment/flow.json")

# "CliFlaky" fails on the first attempt and succeeds on the next; "CliBroken" always fails;
# "CliRescue" handles a failure; "CliLog" writes through ctx.logger; "CliNaN" returns NaN.
HANDLERS = textwrap.dedent("""
    import floworch

    @floworch.handler("CliFlaky")
    def flaky(ctx, inputs):
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "second time lucky"

    @floworch.handler("CliBroken")
    def broken(inputs):
        raise ValueError("kaput")

    @floworch.handler("CliRescue")
    def rescue(inputs):
        return "rescued"

    @floworch.handler("CliLog")
    def log(ctx, inputs):
        ctx.logger.info("hello from the handler")
        ctx.logger.warning("a warning from the handler")
        return 1

    @floworch.handler("CliNaN")
    def nan(inputs):
        return {"x": float("nan")}
""")


@pytest.fixture(scope="module")
def handlers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One handlers file for the module: in one process, a file is imported once per path."""
    path = tmp_path_factory.mktemp("handlers") / "cli_handlers.py"
    path.write_text(HANDLERS)
    return path


def flow(flow_id: str, steps: dict[str, object]) -> dict[str, object]:
    manifest = {"id": flow_id, "version": "1", "triggers": {"manual": {"type": "Manual"}}}
    return {**manifest, "steps": steps}


def write_flow(folder: Path, manifest: dict[str, object], handlers: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flow.json").write_text(json.dumps(manifest))
    if handlers is not None:
        (folder / "handlers.py").write_text(handlers)
    return folder / "flow.json"


def test_validate_accepts_the_examples_and_lists_every_error(
    floworch: InProcessCli, tmp_path: Path
) -> None:
    done = floworch.ok(
        "validate", ORDER, "--handlers", str(ROOT / "examples/order_fulfilment/handlers.py")
    )
    assert done.out == "order-fulfilment (version 1): valid, 5 steps\n"  # a trailing newline
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
    done = floworch("validate", str(bad))
    assert done.code == 2
    assert (
        "steps.ship.runAfter.aprove: no step named 'aprove' (did you mean 'approve'?)" in done.err
    )
    assert "triggers.nightly.cron" in done.err
    assert "steps.x.inputs.v" in done.err


def test_folders_load_as_the_readme_lays_them_out(floworch: InProcessCli, tmp_path: Path) -> None:
    """A folder of flow.yaml + handlers.py works for validate, run and topology export; a
    folder without flows is an error; validate checks step types against handlers.py."""
    hello = str(ROOT / "examples/hello")
    other = write_flow(
        tmp_path / "other",
        flow("other", {"a": {"type": "CliOther"}}),
        'import floworch\n\n@floworch.handler("CliOther")\ndef f(inputs):\n    return 1\n',
    ).parent

    done = floworch.ok("validate", hello, str(other))
    assert done.out == "hello (version 1): valid, 2 steps\nother (version 1): valid, 1 step\n"

    run = json.loads(floworch.ok("run", hello, "--body", '{"name": "Folder"}', "--json").out)
    assert run["steps"]["shout"]["output"] == "HELLO, FOLDER!"

    export = floworch.ok(
        "topology", "export", "--flows", hello, "--flows", str(other), "--out", "-"
    )
    subscriptions = json.dumps(json.loads(export.out))
    assert "flow-hello" in subscriptions and "flow-other" in subscriptions

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "demo.py").write_text("raise SystemExit('a script: never executed')\n")
    for args in (
        ("validate", str(empty)),
        ("topology", "export", "--flows", str(empty), "--out", "-"),
    ):
        done = floworch(*args)
        assert done.code in (1, 2), args
        assert "no flow found" in done.err and "demo.py not read" in done.err, done.err

    # validate picks up the handlers.py beside the manifest, as run does: an unknown type fails
    typo = write_flow(
        tmp_path / "typo",
        flow("typo", {"a": {"type": "CliTypo"}}),
        'import floworch\n\n@floworch.handler("CliTypos")\ndef f(inputs):\n    return 1\n',
    )
    for args in (("validate", str(typo)), ("run", str(typo))):
        done = floworch(*args)
        assert done.code == 2, (args, done)
        assert "no handler registered for step type 'CliTypo'" in done.err


def test_exit_codes_follow_the_documented_rule(
    floworch: InProcessCli, tmp_path: Path, handlers: Path
) -> None:
    """0 Succeeded or Skipped, 1 Failed, 2 invalid input (an unknown trigger included)."""
    skipping = write_flow(
        tmp_path / "skipping",
        flow(
            "skipping",
            {
                "gate": {"type": "CliRescue"},
                "never": {
                    "type": "CliRescue",
                    "runAfter": {"gate": {"statuses": ["Succeeded"], "when": "@equals(1, 2)"}},
                },
            },
        ),
    )
    skipped = floworch("run", str(skipping), "--handlers", str(handlers))
    assert skipped.code == 0, skipped
    assert "of skipping: Skipped" in skipped.out
    unknown = floworch("run", HELLO, "--trigger", "nope")
    assert unknown.code == 2
    assert unknown.err == "error: flow 'hello' has no trigger 'nope' (its triggers: manual)\n"
    failing = write_flow(tmp_path / "failing", flow("failing", {"boom": {"type": "CliBroken"}}))
    done = floworch("run", str(failing), "--json", "--handlers", str(handlers))
    assert done.code == 1, done
    run = json.loads(done.out)
    assert run["status"] == "Failed"
    assert run["steps"]["boom"]["error"]["type"] == "ValueError"
    assert run["steps"]["boom"]["error"]["message"] == "kaput"


def test_handled_failures_are_shown_and_every_attempt_is_kept(
    floworch: InProcessCli, tmp_path: Path, handlers: Path
) -> None:
    manifest = write_flow(
        tmp_path / "handled",
        flow(
            "handled",
            {
                "flaky": {
                    "type": "CliFlaky",
                    "retry": {"maxAttempts": 2, "initialIntervalSeconds": 0.1},
                },
                "broken": {"type": "CliBroken", "runAfter": {"flaky": ["Succeeded"]}},
                "rescue": {"type": "CliRescue", "runAfter": {"broken": ["Failed"]}},
                "log": {"type": "CliLog", "runAfter": {"rescue": ["Succeeded"]}},
            },
        ),
    )
    done = floworch("run", str(manifest), "--handlers", str(handlers), "--log-level", "WARNING")
    assert done.code == 0, done
    summary = done.out.strip().splitlines()
    assert "Succeeded (1 failure handled)" in summary[1]
    assert "  broken (handled): ValueError: kaput" in summary
    assert "hello from the handler" not in done.err  # INFO is below --log-level WARNING
    assert "log warning log (run " in done.err and "a warning from the handler" in done.err

    (run,) = json.loads(floworch.ok("runs", "list", "--json").out)
    assert run["handledFailures"] == ["broken"]
    assert "Succeeded (1 failure handled)" in floworch.ok("runs", "list").out
    text = floworch.ok("runs", "show", run["runId"]).out
    assert "Succeeded (1 failure handled)" in text
    # the first attempt's error is kept, with its times
    assert "attempt 1: Failed" in text and "RuntimeError: first attempt fails" in text
    assert "attempt 2: Succeeded" in text
    # the traceback of the failed step, without --json
    assert "traceback (most recent call last):" in text
    assert 'raise ValueError("kaput")' in text
    details = json.loads(floworch.ok("runs", "show", run["runId"], "--json").out)
    history = details["steps"]["flaky"]["history"]
    assert [h["status"] for h in history] == ["Failed", "Succeeded"]
    assert history[0]["error"]["message"] == "first attempt fails"
    assert history[0]["completedAt"] <= history[1]["startedAt"]
    assert details["handledFailures"] == ["broken"]


def test_graph_schema_and_json_that_is_always_valid(
    floworch: InProcessCli, tmp_path: Path, handlers: Path
) -> None:
    graph = floworch.ok("graph", ORDER)
    assert "flowchart" in graph.out and "approve" in graph.out
    assert "steps" in json.dumps(json.loads(floworch.ok("schema").out))

    manifest = write_flow(tmp_path / "nan", flow("nan", {"n": {"type": "CliNaN"}}))
    done = floworch("run", str(manifest), "--json", "--handlers", str(handlers))
    assert done.code in (0, 1), done

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in --json output")

    json.loads(done.out, parse_constant=refuse)


@pytest.mark.slow
def test_run_in_a_real_process_prints_json_and_handler_logs(cli: Cli, tmp_path: Path) -> None:
    hello = tmp_path / "hello"
    shutil.copytree(ROOT / "examples/hello", hello)
    done = cli.run("run", str(hello), "--body", '{"name": "Ada"}', "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "Succeeded"
    greet = run["steps"]["greet"]
    assert {k: greet[k] for k in ("status", "output", "error", "attempts")} == {
        "status": "Succeeded",
        "output": {"greeting": "Hello, Ada!"},
        "error": None,
        "attempts": 1,
    }
    assert greet["startedAt"] <= greet["completedAt"]
    assert [a["status"] for a in greet["history"]] == ["Succeeded"]
    assert run["handledFailures"] == []
    assert run["steps"]["shout"]["output"] == "HELLO, ADA!"
    # the hello handler logs through ctx.logger: shown on stderr with its step and run
    assert f"log info greet (run {run['runId'][:8]}): greeting Ada" in done.stderr
    assert cli.db_file.exists()
    listed = cli.json("runs", "list", "--json")
    assert [r["runId"] for r in listed] == [run["runId"]]
    assert cli.json("runs", "show", run["runId"], "--json") == run
