"""The ``floworch`` command starts without importing what only some commands need
(issue 15: SQLAlchemy, the engine, pydantic, the Azure SDK and proton are imported per command).
Speed itself is measured by ``bench/cli_startup.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_runs_list_on_a_current_sqlite_file_imports_no_sqlalchemy(tmp_path: Path) -> None:
    import asyncio

    from floworch.storage.factory import open_store

    async def create() -> None:
        store = await open_store(f"sqlite:///{tmp_path / '.floworch' / 'floworch.db'}")
        await store.close()

    asyncio.run(create())
    code = (
        "import json, sys\n"
        "from floworch.cli.main import run_cli\n"
        "rc = run_cli(['runs', 'list', '--json'])\n"
        "print(json.dumps([rc, sorted(m for m in sys.modules if m.startswith('sqlalchemy'))]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "FLOWORCH_DB_URL"},
    )
    listed, result = done.stdout.strip().rsplit("\n", 1)
    assert json.loads(result) == [0, []]
    assert json.loads(listed) == []
