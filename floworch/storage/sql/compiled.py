"""Core statements compiled once per database and run on the driver's own connection.

Every statement the adapter issues is a SQLAlchemy Core construct (see ``statements.py`` and
``scan_statements.py``), compiled by SQLAlchemy for the database's dialect, so nothing builds
SQL from strings. What this module removes is the per-call cost around it: a statement is named
by a :class:`Stmt` (a key plus the function that builds it), compiled the first time the key is
seen, and from then on an execution is a dictionary lookup, the column types' own bind and
result processors (the same SQLAlchemy uses, so stored values are byte-for-byte what they were),
and one driver call. Values travel as bind parameters named in the statement; constants written
into a builder (``status IN ('Pending', 'Waiting')``) are bind parameters with a fixed value.

Statements whose shape depends on the call (how many keys in an ``IN`` list, which columns an
update writes, how many rows an insert carries) include that shape in their key.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BindParameter, Column, Integer, bindparam, literal
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Executable
from sqlalchemy.sql.elements import ColumnElement

Processor = Callable[[Any], Any] | None
Row = tuple[Any, ...]

_CACHE_SIZE = 2000


class UnstorableValue(Exception):
    """A bind value its column type refused (a naive datetime, JSON that does not encode)."""

    def __init__(self, name: str, cause: Exception) -> None:
        super().__init__(str(cause))
        self.name = name


@dataclass(frozen=True, slots=True)
class Stmt:
    """A statement shape: ``key`` names it (with its shape), ``build`` makes the Core construct."""

    key: Hashable | None
    """None: compile at every execution (see :func:`adhoc`)."""
    build: Callable[[], Executable]


BIND_PREFIX = "b_"
"""Prefix of every named bind parameter in the SQL. SQLAlchemy reserves column names as bind
names in INSERT and UPDATE statements it executes, so values are named ``run_id`` by callers
and ``b_run_id`` in the statement."""


def adhoc(statement: Executable) -> Stmt:
    """A statement with its values written in (``flow_id == "f"``, ``status.in_([...])``),
    compiled at every execution instead of once: for cold paths whose shape varies freely (the
    control plane's searches), not the hot path."""
    return Stmt(None, lambda: statement)


def bp(name: str, column: Column[Any] | ColumnElement[Any]) -> BindParameter[Any]:
    """A bind parameter for the value ``name``, typed like ``column`` (so the value goes through
    the column's type)."""
    return bindparam(BIND_PREFIX + name, type_=column.type)


def bp_int(name: str) -> BindParameter[Any]:
    """An integer bind parameter for the value ``name`` (limits, offsets, deltas)."""
    return bindparam(BIND_PREFIX + name, type_=Integer())


def one_of(column: Column[Any], values: Iterable[Any]) -> ColumnElement[bool]:
    """``column IN (v1, v2, ...)`` for constants, one fixed bind parameter per value."""
    return column.in_([literal(value, column.type) for value in values])


def key_in(column: Column[Any], prefix: str, count: int) -> ColumnElement[bool]:
    """``column IN (:prefix0, :prefix1, ...)`` for ``count`` values given at execution."""
    return column.in_([bp(f"{prefix}{i}", column) for i in range(count)])


@dataclass(frozen=True, slots=True)
class Compiled:
    """One statement compiled for one database: SQL text, how to bind, how to read rows."""

    sql: str
    positional: bool
    binds: tuple[tuple[str, Processor, bool, Any], ...]
    """(name, bind processor, has a fixed value, the fixed value), in placeholder order."""
    placeholders: tuple[str, ...]
    """The bind names as the SQL spells them (named parameter styles)."""
    columns: tuple[str, ...]
    """Names of the result columns (SELECT list or RETURNING), in order."""
    processors: tuple[Processor, ...]
    processed: bool
    """Whether any result column has a processor (else rows are used as the driver gives them)."""
    processed_columns: tuple[tuple[int, Callable[[Any], Any]], ...]
    """(column index, result processor) of the columns that have one."""
    writes: bool
    """Whether the statement changes data (INSERT, UPDATE, DELETE)."""

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        """The driver's parameters for one execution.

        Raises:
            UnstorableValue: a column type refused a value.
        """
        out: list[Any] = []
        for name, process, fixed, constant in self.binds:
            value = constant if fixed and name not in values else values[name]
            if process is not None and value is not None:
                try:
                    value = process(value)
                except (TypeError, ValueError, OverflowError, RecursionError) as exc:
                    raise UnstorableValue(name, exc) from exc
            out.append(value)
        if self.positional:
            return tuple(out)
        return dict(zip(self.placeholders, out, strict=True))

    def rows(self, raw: Iterable[Sequence[Any]]) -> list[Row]:
        """Result rows with each column's result processor applied."""
        if not self.processed:
            return [tuple(row) for row in raw]
        processed = self.processed_columns
        out: list[Row] = []
        for row in raw:
            values = list(row)
            for index, process in processed:
                value = values[index]
                if value is not None:
                    values[index] = process(value)
            out.append(tuple(values))
        return out


def compile_statement(statement: Executable, dialect: Dialect) -> Compiled:
    """Compiles ``statement`` for ``dialect`` and gathers its bind and result processors."""
    compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
    if "__[POSTCOMPILE" in compiled.string:
        raise ValueError(f"an expanding IN cannot be compiled once; use one_of(): {compiled}")
    names: Sequence[str]
    positional = bool(dialect.positional)
    if positional:
        names = compiled.positiontup or []
    else:
        names = list(dict.fromkeys(compiled.bind_names.values()))
    binds: list[tuple[str, Processor, bool, Any]] = []
    by_name = {name: bind for bind, name in compiled.bind_names.items()}
    for name in names:
        param = by_name[name]
        process = _processors(param.type, dialect)[0]
        fixed = not param.required
        lookup = name.removeprefix(BIND_PREFIX) if param.required else name
        binds.append((lookup, process, fixed, param.effective_value if fixed else None))
    return _assemble(statement, compiled, dialect, positional, binds, names)


def compile_adhoc(statement: Executable, dialect: Dialect) -> Compiled:
    """Compiles a statement whose values are written in (see :func:`adhoc`): every bind is fixed,
    ``IN`` lists are expanded into one bind per item."""
    compiled = statement.compile(  # type: ignore[attr-defined]
        dialect=dialect, compile_kwargs={"render_postcompile": True}
    )
    types = {name: bind.type for bind, name in compiled.bind_names.items()}
    values = compiled.params
    positional = bool(dialect.positional)
    names = list(compiled.positiontup or []) if positional else list(values)
    binds: list[tuple[str, Processor, bool, Any]] = []
    for name in names:
        type_ = types.get(name) or types[name.rsplit("_", 1)[0]]
        binds.append((name, _processors(type_, dialect)[0], True, values[name]))
    return _assemble(statement, compiled, dialect, positional, binds, names)


def _assemble(
    statement: Executable,
    compiled: Any,
    dialect: Dialect,
    positional: bool,
    binds: list[tuple[str, Processor, bool, Any]],
    names: Sequence[str],
) -> Compiled:
    """The :class:`Compiled` of a statement, with its result columns' processors."""
    results = _result_columns(statement)
    processors = [_processors(column.type, dialect)[1] for column in results]
    return Compiled(
        sql=compiled.string,
        positional=positional,
        binds=tuple(binds),
        placeholders=tuple(names),
        columns=tuple(column.key for column in results),
        processors=tuple(processors),
        processed=any(p is not None for p in processors),
        processed_columns=tuple((i, p) for i, p in enumerate(processors) if p is not None),
        writes=bool(compiled.isinsert or compiled.isupdate or compiled.isdelete),
    )


def _processors(type_: Any, dialect: Dialect) -> tuple[Processor, Processor]:
    """A type's (bind, result) processors: its own one-step ones where it has them (see
    ``column_types``), else the ones SQLAlchemy would apply."""
    fast = getattr(type_, "driver_processors", None)
    found = fast(dialect) if fast is not None else None
    if found is not None:
        return found[0], found[1]
    impl = type_.dialect_impl(dialect)
    return impl.bind_processor(dialect), impl.result_processor(dialect, None)


def _result_columns(statement: Executable) -> list[Any]:
    selected = getattr(statement, "selected_columns", None)
    if selected is not None:
        return list(selected)
    if getattr(statement, "_returning", ()):
        return list(statement.exported_columns)  # type: ignore[attr-defined]
    return []


class StatementCache:
    """Compiled statements of one database by :attr:`Stmt.key`; the least recently used go first."""

    def __init__(self, dialect: Dialect, size: int = _CACHE_SIZE) -> None:
        self.dialect = dialect
        self._size = size
        self._compiled: OrderedDict[Hashable, Compiled] = OrderedDict()

    def get(self, stmt: Stmt) -> Compiled:
        """The compiled form of ``stmt``, compiling it the first time its key is seen."""
        if stmt.key is None:
            return compile_adhoc(stmt.build(), self.dialect)
        found = self._compiled.get(stmt.key)
        if found is not None:
            self._compiled.move_to_end(stmt.key)
            return found
        found = compile_statement(stmt.build(), self.dialect)
        self._compiled[stmt.key] = found
        if len(self._compiled) > self._size:
            self._compiled.popitem(last=False)
        return found
