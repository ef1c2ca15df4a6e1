"""docs/deploy.md and the README's "Deploy to Azure": what can run here runs verbatim, and every
name they use (app settings, parameters, azd variables, outputs) is one the templates have."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from floworch.hosting.app_settings import setting_names
from tests.unit.infra.conftest import INFRA, MAIN, ROOT, read_sources

DOC = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
README = (ROOT / "README.md").read_text(encoding="utf-8")
AZD_BUILTINS = {"AZURE_LOCATION", "AZURE_SUBSCRIPTION_ID", "AZURE_RESOURCE_GROUP", "AZURE_ENV_NAME"}


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_the_app_settings_table_is_the_module() -> None:
    section = DOC.split("## The app settings", 1)[1].split("\n## ", 1)[0]
    names = set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.M))
    assert names == setting_names()


def test_the_print_sql_example_runs_verbatim() -> None:
    (block,) = [b for b in blocks(DOC, "sh") if "--print-sql" in b]
    command = block.replace(".venv/bin/python", sys.executable)
    done = subprocess.run(
        ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert (
        "CREATE USER [id-floworch-x] WITH SID = 0xF0EDF82FCBDC4841A6492C1154E1E129, TYPE = E;"
        in (done.stdout)
    )


def test_the_outputs_one_liner_exports_every_output() -> None:
    sources = read_sources()
    outputs = [d.name for d in sources.bicep(MAIN).of_kind("output")]
    (block,) = [b for b in blocks(DOC, "sh") if "properties.outputs" in b]
    script = re.search(r"python3 -c '([^']+)'", block)
    assert script is not None
    sample = {name[0].lower() + name[1:]: {"type": "String", "value": "v"} for name in outputs}
    done = subprocess.run(
        [sys.executable, "-c", script.group(1)],
        input=json.dumps(sample),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.splitlines() == [f"export {name}=v" for name in outputs]


def test_az_parameters_are_parameters_of_main() -> None:
    declared = {d.name for d in read_sources().bicep(MAIN).of_kind("param")}
    (block,) = [b for b in blocks(DOC, "sh") if "az deployment group create" in b]
    used = set(re.findall(r"(\w+)=\"", block.split("--parameters", 1)[1])) | {"environmentName"}
    assert used <= declared
    required = {d.name for d in read_sources().bicep(MAIN).of_kind("param") if not d.value_text}
    assert required <= used


def test_parameters_named_in_the_text_exist() -> None:
    sources = read_sources()
    declared = {
        d.name for path in sources.bicep_paths() for d in sources.bicep(path).of_kind("param")
    }
    named = set(re.findall(r"`([a-z]+[A-Z]\w*)`", DOC)) - {"functionAppConfig", "runtime"}
    properties = {
        "virtualNetworkSubnetId",
        "publicNetworkAccess",
        "maxMessageSizeInKilobytes",
        "customDimensions",
        "sqlServer",
    }
    missing = sorted(n for n in named - properties if n not in declared and "." not in n)
    assert missing == []


def test_azd_variables_are_read_by_the_parameters_file() -> None:
    parameters = (INFRA / "main.parameters.json").read_text(encoding="utf-8")
    for text in (DOC, README):
        for name in re.findall(r"azd env set ([A-Z_]+) ", text):
            if name == "NAME":  # the placeholder in "azd env set NAME VALUE"
                continue
            assert name in AZD_BUILTINS or "${" + name in parameters, name
        for name in re.findall(r"`([A-Z_]+)` \(`[A-Za-z]", text):
            assert "${" + name in parameters, name


def test_kql_for_runs_failures_durations_and_one_run() -> None:
    queries = blocks(DOC, "kusto")
    assert len(queries) == 4
    assert any("percentile(duration, 95)" in q for q in queries)
    assert any('operation_Id == "<operation id>"' in q for q in queries)
    assert "placeholders" in DOC
