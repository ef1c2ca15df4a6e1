"""The Functions host reads no app setting that Bicep does not set.

The host (function_app.py, floworch/hosting/functions*) is built after this check; until it
exists the scan covers no file, and `test_the_scan_finds_setting_names` shows it would work.
"""

from __future__ import annotations

import re
from pathlib import Path

from floworch.hosting.app_settings import (
    SERVICEBUS_CONNECTION,
    local_setting_names,
    setting_names,
)
from tests.unit.infra.conftest import ROOT

SETTING = re.compile(
    r"""["'](FLOWORCH_[A-Z0-9_]+|APPLICATIONINSIGHTS_[A-Z_]+|AZURE_CLIENT_ID|"""
    r"""AzureWebJobs\w+|\w+__(?:fullyQualifiedNamespace|credential|clientId))["']"""
)
BINDING_EXPRESSION = re.compile(r"%([A-Za-z0-9_]+)%")
CONNECTION = re.compile(r"""connection\s*=\s*["']([^"']+)["']""")


def host_files(root: Path = ROOT) -> list[Path]:
    candidates = [root / "function_app.py", *sorted((root / "floworch/hosting").glob("functions*"))]
    files: list[Path] = []
    for path in candidates:
        files.extend(
            sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
        )
    return files


def settings_read(text: str) -> set[str]:
    return set(SETTING.findall(text)) | set(BINDING_EXPRESSION.findall(text))


def test_the_functions_host_reads_only_deployed_settings() -> None:
    for path in host_files():
        text = path.read_text(encoding="utf-8")
        unknown = settings_read(text) - setting_names() - local_setting_names()
        assert not unknown, (
            f"{path}: reads {sorted(unknown)}; add them to app_settings.py and Bicep"
        )
        for connection in CONNECTION.findall(text):
            assert connection == SERVICEBUS_CONNECTION, f"{path}: connection {connection!r}"


def test_the_scan_finds_setting_names() -> None:
    text = (
        'os.environ["FLOWORCH_DB_URL"]; env.get("FLOWORCH_TYPO")\n'
        '@app.service_bus_topic_trigger(connection="ServiceBusConnection", '
        'subscription_name="%FLOW_SUBSCRIPTION%")'
    )
    assert settings_read(text) == {"FLOWORCH_DB_URL", "FLOWORCH_TYPO", "FLOW_SUBSCRIPTION"}
    assert settings_read(text) - setting_names() == {"FLOWORCH_TYPO", "FLOW_SUBSCRIPTION"}
