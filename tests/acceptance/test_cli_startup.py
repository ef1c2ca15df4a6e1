"""The ``floworch`` command starts without importing what only some commands need
(issue 15: SQLAlchemy, the engine, pydantic, the Azure SDK and proton are imported per command).
Speed itself is measured by ``bench/cli_startup.py``."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("sqlalchemy", "alembic", "azure", "proton", "pydantic", "yaml", "floworch.engine")


def test_importing_the_cli_imports_no_heavy_module() -> None:
    code = (
        "import json, sys\n"
        "import floworch.cli.main\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
        "                        or any(m.startswith(h + '.') or m == h for h in heavy))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(done.stdout) == []


def test_help_lists_every_command_without_importing_them() -> None:
    code = (
        "import json, sys\n"
        "from floworch.cli.main import run_cli\n"
        "rc = run_cli(['--help'])\n"
        "print(json.dumps([rc, 'sqlalchemy' in sys.modules, 'floworch.engine' in sys.modules]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    *help_lines, result = done.stdout.strip().splitlines()
    assert json.loads(result) == [0, False, False]
    listed = "\n".join(help_lines)
    for name in ("validate", "run", "resume", "runs", "signal", "worker", "topology", "db"):
        assert f"  {name} " in listed
