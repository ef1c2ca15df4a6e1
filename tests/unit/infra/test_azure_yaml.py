"""azure.yaml: `azd up` finds the templates, and every hook it runs exists and is executable."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from tests.unit.infra.conftest import ROOT


def load_azure_yaml(root: Path = ROOT) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((root / "azure.yaml").read_text(encoding="utf-8"))
    return document


def hook_problems(document: dict[str, Any], root: Path) -> list[str]:
    problems = []
    hooks = document.get("hooks") or {}
    if "postprovision" not in hooks:
        problems.append("no postprovision hook (the SQL grant and the migration)")
    for event, hook in hooks.items():
        for platform in ("posix", "windows"):
            spec = hook.get(platform) if isinstance(hook, dict) else None
            if spec is None:
                continue
            run = str(spec.get("run", ""))
            path = root / run.removeprefix("./")
            if not path.is_file():
                problems.append(f"hooks.{event}.{platform}.run: {run} does not exist")
            elif platform == "posix" and not os.access(path, os.X_OK):
                problems.append(f"hooks.{event}.{platform}.run: {run} is not executable")
    return problems


def test_azd_finds_main_bicep() -> None:
    document = load_azure_yaml()
    infra = document["infra"]
    assert infra["provider"] == "bicep"
    assert (ROOT / infra["path"] / f"{infra['module']}.bicep").is_file()
    assert (ROOT / infra["path"] / f"{infra['module']}.parameters.json").is_file()


def test_the_service_is_the_function_app() -> None:
    services = load_azure_yaml()["services"]
    assert list(services) == ["app"]
    assert services["app"]["host"] == "function"
    assert services["app"]["language"] == "python"
    bicep = (ROOT / "infra/bicep/modules/functionapp.bicep").read_text(encoding="utf-8")
    assert "'azd-service-name': 'app'" in bicep


def test_hooks_exist_and_are_executable() -> None:
    assert hook_problems(load_azure_yaml(), ROOT) == []
