"""Strict JSON decoding: what RFC 8259 allows, nothing more.

Python's ``json.loads`` also accepts ``NaN``, ``Infinity`` and ``-Infinity``, and turns a number
too large for a float (``1e999``) into infinity. None of these is JSON: another reader refuses
them, and a value holding one cannot be written back as JSON. floworch reads message bodies and
documents with :func:`loads`.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["NotStrictJsonError", "loads"]


class NotStrictJsonError(ValueError):
    """The text is not strict JSON (the message says why and, for a syntax error, where)."""


def _reject_constant(name: str) -> Any:
    raise NotStrictJsonError(f"{name} is not JSON (JSON has no NaN or Infinity)")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotStrictJsonError(f"the number {text} is too large for a 64-bit float")
    return value


def loads(data: str | bytes | bytearray) -> Any:
    """Decodes ``data`` (UTF-8 when bytes) as strict JSON.

    Raises:
        NotStrictJsonError: the text is not UTF-8, not JSON, or holds NaN, Infinity or a number
            that overflows a float.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    except UnicodeDecodeError as exc:
        raise NotStrictJsonError(f"not UTF-8 text: {exc}") from exc
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite)
    except NotStrictJsonError:
        raise
    except json.JSONDecodeError as exc:
        raise NotStrictJsonError(f"{exc.msg} (line {exc.lineno}, column {exc.colno})") from exc
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise NotStrictJsonError(str(exc)) from exc
    except RecursionError as exc:
        raise NotStrictJsonError("nested too deeply") from exc
