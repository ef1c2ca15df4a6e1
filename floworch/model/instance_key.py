"""Step instance keys: ``fetch``, ``each.3.charge``, ``outer.0.inner.3.child``.

A top-level step's instance key is its manifest key. A step inside a ForEach body is
``<loop instance key>.<index>.<child>``. Manifest step keys contain no dots, so a key splits
unambiguously into (loop, index) pairs and the step. Every place that reads structure out of a
key goes through :class:`InstanceKey` instead of splitting strings by hand.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

SEPARATOR = "."


class InstanceKeyError(ValueError):
    """A text is not a well-formed instance key; ``reason`` says why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key!r} is not a step instance key: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True, slots=True)
class InstanceKey:
    """One step instance of a run, parsed.

    Attributes:
        loops: the enclosing ForEach steps with the iteration index, outermost first
            (``(("outer", 0), ("inner", 3))`` for ``outer.0.inner.3.child``).
        step: the manifest key of the step itself (``child``).
    """

    loops: tuple[tuple[str, int], ...]
    step: str

    @classmethod
    def parse(cls, text: str) -> InstanceKey:
        """Parses an instance key (the engine parses the same few keys over and over, so the
        answers of the most recent ones are kept; the key is immutable).

        Raises:
            InstanceKeyError: (a ValueError) the key is empty, has an even number of parts or a
                non-numeric index.
        """
        return _parse(text)

    @classmethod
    def _parse(cls, text: str) -> InstanceKey:
        parts = text.split(SEPARATOR)
        if len(parts) % 2 == 0 or not all(parts[0::2]):
            raise InstanceKeyError(text, "expected '<step>' or '<loop>.<index>.<step>'")
        loops: list[tuple[str, int]] = []
        for name, index in zip(parts[0:-1:2], parts[1::2], strict=True):
            if not index.isascii() or not index.isdigit():
                raise InstanceKeyError(text, f"{index!r} is not an iteration index")
            loops.append((name, int(index)))
        return cls(tuple(loops), parts[-1])

    @classmethod
    def root(cls, step: str) -> InstanceKey:
        """The key of a top-level step."""
        return cls((), step)

    def __str__(self) -> str:
        return self.prefix + self.step

    @property
    def is_root(self) -> bool:
        """Whether the step is a top-level step (not inside any ForEach body)."""
        return not self.loops

    @property
    def prefix(self) -> str:
        """The prefix shared by the step and its siblings (``each.3.``; ``""`` at the top)."""
        return "".join(f"{name}{SEPARATOR}{index}{SEPARATOR}" for name, index in self.loops)

    @property
    def template(self) -> str:
        """The manifest path of the step without indexes (``each.charge``)."""
        return SEPARATOR.join([*(name for name, _ in self.loops), self.step])

    @property
    def pattern(self) -> str:
        """The key with every iteration index replaced by ``*`` (``each.*.charge``): the same
        for every iteration, for grouping instances of one manifest step."""
        return SEPARATOR.join([*(f"{name}{SEPARATOR}*" for name, _ in self.loops), self.step])

    @property
    def top(self) -> str:
        """The top-level step this instance belongs to (``each`` for ``each.3.charge``)."""
        return self.loops[0][0] if self.loops else self.step

    @property
    def loop(self) -> InstanceKey | None:
        """The ForEach instance whose body holds this step (None for a top-level step)."""
        if not self.loops:
            return None
        *outer, (name, _) = self.loops
        return InstanceKey(tuple(outer), name)

    @property
    def index(self) -> int | None:
        """The iteration index of the innermost enclosing ForEach (None at the top)."""
        return self.loops[-1][1] if self.loops else None

    def sibling(self, step: str) -> InstanceKey:
        """Another step of the same scope (the same loop iteration)."""
        return InstanceKey(self.loops, step)

    def child(self, index: int, step: str) -> InstanceKey:
        """A body step of iteration ``index`` of this ForEach instance."""
        return InstanceKey((*self.loops, (self.step, index)), step)

    def enclosing_loops(self) -> list[InstanceKey]:
        """The enclosing ForEach instances, innermost first."""
        found: list[InstanceKey] = []
        loop = self.loop
        while loop is not None:
            found.append(loop)
            loop = loop.loop
        return found

    def scope_prefixes(self) -> list[str]:
        """Prefixes from the step's own scope out to the top: ``["a.1.b.2.", "a.1.", ""]``."""
        return [
            "".join(f"{name}{SEPARATOR}{index}{SEPARATOR}" for name, index in self.loops[:depth])
            for depth in range(len(self.loops), -1, -1)
        ]


def descendants_prefix(loop_key: str | InstanceKey) -> str:
    """The key prefix of every step instance inside a ForEach instance's body (``each.``)."""
    return f"{loop_key}{SEPARATOR}"


def is_inside(key: str, loop_key: str | InstanceKey) -> bool:
    """Whether instance ``key`` lies in the body of ForEach instance ``loop_key`` (any depth)."""
    return key.startswith(descendants_prefix(loop_key))


def is_root_key(key: str) -> bool:
    """Whether ``key`` names a top-level step (cheaper than parsing on hot paths)."""
    return SEPARATOR not in key


__all__ = ["InstanceKey", "InstanceKeyError", "descendants_prefix", "is_inside", "is_root_key"]


@functools.lru_cache(maxsize=16_384)
def _parse(text: str) -> InstanceKey:
    return InstanceKey._parse(text)
