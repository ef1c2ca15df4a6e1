"""What users type on the command line: JSON bodies and payloads, headers; and JSON printed back.

JSON is parsed strictly: ``NaN``, ``Infinity`` and ``-Infinity`` are not JSON and are refused
(Python's ``json`` accepts them by default, and a run holding one could not be printed as JSON
again). What ``--json`` prints is always valid JSON: a non-finite number already stored (by an
older version, or a handler) is printed as ``null``, as JavaScript's ``JSON.stringify`` does.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from floworch import limits


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON (use a number, a string or null)")


def parse_json_option(value: str | None, option: str) -> Any:
    """``--body`` / ``--payload``: JSON text, or ``@file.json``; None when not given.

    Raises:
        click.BadParameter: a missing or unreadable file, or text that is not strict JSON.
    """
    if value is None:
        return None
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise click.BadParameter(f"no such file: {path}", param_hint=option) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise click.BadParameter(f"cannot read {path}: {exc}", param_hint=option) from exc
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise click.BadParameter("not valid JSON: nested too deeply", param_hint=option) from None
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint=option) from exc


def check_idempotency_key(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    """Click callback of ``--idempotency-key``: refuses a key beyond :mod:`floworch.limits`
    before anything is stored or sent (with ``--servicebus`` the worker would dead-letter it)."""
    return _within_limits(value, limits.idempotency_key_problem)


def check_signal_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback of a signal NAME: refuses a name beyond :mod:`floworch.limits`."""
    return _within_limits(value, limits.signal_name_problem)


def _within_limits(value: str | None, problem_of: Callable[[object], str | None]) -> str | None:
    problem = None if value is None else problem_of(value)
    if problem is not None:
        raise click.BadParameter(problem)
    return value


def parse_body(value: str | None) -> Any:
    """``--body``: JSON text, or ``@file.json``."""
    return parse_json_option(value, "--body")


def parse_headers(values: tuple[str, ...]) -> dict[str, str]:
    """``--header K=V`` options."""
    headers: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"expected K=V, got {item!r}", param_hint="--header")
        headers[name] = value
    return headers


def finite(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has no such number)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite(item) for item in value]
    return value


def dump_json(value: Any) -> str:
    """Indented, strictly valid JSON (datetimes and other values as text)."""
    return json.dumps(finite(value), indent=2, default=str, allow_nan=False)
