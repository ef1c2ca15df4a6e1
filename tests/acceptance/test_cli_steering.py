"""Steering runs from other processes: signals, a killed run finished by ``resume`` without a
PATH, ``retry --wait``, the signal notice without a terminal, and Ctrl-C's resume hint.

Every wait is on state read from the database (``Cli.wait_for_run``), never on a sleep."""

from __future__ import annotations

import json
import signal
import textwrap
from pathlib import Path

import pytest

from tests.acceptance.conftest import ROOT, Cli, InProcessCli, step_status

ORDER = str(ROOT / "examples/order_fulfilment/flow.json")

# Flow "gated": s0..s4, then "gate" waits for signal "go", then s5..s9; ticks return their
# index. Flow "parked" starts by waiting for "go".
CHAIN = textwrap.dedent("""
    import floworch
    from floworch import Flow

    flow = Flow("gated", version="1")
    flow.manual()
    previous = None
    for i in range(10):
        if i == 5:
            flow.wait_for_signal("gate", "go", run_after=previous)
            previous = "gate"
        flow.step(f"s{i}", "CliTick", run_after=previous, inputs={"i": i})
        previous = f"s{i}"

    parked = Flow("parked", version="1")
    parked.manual()
    parked.wait_for_signal("gate", "go")
    parked.step("after", "CliTick", run_after="gate", inputs={"i": -1})

    flows = [flow, parked]

    @floworch.handler("CliTick")
    def tick(inputs):
        return inputs["i"]
""")

# A flow whose handler module the resuming process is not given: its run must be skipped.
ORPHAN = textwrap.dedent("""
    import floworch
    from floworch import Flow

    flow = Flow("orphan", version="1")
    flow.manual()
    flow.wait_for_signal("wait", "never")
    flow.step("after", "CliOrphaned", run_after="wait")

    @floworch.handler("CliOrphaned")
    def orphaned(inputs):
        return 0
""")


@pytest.mark.slow
def test_a_signal_from_another_process_resumes_the_run(cli: Cli) -> None:
    proc = cli.popen("run", ORDER, "--body", '{"customerId": "c-9"}', "--json")
    try:
        run = cli.wait_for_run(
            lambda r: step_status(r, "approve") == "Waiting", what="approve waits", process=proc
        )
        typo = cli.run("signal", run.run_id, "aproval", "--payload", "{}")
        assert typo.returncode == 2, typo.stderr
        assert "did you mean 'approval'?" in typo.stderr
        assert typo.stderr.count("\n") == 1
        done = cli.run(
            "signal", run.run_id, "approval", "--payload", '{"approved": true, "by": "t"}'
        )
        assert done.returncode == 0 and done.stdout.strip() == "Delivered", done.stderr
        assert "failed" not in done.stderr  # no "sending ... failed; the reconciler will retry"
        assert "floworch resume" in done.stderr  # says what runs the resumed step
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    # without a terminal, the waiting notice still reaches stderr (stdout is the JSON)
    assert f"floworch signal {run.run_id} approval --payload" in err
    final = json.loads(out)
    assert final["status"] == "Succeeded"
    assert final["steps"]["ship"]["output"]["note"] == "Order batch for c-9 approved by t"


@pytest.mark.slow
def test_a_killed_run_is_finished_by_resume_without_a_path(
    cli: Cli, floworch: InProcessCli, tmp_path: Path
) -> None:
    chain = tmp_path / "chain.py"
    chain.write_text(CHAIN)
    orphan = tmp_path / "orphan.py"
    orphan.write_text(ORPHAN)
    assert floworch("run", str(orphan), "--timeout", "0.5").code == 1  # left Running
    # a run parked on a signal: resume reports it and leaves it waiting
    assert floworch("run", str(chain), "--flow", "parked", "--timeout", "0.5").code == 1
    (parked,) = [r for r in cli.runs() if r.flow_id == "parked"]

    proc = cli.popen("run", str(chain), "--flow", "gated")
    try:
        run = cli.wait_for_run(
            lambda r: r.flow_id == "gated" and step_status(r, "gate") == "Waiting",
            what="the gate waits",
            process=proc,
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert floworch.ok("signal", run.run_id, "go").out == "Delivered\n"
    done = cli.run("resume", "--handlers", str(chain), timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resuming 2 unfinished run(s)" in done.stdout, done.stdout
    assert f"run {run.run_id} of gated: Succeeded" in done.stdout
    assert f"run {parked.run_id}: step gate waits for signal 'go'" in done.stdout
    assert f"floworch signal {parked.run_id} go" in done.stdout
    assert (
        "skipping run" in done.stderr and "no handler for step type(s) CliOrphaned" in done.stderr
    )

    (final,) = [r for r in cli.runs() if r.run_id == run.run_id]
    assert str(final.status) == "Succeeded"
    ticks = {k: s for k, s in final.steps.items() if k.startswith("s")}
    assert len(ticks) == 10
    assert all(s.output == int(k[1:]) and s.attempts == 1 for k, s in ticks.items())


def test_retry_with_wait_runs_the_step_here(floworch: InProcessCli, tmp_path: Path) -> None:
    flag = tmp_path / "fixed"
    flow = tmp_path / "flaky.py"
    flow.write_text(
        textwrap.dedent(f"""
        from pathlib import Path
        import floworch
        from floworch import Flow

        flow = Flow("flaky", version="1")
        flow.manual()
        flow.step("work", "CliWork")
        flow.step("after", "CliAfter", run_after="work")

        @floworch.handler("CliWork")
        def work(inputs):
            if not Path({str(flag)!r}).exists():
                raise RuntimeError("not yet")
            return "done"

        @floworch.handler("CliAfter")
        def after(inputs):
            return "after"
        """)
    )
    assert floworch("run", str(flow)).code == 1
    (run,) = floworch.runs()
    flag.write_text("")
    retry = floworch.ok("retry", run.run_id, "work", "--wait", "--handlers", str(flow))
    assert f"run {run.run_id} of flaky: Succeeded" in retry.out

    rerun = floworch.ok("rerun", run.run_id)
    new_id = rerun.out.strip()
    assert "floworch resume" in rerun.err and "--wait" in rerun.err
    assert "failed" not in rerun.err
    resumed = floworch.ok("resume", "--handlers", str(flow), "--run", new_id)
    assert f"run {new_id} of flaky: Succeeded" in resumed.out


def test_ctrl_c_says_how_to_continue(cli: Cli) -> None:
    proc = cli.popen("run", ORDER, "--body", '{"customerId": "c-1"}')
    try:
        run = cli.wait_for_run(
            lambda r: step_status(r, "approve") == "Waiting", what="approve waits", process=proc
        )
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == (
        f"interrupted: run {run.run_id} of order-fulfilment is still Running; continue it "
        "with: floworch resume"
    )
    assert "Traceback" not in err


def test_resume_that_runs_out_of_time_says_how_to_continue(
    floworch: InProcessCli, tmp_path: Path
) -> None:
    flag = tmp_path / "never"
    flow = tmp_path / "slowpoke.py"
    flow.write_text(
        textwrap.dedent(f"""
        import asyncio
        from pathlib import Path
        import floworch
        from floworch import Flow

        flow = Flow("slowpoke", version="1")
        flow.manual()
        flow.step("work", "CliSlowpoke")

        @floworch.handler("CliSlowpoke")
        async def work(inputs):
            while not Path({str(flag)!r}).exists():
                await asyncio.sleep(0.05)
            return "done"
        """)
    )
    assert floworch("run", str(flow), "--timeout", "0.5").code == 1  # left Running
    resumed = floworch("resume", "--handlers", str(flow), "--timeout", "1")
    assert resumed.code == 1, resumed
    assert resumed.err.strip().splitlines()[-1] == (
        "stopped after 1s with runs still going; continue them with: floworch resume"
    )
    assert "Traceback" not in resumed.out + resumed.err
    (run,) = floworch.runs()
    assert str(run.status) == "Running"
