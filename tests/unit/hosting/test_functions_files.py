"""The Function App's files agree with the code: requirements.txt with pyproject.toml, host.json
with the settlement and hold options, local.settings.json.example with the app settings, and
.funcignore keeps what the app needs."""

from __future__ import annotations

import fnmatch
import importlib.util
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from floworch.hosting.app_settings import local_setting_names, setting_names
from floworch.hosting.functions import FunctionsOptions

ROOT = Path(__file__).resolve().parents[3]


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location(
        "functions_requirements", ROOT / "scripts" / "functions_requirements.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _duration(text: str) -> timedelta:
    hours, minutes, seconds = (float(part) for part in text.split(":"))
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def test_requirements_txt_is_generated_from_pyproject() -> None:
    expected = _generator().requirements()
    found = (ROOT / "requirements.txt").read_text(encoding="utf-8")
    assert found == expected, (
        "requirements.txt is out of date: run "
        "`python scripts/functions_requirements.py > requirements.txt`"
    )


def test_the_generator_notices_a_changed_dependency(tmp_path: Path) -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    changed = tmp_path / "pyproject.toml"
    changed.write_text(pyproject.replace('"croniter>=2.0"', '"croniter>=3.0"'), encoding="utf-8")
    generator = _generator()
    assert generator.requirements(changed) != generator.requirements()
    assert "croniter>=3.0" in generator.requirements(changed)


def test_requirements_hold_what_the_app_imports_and_the_preview_binding_only_on_request() -> None:
    generator = _generator()
    names = {generator._name(line) for line in generator.requirements().splitlines()[2:]}
    assert {"azure-functions", "azure-servicebus", "azure-identity", "pyodbc", "aioodbc"} <= names
    assert "azurefunctions-extensions-bindings-servicebus" not in names
    assert "pytest" not in names and "psycopg[binary]" not in names
    actions = generator.requirements(actions=True)
    assert "azurefunctions-extensions-bindings-servicebus==1.0.0b2" in actions


def test_host_json_settings_fit_the_host_options() -> None:
    host = json.loads((ROOT / "host.json").read_text(encoding="utf-8"))
    options = FunctionsOptions()
    assert host["version"] == "2.0"
    assert host["extensionBundle"]["version"] == "[4.*, 5.0.0)"
    assert host["extensions"]["http"]["routePrefix"] == ""  # /api, /healthz and / are the app's
    service_bus = host["extensions"]["serviceBus"]
    renewal = _duration(service_bus["maxAutoLockRenewalDuration"])
    timeout = _duration(host["functionTimeout"])
    assert options.hold < renewal <= timeout
    # Auto-complete is the default; the SDK-type binding switches it off per trigger.
    assert service_bus["autoCompleteMessages"] is True
    assert host["telemetryMode"] == "OpenTelemetry"


def test_local_settings_example_names_only_known_settings() -> None:
    example = json.loads((ROOT / "local.settings.json.example").read_text(encoding="utf-8"))
    values = set(example["Values"])
    platform = {"FUNCTIONS_WORKER_RUNTIME", "AzureWebJobsStorage"}
    assert values - platform <= setting_names() | local_setting_names()
    assert example["Values"]["ServiceBusConnection"].startswith("Endpoint=sb://127.0.0.1:")


def test_funcignore_leaves_out_tests_and_the_venv_but_keeps_the_app() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".funcignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        top = path.split("/")[0]
        return any(
            fnmatch.fnmatch(path, p) or fnmatch.fnmatch(top + "/", p) or fnmatch.fnmatch(top, p)
            for p in patterns
        )

    for path in ("tests/unit", ".venv/bin/python", "local.settings.json", "bench/api.py"):
        assert ignored(path), path
    for path in (
        "function_app.py",
        "host.json",
        "requirements.txt",
        "floworch/engine/engine.py",
        "flows/examples_flows.py",
        "examples/hello/flow.yaml",
        "topology/servicebus.json",
    ):
        assert not ignored(path), path
