"""What the CLI prints about failures and runs: masked secrets, exit codes, strict JSON,
handled failures."""

from __future__ import annotations

import json

import click
import pytest

from floworch.cli.failures import ExitCode, describe_failure, exit_code_for, mask_secrets
from floworch.cli.inputs import dump_json, parse_json_option
from floworch.cli.render import handled_failures, status_text
from floworch.errors import (
    FlowValidationError,
    InvalidInputError,
    InvalidOperationError,
    RunNotFoundError,
    StorageError,
    StorageUnavailableError,
    TransportError,
    ValidationIssue,
)


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Server=tcp:x,1433;Database=d;User Id=u;Password=hunter2;Encrypt=yes", "hunter2"),
        ("server=x;pwd='hunter 2';", "hunter 2"),
        ("postgresql://user:hunter2@db.example.net:5432/app", "hunter2"),
        ("Endpoint=sb://ns/;SharedAccessKeyName=Root;SharedAccessKey=abc+/def==", "abc+/def=="),
        ("mssql+pyodbc://@s/db?driver=ODBC&password=hunter2&x=1", "hunter2"),
    ],
)
def test_secrets_are_masked(text: str, secret: str) -> None:
    masked = mask_secrets(f"error: not a database URL: {text!r}")
    assert secret not in masked
    assert "***" in masked


def test_exit_codes() -> None:
    assert exit_code_for(click.UsageError("x")) == ExitCode.USAGE
    assert exit_code_for(FlowValidationError([ValidationIssue("a", "b")])) == ExitCode.USAGE
    assert exit_code_for(RunNotFoundError("r")) == ExitCode.USAGE
    assert exit_code_for(InvalidInputError("signal name", "too long")) == ExitCode.USAGE
    assert exit_code_for(StorageUnavailableError("down")) == ExitCode.UNAVAILABLE
    assert exit_code_for(TransportError("down")) == ExitCode.UNAVAILABLE
    assert exit_code_for(InvalidOperationError("no")) == ExitCode.FAILED
    assert exit_code_for(StorageError("x")) == ExitCode.FAILED
    assert exit_code_for(KeyboardInterrupt()) == ExitCode.INTERRUPTED
    assert exit_code_for(RuntimeError("bug")) == ExitCode.FAILED


def test_failures_are_one_line() -> None:
    assert describe_failure(RunNotFoundError("r1")) == "error: no run with id 'r1'"
    one = FlowValidationError([ValidationIssue("steps.a", "bad")], source="f.json")
    assert describe_failure(one) == "error: f.json: steps.a: bad"
    bug = describe_failure(RuntimeError("line one\nline two"))
    assert "\n" not in bug and bug.startswith("error: unexpected RuntimeError: line one line two")


@pytest.mark.parametrize("text", ["NaN", '{"a": Infinity}', "[-Infinity]"])
def test_json_options_refuse_non_finite_numbers(text: str) -> None:
    with pytest.raises(click.BadParameter, match="is not valid JSON"):
        parse_json_option(text, "--payload")


def test_json_output_is_always_valid_json() -> None:
    text = dump_json({"x": float("nan"), "y": [float("inf"), 1.5], "z": "ok"})
    assert json.loads(text) == {"x": None, "y": [None, 1.5], "z": "ok"}


def test_handled_failures() -> None:
    statuses = {"a": "Failed", "b": "Succeeded", "each": "Succeeded", "each.0.x": "TimedOut"}
    assert handled_failures(statuses, "Succeeded") == ["a", "each.0.x"]
    assert handled_failures(statuses, "Failed") == ["each.0.x"]
    assert handled_failures({"each": "Failed", "each.1.x": "Failed"}, "Failed") == []
    assert status_text("Succeeded", ["a", "b"]) == "Succeeded (2 failures handled)"
    assert status_text("Succeeded", ["a"]) == "Succeeded (1 failure handled)"
    assert status_text("Failed", []) == "Failed"
