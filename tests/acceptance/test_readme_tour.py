"""The README's tour (sections 3 and 4) and the examples of docs/cli.md, run verbatim.

The shell lines are read from the documents themselves, so an edit that breaks one fails here.
They run, through the ``floworch`` entry point in this process (one import of floworch for all
of them; ``tests/acceptance/test_cli*.py`` cover real processes), in a directory that links the
repository's ``examples/``.
``RUN_ID`` is an order-fulfilment run left waiting for its approval by a killed ``floworch run``;
``STEP`` is its ``ship`` step. Every line must succeed (exit 0): the lines of section 4, in
order, signal the run, cancel it, retry ``ship``, rerun it, and resume what is left.
"""

from __future__ import annotations

import re
import shlex
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.conftest import ROOT, Cli, logging_restored, step_status


def shell_lines(document: Path, heading: str) -> list[list[str]]:
    """The ``floworch`` command lines of the ```sh blocks under ``heading`` (up to the next
    heading of the same or a higher level)."""
    text = document.read_text(encoding="utf-8")
    level = heading.split(" ")[0]
    start = text.index(heading)
    rest = text[start + len(heading) :]
    end = re.search(rf"^#{{1,{len(level)}}} ", rest, flags=re.M)
    section = rest[: end.start()] if end else rest
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.S):
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words and words[0].endswith("floworch"):
                lines.append(words[1:])
    return lines


def run_lines(
    lines: list[list[str]], capsys: pytest.CaptureFixture[str], **values: str
) -> list[str]:
    from floworch.cli.main import run_cli

    problems = []
    for words in lines:
        args = [values.get(word, word) for word in words]
        code = run_cli(args)
        out, err = capsys.readouterr()
        if code != 0 or "Traceback" in err:
            problems.append(f"floworch {' '.join(words)} -> {code}\n{out}{err}")
    return problems


@pytest.fixture(scope="module")
def examples_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory whose ``examples`` is the repository's (a symlink): in one process a
    handlers file is imported once per resolved path, and other tests use these too."""
    root = tmp_path_factory.mktemp("tour")
    (root / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    return root


@pytest.fixture
def tour(examples_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cli]:
    monkeypatch.chdir(examples_copy)
    for name in ("FLOWORCH_DB_URL", "FLOWORCH_FLOWS", "FLOWORCH_RUNTIME", "FLOWORCH_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    with logging_restored():
        yield Cli(examples_copy)


@pytest.mark.slow
def test_the_readme_tour_runs_verbatim(tour: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    readme = ROOT / "README.md"
    section3 = shell_lines(readme, "### 3. Run it")
    section4 = shell_lines(readme, "### 4. Look at the result")
    assert len(section3) >= 4 and len(section4) >= 8
    assert not run_lines(section3, capsys)

    proc = tour.popen(
        "run", "examples/order_fulfilment/flow.json", "--body", '{"customerId": "c-1"}'
    )
    try:
        waiting = tour.wait_for_run(
            lambda r: r.flow_id == "order-fulfilment" and step_status(r, "approve") == "Waiting",
            what="the order waits for its approval",
            process=proc,
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert not run_lines(section4, capsys, RUN_ID=waiting.run_id, STEP="ship")
    order_runs = [r for r in tour.runs() if r.flow_id == "order-fulfilment"]
    statuses = sorted(str(r.status) for r in order_runs)
    assert statuses == ["Running", "Succeeded"], (
        statuses
    )  # the retried run shipped; the rerun waits


def test_the_cli_doc_examples_run(tour: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    doc = ROOT / "docs/cli.md"
    paths = shell_lines(doc, "## What a PATH means")
    assert len(paths) >= 3
    assert not run_lines(paths, capsys)
