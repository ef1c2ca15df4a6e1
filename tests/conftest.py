"""Suite-wide hooks: one closing line that says what was skipped and why.

Tests that need a service skip locally when it is absent and fail under ``CI=true``; the one
exception is SQL Server (there is none on this machine), whose contract class skips everywhere.
The line makes every skip visible in CI output, e.g.
``skipped 9 test(s): 9 x FLOWORCH_TEST_MSSQL_URL is not set (no SQL Server to test against)``.

Property tests run without a hypothesis deadline: the default 200 ms per example is an upper
bound on elapsed time, which fails under load (``tests/unit/test_hypothesis_settings.py``).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import settings

settings.register_profile("floworch", deadline=None)
settings.load_profile("floworch")


def _reason(report: Any) -> str:
    longrepr = report.longrepr
    text = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return text.removeprefix("Skipped: ").strip()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if r.when in ("setup", "call")]
    if not skipped:
        return
    reasons = Counter(_reason(report) for report in skipped)
    parts = "; ".join(f"{count} x {reason}" for reason, count in reasons.most_common())
    terminalreporter.write_line(f"skipped {len(skipped)} test(s): {parts}")
