"""The values of the offline Bicep evaluator (bicep_eval.py) and their conversions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from tests.unit.infra.bicep_expr import Node


class EvalError(Exception):
    """The template cannot be evaluated (ARM would fail too): names the file and line."""


@dataclass(frozen=True)
class Unknown:
    """A value known only at deployment time; ``text`` says where it comes from."""

    text: str


@dataclass(frozen=True)
class ResourceRef:
    """A declared resource (or one instance of a resource loop), e.g. ``scope: namespace``."""

    file: str
    symbol: str
    index: int | None = None


@dataclass(frozen=True)
class ModuleRef:
    file: str
    symbol: str


@dataclass(frozen=True)
class Lambda:
    params: tuple[str, ...]
    body: Node
    local: Mapping[str, Any]


def is_unknown(value: Any) -> bool:
    return isinstance(value, Unknown | ResourceRef | ModuleRef)


def to_string(value: Any) -> str:
    """Bicep's ``string()`` / interpolation of a value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def normalise(path: str) -> str:
    parts: list[str] = []
    for part in PurePosixPath(path).parts:
        if part == "..":
            if not parts:
                raise EvalError(f"{path} leaves the repository")
            parts.pop()
        elif part != ".":
            parts.append(part)
    return "/".join(parts)
