"""Runs the examples in docs/manifest.md as doctests."""

from __future__ import annotations

import doctest
from pathlib import Path

DOC = Path(__file__).resolve().parents[3] / "docs" / "manifest.md"


def test_manifest_page_examples_pass() -> None:
    parser = doctest.DocTestParser()
    test = parser.get_doctest(DOC.read_text(encoding="utf-8"), {}, DOC.name, str(DOC), 0)
    assert len(test.examples) >= 5
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} example(s) in {DOC} failed; see output above"
