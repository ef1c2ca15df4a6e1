"""CLI start-up: wall time of ``floworch`` commands next to a bare ``python -c pass``.

Usage::

    python bench/cli_startup.py               # 15 interleaved rounds
    python bench/cli_startup.py --rounds 30

Each round runs every command once, in turn (interleaved, so load on the machine hits them
alike); the table shows the median and the ratio of medians to ``python -c pass`` of the same
interpreter. ``runs list`` reads a SQLite database holding 3 finished runs of the hello example,
made before the rounds start; it is at the newest schema, so ``runs list`` reads it with the
standard library's sqlite3 (floworch/storage/sqlite_view.py). The issue's goals: ``--help``
within 3x, ``runs list`` within 5x.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
FLOWORCH = str(Path(PYTHON).with_name("floworch"))


def timed(argv: list[str], cwd: str, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode()[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    hello = str(ROOT / "examples/hello/flow.yaml")
    with tempfile.TemporaryDirectory() as cwd:
        env = {**os.environ}
        env.pop("FLOWORCH_DB_URL", None)
        # As on a user's machine, compiled modules are cached (this sandbox sets the variable).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for i in range(3):
            timed([FLOWORCH, "run", hello, "--body", f'{{"name": "n{i}"}}'], cwd, env)
        commands = {
            "python -c pass": [PYTHON, "-c", "pass"],
            "floworch --help": [FLOWORCH, "--help"],
            "floworch runs list": [FLOWORCH, "runs", "list"],
            "floworch validate hello": [FLOWORCH, "validate", hello],
            "floworch run hello": [FLOWORCH, "run", hello],
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for argv in commands.values():  # warm-up: page cache, .pyc files
            timed(argv, cwd, env)
        for _ in range(args.rounds):
            for name, argv in commands.items():
                samples[name].append(timed(argv, cwd, env))
    base = statistics.median(samples["python -c pass"])
    print(f"{'command':<26} {'median':>9} {'min':>9} {'x pass':>7}   ({args.rounds} rounds)")
    for name, values in samples.items():
        median, fastest = statistics.median(values), min(values)
        print(f"{name:<26} {median * 1000:>7.0f}ms {fastest * 1000:>7.0f}ms {median / base:>6.1f}x")
    print(f"load average at the end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
