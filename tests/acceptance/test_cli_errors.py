"""Every ``floworch`` command ends bad input in one line that says what is wrong, never a
traceback, with the documented exit code (docs/cli.md), and never prints a password."""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.acceptance.conftest import ROOT, Cli, logging_restored

HELLO = str(ROOT / "examples/hello/flow.yaml")
ADO = "Server=tcp:db.example.net,1433;Database=d;User Id=u;Password=hunter2;Encrypt=yes"
SB_KEY = "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=s3cr3t"

# (arguments, exit code, text the one stderr line must contain)
BAD_INVOCATIONS: list[tuple[tuple[str, ...], int, str]] = [
    (("nosuchcommand",), 2, "No such command 'nosuchcommand'"),
    (("validate",), 2, "Missing argument 'PATHS...'"),
    (("run", "missing.yaml"), 2, "'missing.yaml' does not exist"),
    (("run", HELLO, "--body", "{not json"), 2, "--body"),
    (("run", HELLO, "--body", '{"a": NaN}'), 2, "NaN is not valid JSON"),
    (("run", HELLO, "--body", "[Infinity]"), 2, "Infinity is not valid JSON"),
    (("run", HELLO, "--body", "@missing.json"), 2, "no such file: missing.json"),
    (("run", HELLO, "--header", "novalue"), 2, "expected K=V"),
    (("run", HELLO, "--timeout", "-1"), 2, "--timeout"),
    (("run", HELLO, "--timeout", "soon"), 2, "'soon' is not a valid float"),
    (("run", HELLO, "--db", "not a url"), 2, "not a database URL"),
    (("run", HELLO, "--db", "oracle://u@h/db"), 2, "unsupported database 'oracle'"),
    (("runs", "list", "--db", ADO), 2, "Password=***"),
    (("runs", "list", "--db", "sqlite:///nowhere/floworch.db"), 2, "no floworch database at"),
    (("runs", "list", "--db", "postgresql://u:pgsecret@127.0.0.1:1/db"), 3, "127.0.0.1:1"),
    (("runs", "list", "--limit", "abc"), 2, "'abc' is not a valid integer"),
    (("runs", "list", "--limit", "0"), 2, "--limit"),
    (("runs", "list", "--status", "Done"), 2, "'Done' is not one of"),
    (("runs", "show", "nosuchrun"), 2, "no run with id 'nosuchrun'"),
    (("signal", "nosuchrun", "approval"), 2, "no run with id 'nosuchrun'"),
    (("signal", "nosuchrun", "approval", "--payload", "{bad"), 2, "--payload"),
    (("signal", "nosuchrun", "approval", "--payload", "NaN"), 2, "NaN is not valid JSON"),
    (("signal", "nosuchrun", "go", "--wait"), 2, "--wait runs the steps here"),
    (("cancel", "nosuchrun"), 2, "no run with id 'nosuchrun'"),
    (("retry", "nosuchrun", "step"), 2, "no run with id 'nosuchrun'"),
    (("rerun", "nosuchrun"), 2, "no run with id 'nosuchrun'"),
    (("trigger", "nosuchflow"), 2, "no flow with id 'nosuchflow'"),
    # values beyond floworch.limits are refused before anything is stored or sent
    (("run", HELLO, "--idempotency-key", "k" * 201), 2, "idempotency key is 201 characters"),
    (("trigger", "hello", "--idempotency-key", "a\x00b"), 2, "idempotency key 'a\\x00b'"),
    (("trigger", "hello", "--servicebus", "--idempotency-key", "o\t1"), 2, "key 'o\\t1'"),
    (("signal", "nosuchrun", "go\n"), 2, "signal name 'go\\n' contains '\\n'"),
    (("trigger", "hello", "--servicebus", "--connection", "garbage"), 2, "--connection"),
    (("trigger", "hello", "--servicebus", "--connection", SB_KEY + ";Endpoint=x"), 2, "***"),
    (("worker", HELLO, "--connection", "garbage"), 2, "not a Service Bus connection string"),
    (("worker", HELLO), 2, "no Service Bus namespace given"),
    (("resume", "--db", "sqlite:///nowhere/floworch.db"), 2, "no floworch database at"),
    (("resume", HELLO, "--timeout", "0"), 2, "--timeout"),
    (("db", "upgrade", "--db", "memory://"), 2, "needs a database URL"),
]


# The same rule, checked in a real process for the cases the issues name.
IN_A_PROCESS = [
    (("trigger", "hello", "--servicebus", "--connection", "garbage"), 2, "--connection"),
    (("worker", HELLO, "--connection", "garbage"), 2, "not a Service Bus connection string"),
    (("runs", "list", "--db", ADO), 2, "Password=***"),
]


def _problem(args: tuple[str, ...], code: int, text: str, rc: int, out: str, err: str) -> str:
    lines = err.strip().splitlines()
    leaked = [s for s in ("hunter2", "pgsecret", "s3cr3t") if s in out + err]
    if rc != code or len(lines) != 1 or text not in lines[0] or "Traceback" in err or leaked:
        return f"floworch {' '.join(args)} -> {rc}:\n{err}"
    return ""


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Cli:
    from floworch.cli.main import run_cli

    cli = Cli(tmp_path_factory.mktemp("errors"))
    assert run_cli(["db", "upgrade", "--db", f"sqlite:///{cli.db_file}"]) == 0  # no runs in it
    return cli


def test_bad_invocations_end_in_one_clear_line(
    prepared: Cli, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole table through the entry point, in this process (fast: imports are paid once)."""
    from floworch.cli.main import run_cli

    monkeypatch.chdir(prepared.cwd)
    for name in ("FLOWORCH_DB_URL", "FLOWORCH_FLOWS", "FLOWORCH_RUNTIME", "FLOWORCH_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    problems = []
    with logging_restored():  # `worker` configures logging on the captured stderr
        for args, code, text in BAD_INVOCATIONS:
            rc = run_cli(list(args))
            out, err = capsys.readouterr()
            problems.append(_problem(args, code, text, rc, out, err))
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)


@pytest.mark.slow
def test_bad_invocations_in_a_real_process(prepared: Cli) -> None:
    def attempt(case: tuple[tuple[str, ...], int, str]) -> subprocess.CompletedProcess[str]:
        return prepared.run(*case[0])

    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(attempt, IN_A_PROCESS))
    problems = [
        _problem(args, code, text, done.returncode, done.stdout, done.stderr)
        for (args, code, text), done in zip(IN_A_PROCESS, results, strict=True)
    ]
    assert not [p for p in problems if p], "\n".join(p for p in problems if p)
