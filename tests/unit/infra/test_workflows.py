"""The CI recipe for users with Azure (.github/workflows) cannot run here: check it offline.

Each workflow parses, every repository file a step names exists, tests run through the
README's command (`bash scripts/test`), and the jobs that touch Azure are opt-in or guarded.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.unit.infra.bicep_source import Sources
from tests.unit.infra.conftest import MAIN, ROOT

WORKFLOWS = ROOT / ".github" / "workflows"
PATH = re.compile(r"(?<![\w/.-])((?:scripts|infra|tests|\.github)/[\w./*-]+)")
README_TEST_COMMAND = "bash scripts/test"


def load(name: str) -> dict[str, Any]:
    # Keys are not all strings until `on` is restored below, hence dict[Any, Any].
    document: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    if True in document:  # YAML 1.1 reads the key `on` as a boolean
        document["on"] = document.pop(True)
    return document


def runs(document: dict[str, Any]) -> list[str]:
    return [
        str(step["run"])
        for job in document["jobs"].values()
        for step in job.get("steps", [])
        if "run" in step
    ]


def names() -> list[str]:
    return sorted(p.name for p in WORKFLOWS.glob("*.yml"))


def test_the_three_workflows_exist() -> None:
    assert names() == ["infra.yml", "mssql.yml", "smoke.yml"]


@pytest.mark.parametrize("name", names())
def test_each_workflow_parses_and_names_existing_files(name: str) -> None:
    document = load(name)
    assert document["on"] and document["jobs"]
    for job_name, job in document["jobs"].items():
        assert job.get("runs-on"), f"{name}: job {job_name} has no runs-on"
        assert job.get("steps"), f"{name}: job {job_name} has no steps"
    for script in runs(document):
        for path in PATH.findall(script):
            matches = list(ROOT.glob(path.rstrip("."))) if "*" in path else [ROOT / path]
            assert matches and all(m.exists() for m in matches), f"{name}: {path} does not exist"


def test_the_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert README_TEST_COMMAND in readme
    for name in names():
        for script in runs(load(name)):
            assert "pytest" not in script, f"{name}: run tests with `{README_TEST_COMMAND}`"
    offline = runs(load("infra.yml"))
    assert any(s.startswith(README_TEST_COMMAND + " ") and "tests/unit/infra" in s for s in offline)


def test_the_mssql_job_runs_the_sql_server_contract_tests() -> None:
    scripts = "\n".join(runs(load("mssql.yml")))
    assert "FLOWORCH_TEST_MSSQL_URL=" in scripts
    assert f"CI=true {README_TEST_COMMAND} -q -rs -m mssql tests/integration/storage" in scripts
    assert "msodbcsql18" in scripts and "packages.microsoft.com" in scripts
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    assert '"mssql: ' in pyproject
    conftest = (ROOT / "tests/integration/storage/conftest.py").read_text(encoding="utf-8")
    assert "FLOWORCH_TEST_MSSQL_URL" in conftest


def test_azure_jobs_use_oidc_and_are_opt_in() -> None:
    infra = load("infra.yml")
    what_if = infra["jobs"]["what-if"]
    assert what_if["permissions"]["id-token"] == "write"
    assert "vars.AZURE_CLIENT_ID" in what_if["if"]
    assert "secrets." not in (WORKFLOWS / "infra.yml").read_text(encoding="utf-8")
    smoke = load("smoke.yml")
    assert set(smoke["on"]) == {"workflow_dispatch"}
    assert smoke["permissions"]["id-token"] == "write"
    steps = smoke["jobs"]["deploy-and-run"]["steps"]
    delete = [s for s in steps if "az group delete" in str(s.get("run", ""))]
    assert delete and delete[-1].get("if") == "always()"
    assert steps[-1] is delete[-1], "the resource group is deleted last, whatever happened"


def test_what_if_passes_every_required_parameter(sources: Sources) -> None:
    required = {d.name for d in sources.bicep(MAIN).of_kind("param") if not d.value_text}
    script = "\n".join(runs(load("infra.yml")))
    for name in required:
        assert f"{name}=" in script, f"what-if does not pass {name}"


def test_infra_workflow_watches_the_files_that_shape_the_deployment() -> None:
    paths = load("infra.yml")["on"]["pull_request"]["paths"]
    for needed in ("infra/**", "topology/**", "azure.yaml", "floworch/hosting/app_settings.py"):
        assert needed in paths


def test_workflow_python_satisfies_requires_python() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    minimum = re.search(r'requires-python = ">=3\.(\d+)"', pyproject)
    assert minimum is not None
    for name in names():
        for job in load(name)["jobs"].values():
            for step in job["steps"]:
                if str(step.get("uses", "")).startswith("actions/setup-python"):
                    version = str(step["with"]["python-version"])
                    assert int(version.split(".")[1]) >= int(minimum.group(1)), name


def test_paths_named_in_scripts_are_checked() -> None:
    found = PATH.findall("bash scripts/test -q tests/unit/infra && python .github/scripts/x.py")
    assert found == ["scripts/test", "tests/unit/infra", ".github/scripts/x.py"]
