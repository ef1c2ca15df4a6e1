"""The azd hooks as processes: checks that need files on disk or a shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.unit.infra.conftest import ROOT
from tests.unit.infra.test_azure_yaml import hook_problems, load_azure_yaml


def test_a_missing_or_non_executable_hook_is_caught(tmp_path: Path) -> None:
    document = load_azure_yaml()
    (tmp_path / "infra/scripts").mkdir(parents=True)
    assert any("does not exist" in p for p in hook_problems(document, tmp_path))
    for name in ("postprovision.sh", "postprovision.ps1"):
        (tmp_path / "infra/scripts" / name).write_text("echo\n", encoding="utf-8")
    assert any("is not executable" in p for p in hook_problems(document, tmp_path))


def test_the_posix_hook_is_valid_sh() -> None:
    subprocess.run(["sh", "-n", str(ROOT / "infra/scripts/postprovision.sh")], check=True)


def test_the_hook_without_azd_outputs_says_what_to_do(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SQL_", "APP_IDENTITY_"))}
    env["FLOWORCH_PYTHON"] = sys.executable
    done = subprocess.run(
        ["sh", str(ROOT / "infra/scripts/postprovision.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "postprovision: SQL_SERVER_FQDN is not set: run this from azd (azd hooks run "
        "postprovision), or export the deployment outputs first (docs/deploy.md)"
    ]
