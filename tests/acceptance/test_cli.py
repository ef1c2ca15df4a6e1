"""The ``floworch`` command, driven as a user would: validate, run, graph, schema, inspect, the
README's folder layout, exit codes, handled failures and what ``runs show`` tells."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.acceptance.conftest import ROOT, Cli

HELLO = str(ROOT / "examples/hello/flow.yaml")
ORDER = str(ROOT / "examples/order_fulfilment/flow.json")

# "Boom" fails on the first attempt and succeeds on the second (retry policy of 2 attempts);
# "Broken" always fails; "Rescue" handles a failure; "Log" writes through ctx.logger.
HANDLERS = textwrap.dedent("""
    import floworch

    @floworch.handler("Boom")
    def boom(ctx, inputs):
        if ctx.attempt == 1:
            raise RuntimeError("first attempt fails")
        return "second time lucky"

    @floworch.handler("Broken")
    def broken(inputs):
        raise ValueError("kaput")

    @floworch.handler("Rescue")
    def rescue(inputs):
        return "rescued"

    @floworch.handler("Log")
    def log(ctx, inputs):
        ctx.logger.info("hello from the handler")
        ctx.logger.warning("a warning from the handler")
        return 1
""")


def write_project(folder: Path, manifest: dict[str, object]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "flow.json").write_text(json.dumps(manifest))
    (folder / "handlers.py").write_text(HANDLERS)
    return folder


def flow(flow_id: str, steps: dict[str, object], **extra: object) -> dict[str, object]:
    return {
        "id": flow_id,
        "version": "1",
        "triggers": {"manual": {"type": "Manual"}},
        "steps": steps,
        **extra,
    }


def test_validate_accepts_the_examples(cli: Cli) -> None:
    done = cli.run(
        "validate", ORDER, "--handlers", str(ROOT / "examples/order_fulfilment/handlers.py")
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.endswith("steps\n")
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
    assert "Traceback" not in done.stderr


def test_folders_load_as_the_readme_lays_them_out(cli: Cli, tmp_path: Path) -> None:
    """A folder of flow.yaml + handlers.py works for validate, run and topology export; a
    folder without flows is an error; validate checks step types against handlers.py."""
    hello = tmp_path / "hello"
    shutil.copytree(ROOT / "examples/hello", hello)
    other = write_project(tmp_path / "other", flow("other", {"a": {"type": "Rescue"}}))

    done = cli.run("validate", str(hello), str(other))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello (version 1): valid, 2 steps\nother (version 1): valid, 1 step\n"

    run = cli.json("run", str(hello), "--body", '{"name": "Folder"}', "--json")
    assert run["steps"]["shout"]["output"] == "HELLO, FOLDER!"

    export = cli.run(
        "topology", "export", "--flows", str(hello), "--flows", str(other), "--out", "-"
    )
    assert export.returncode == 0, export.stderr
    subscriptions = json.dumps(json.loads(export.stdout))
    assert "flow-hello" in subscriptions and "flow-other" in subscriptions

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "handlers.py").write_text(HANDLERS)
    for args in (
        ("validate", str(empty)),
        ("topology", "export", "--flows", str(empty), "--out", "-"),
    ):
        done = cli.run(*args)
        assert done.returncode != 0, args
        assert "no flow found" in done.stderr and "Traceback" not in done.stderr, done.stderr

    # validate picks up the handlers.py beside the manifest, as run does: an unknown type fails.
    typo = write_project(tmp_path / "typo", flow("typo", {"a": {"type": "Rescu"}}))
    for args in (("validate", str(typo / "flow.json")), ("run", str(typo / "flow.json"))):
        done = cli.run(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert "no handler registered for step type 'Rescu'" in done.stderr


def test_run_hello_prints_the_run_as_json(cli: Cli) -> None:
    done = cli.run("run", HELLO, "--body", '{"name": "Ada"}', "--json")
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
    shown = cli.json("runs", "show", run["runId"], "--json")
    assert shown == run


def test_exit_codes_follow_the_documented_rule(cli: Cli, tmp_path: Path) -> None:
    """0 Succeeded or Skipped, 1 Failed, 2 invalid input (an unknown trigger included)."""
    project = write_project(
        tmp_path / "codes",
        flow(
            "codes",
            {
                "gate": {"type": "Rescue"},
                "never": {
                    "type": "Rescue",
                    "runAfter": {"gate": {"statuses": ["Succeeded"], "when": "@equals(1, 2)"}},
                },
            },
        ),
    )
    skipped = cli.run("run", str(project))
    assert skipped.returncode == 0, skipped.stderr
    assert ": Skipped" in skipped.stdout
    unknown = cli.run("run", HELLO, "--trigger", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "error: flow 'hello' has no trigger 'nope' (its triggers: manual)"
    ]
    failing = write_project(tmp_path / "failing", flow("failing", {"boom": {"type": "Broken"}}))
    done = cli.run("run", str(failing), "--json")
    assert done.returncode == 1, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "Failed"
    assert run["steps"]["boom"]["error"]["type"] == "ValueError"
    assert run["steps"]["boom"]["error"]["message"] == "kaput"


def test_handled_failures_are_shown_and_every_attempt_is_kept(cli: Cli, tmp_path: Path) -> None:
    project = write_project(
        tmp_path / "handled",
        flow(
            "handled",
            {
                "flaky": {
                    "type": "Boom",
                    "retry": {"maxAttempts": 2, "initialIntervalSeconds": 0.1},
                },
                "broken": {"type": "Broken", "runAfter": {"flaky": ["Succeeded"]}},
                "rescue": {"type": "Rescue", "runAfter": {"broken": ["Failed"]}},
                "log": {"type": "Log", "runAfter": {"rescue": ["Succeeded"]}},
            },
        ),
    )
    done = cli.run("run", str(project), "--log-level", "WARNING")
    assert done.returncode == 0, done.stderr
    summary = done.stdout.strip().splitlines()
    assert "Succeeded (1 failure handled)" in summary[1]
    assert "  broken (handled): ValueError: kaput" in summary
    assert "hello from the handler" not in done.stderr  # INFO is below --log-level WARNING
    assert "a warning from the handler" in done.stderr

    (run,) = cli.json("runs", "list", "--json")
    assert run["handledFailures"] == ["broken"]
    listed = cli.run("runs", "list")
    assert "Succeeded (1 failure handled)" in listed.stdout
    shown = cli.run("runs", "show", run["runId"])
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "Succeeded (1 failure handled)" in text
    # the first attempt's error is kept, with its times
    assert "attempt 1: Failed" in text and "RuntimeError: first attempt fails" in text
    assert "attempt 2: Succeeded" in text
    # the traceback of the failed step, without --json
    assert "traceback (most recent call last):" in text
    assert 'raise ValueError("kaput")' in text
    details = cli.json("runs", "show", run["runId"], "--json")
    history = details["steps"]["flaky"]["history"]
    assert [h["status"] for h in history] == ["Failed", "Succeeded"]
    assert history[0]["error"]["message"] == "first attempt fails"
    assert history[0]["completedAt"] <= history[1]["startedAt"]


def test_graph_and_schema(cli: Cli) -> None:
    graph = cli.run("graph", ORDER)
    assert graph.returncode == 0 and "flowchart" in graph.stdout and "approve" in graph.stdout
    schema = cli.json("schema")
    assert "steps" in json.dumps(schema)


@pytest.mark.parametrize("constant", ["NaN"])
def test_json_output_is_valid_even_for_a_non_finite_output(
    cli: Cli, tmp_path: Path, constant: str
) -> None:
    folder = tmp_path / "nan"
    folder.mkdir()
    (folder / "flow.py").write_text(
        textwrap.dedent(f"""
        import floworch
        from floworch import Flow

        flow = Flow("nan", version="1")
        flow.manual()
        flow.step("n", "N")

        @floworch.handler("N")
        def n(inputs):
            return {{"x": float("{constant.lower()}")}}
        """)
    )
    done = cli.run("run", str(folder / "flow.py"), "--json")
    assert done.returncode in (0, 1), done.stderr

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in --json output")

    json.loads(done.stdout, parse_constant=refuse)
