"""Every Bicep file parses (tree-sitter-bicep), and a syntax error names its file and line."""

from __future__ import annotations

import json
import re

import pytest

from tests.unit.infra.bicep_source import BicepSyntaxError, Sources, check_syntax, parse_bicep
from tests.unit.infra.conftest import INFRA, MAIN, ROOT


def test_there_are_templates(sources: Sources) -> None:
    assert MAIN in sources.bicep_paths()
    assert len(sources.bicep_paths()) >= 7


def test_every_bicep_file_parses(sources: Sources) -> None:
    for path in sources.bicep_paths():
        parsed = parse_bicep(path, sources.text(path))
        assert parsed.declarations, path


def test_a_syntax_error_names_the_file_and_line(sources: Sources) -> None:
    path = "infra/bicep/modules/sql.bicep"
    lines = sources.text(path).splitlines()
    target = next(i for i, line in enumerate(lines) if "minimalTlsVersion" in line)
    lines[target] = lines[target].replace(":", "", 1)
    with pytest.raises(BicepSyntaxError, match=rf"^{re.escape(path)}:{target + 1}:\d+: "):
        check_syntax(path, "\n".join(lines))


def test_an_unclosed_brace_is_an_error() -> None:
    with pytest.raises(BicepSyntaxError, match=r"^x\.bicep:\d+:\d+: "):
        check_syntax("x.bicep", "resource a 'A/b@1' = {\n  name: 'a'\n")


def test_modules_are_resource_group_scoped(sources: Sources) -> None:
    for path in sources.bicep_paths():
        assert sources.bicep(path).target_scope == "resourceGroup", path


def test_every_module_reference_resolves(sources: Sources) -> None:
    for path in sources.bicep_paths():
        for module in sources.bicep(path).of_kind("module"):
            target = (ROOT / path).parent / module.type_text
            assert target.is_file(), f"{module.where}: {module.type_text} does not exist"


def test_main_parameters_name_parameters_of_main(sources: Sources) -> None:
    document = json.loads((INFRA / "main.parameters.json").read_text(encoding="utf-8"))
    declared = {d.name for d in sources.bicep(MAIN).of_kind("param")}
    assert set(document["parameters"]) <= declared
    required = {d.name for d in sources.bicep(MAIN).of_kind("param") if not d.value_text}
    assert required <= set(document["parameters"]), "azd must be able to fill every required one"
