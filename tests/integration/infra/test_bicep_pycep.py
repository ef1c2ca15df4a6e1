"""A second, independent Bicep grammar: every file must also parse with pycep-parser.

pycep (Lark) and tree-sitter-bicep disagree on corner cases; a template both accept is less
likely to trip the real Bicep compiler, which cannot run here (docs/deploy.md). Building
pycep's parser takes seconds, so it is built once for the module.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lark.exceptions import UnexpectedInput
from pycep import BicepParser
from pycep.typing import BicepJson

ROOT = Path(__file__).resolve().parents[3]
FILES = sorted((ROOT / "infra" / "bicep").rglob("*.bicep"))


def parse_or_explain(parser: BicepParser, path: Path, text: str) -> BicepJson:
    """Parses ``text``; a syntax error becomes one line ``path:line:column: ...``."""
    try:
        result = parser.parse(text=text)
    except UnexpectedInput as exc:
        where = f"{path.relative_to(ROOT).as_posix()}:{exc.line}:{exc.column}"
        lines = text.splitlines()
        snippet = lines[exc.line - 1].strip() if 0 < exc.line <= len(lines) else ""
        raise AssertionError(f"{where}: pycep cannot parse `{snippet}`") from None
    return result


@pytest.fixture(scope="module")
def parser() -> BicepParser:
    return BicepParser()


def test_every_bicep_file_parses_with_pycep(parser: BicepParser) -> None:
    assert FILES
    for path in FILES:
        parsed = parse_or_explain(parser, path, path.read_text(encoding="utf-8"))
        assert parsed.get("resources") or parsed.get("modules"), path


def test_pycep_reports_the_file_and_line(parser: BicepParser) -> None:
    path = ROOT / "infra" / "bicep" / "modules" / "identity.bicep"
    lines = path.read_text(encoding="utf-8").splitlines()
    target = next(i for i, line in enumerate(lines) if line.startswith("resource "))
    lines[target] = lines[target].replace(" = {", " = {{")
    with pytest.raises(
        AssertionError, match=rf"identity\.bicep:{target + 1}:\d+: pycep cannot parse"
    ):
        parse_or_explain(parser, path, "\n".join(lines))
