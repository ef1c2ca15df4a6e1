"""Writes requirements.txt, what the Function App's remote build installs, from pyproject.toml.

The deployed package holds floworch's source itself (the repository root is the app), so the
requirements are floworch's dependencies plus the extras a Function App needs: ``sqlserver``
(Azure SQL), ``servicebus``, ``functions`` and ``otel`` (export to Application Insights); with
``--settlement actions`` also ``functions-actions`` (the preview SDK-type binding).
``tests/unit/hosting/test_functions_files.py`` fails when requirements.txt and pyproject.toml
drift apart.

    python scripts/functions_requirements.py > requirements.txt
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTRAS = ("sqlserver", "servicebus", "functions", "otel")
ACTIONS_EXTRA = "functions-actions"
_SELF = re.compile(r"^floworch\[(?P<extras>[^\]]+)\]")


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().lower()


def requirements(pyproject: Path = ROOT / "pyproject.toml", *, actions: bool = False) -> str:
    """The text of requirements.txt."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    extras = project.get("optional-dependencies", {})
    wanted = [*EXTRAS, *((ACTIONS_EXTRA,) if actions else ())]
    lines: list[str] = list(project["dependencies"])
    seen: set[str] = set()
    pending = list(wanted)
    while pending:
        extra = pending.pop(0)
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in extras[extra]:
            nested = _SELF.match(requirement)
            if nested:
                pending.extend(e.strip() for e in nested.group("extras").split(","))
            else:
                lines.append(requirement)
    unique = sorted(dict.fromkeys(lines), key=lambda r: (_name(r), r))
    header = [
        "# Generated from pyproject.toml by scripts/functions_requirements.py"
        + (" --settlement actions" if actions else "")
        + ": do not edit.",
        f"# floworch's dependencies and the extras {', '.join(wanted)} (the Function App's remote "
        "build installs these; floworch's source is in the package).",
    ]
    return "\n".join([*header, *unique]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settlement", choices=["auto", "actions"], default="auto")
    args = parser.parse_args(argv)
    sys.stdout.write(requirements(actions=args.settlement == "actions"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
