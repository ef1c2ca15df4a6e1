"""Bicep files read with tree-sitter-bicep: syntax errors with file and line, and declarations.

tree-sitter gives the statements (params, vars, funcs, resources, modules, outputs, their
decorators) and flags syntax errors; the value of each declaration is kept as source text for
:mod:`bicep_expr`, whose precedence is Bicep's (tree-sitter-bicep 1.1.0's is not).

Sources live in memory (:class:`Sources`), so a test can break a copy of one file on purpose.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import tree_sitter
import tree_sitter_bicep

from tests.unit.infra.bicep_expr import ExprSyntaxError, Node, parse_expression

LANGUAGE = tree_sitter.Language(tree_sitter_bicep.language())


class BicepSyntaxError(Exception):
    """A file that does not parse: the message starts with ``path:line:column``."""


@dataclass(frozen=True)
class Declaration:
    """One top-level statement of a Bicep file."""

    kind: str  # param, var, func, resource, module, output
    name: str
    path: str
    line: int
    value_text: str  # after '=' (for a func: its body after '=>')
    decorators: dict[str, str] = field(default_factory=dict)  # name -> argument text
    type_text: str = ""  # resource 'Type@version', module path, param/output type
    existing: bool = False
    func_params: tuple[str, ...] = ()
    value: Node = ("lit", None)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class BicepFile:
    path: str
    target_scope: str
    declarations: dict[str, Declaration]

    def of_kind(self, kind: str) -> list[Declaration]:
        return [d for d in self.declarations.values() if d.kind == kind]


def _text(node: tree_sitter.Node) -> str:
    return (node.text or b"").decode("utf-8")


def _first_error(node: tree_sitter.Node) -> tree_sitter.Node:
    for child in node.children:
        if child.type == "ERROR" or child.is_missing:
            return child
        if child.has_error:
            return _first_error(child)
    return node


def check_syntax(path: str, text: str) -> tree_sitter.Tree:
    """Parses ``text``; raises :class:`BicepSyntaxError` naming the first bad line."""
    tree = tree_sitter.Parser(LANGUAGE).parse(text.encode("utf-8"))
    if tree.root_node.has_error:
        bad = _first_error(tree.root_node)
        line, column = bad.start_point
        lines = text.splitlines()
        snippet = lines[line].strip() if line < len(lines) else ""
        what = f"missing {bad.type}" if bad.is_missing else "syntax error"
        raise BicepSyntaxError(f"{path}:{line + 1}:{column + 1}: {what} near `{snippet}`")
    return tree


_KINDS = {
    "parameter_declaration": "param",
    "variable_declaration": "var",
    "user_defined_function": "func",
    "resource_declaration": "resource",
    "module_declaration": "module",
    "output_declaration": "output",
}


def _after(node: tree_sitter.Node, token: str, source: bytes) -> str:
    for child in node.children:
        if child.type == token:
            return source[child.end_byte : node.end_byte].decode("utf-8").strip()
    return ""


def _decorators(node: tree_sitter.Node) -> dict[str, str]:
    found = {}
    for decorator in node.named_children:
        if decorator.type != "decorator" or not decorator.named_children:
            continue
        call = decorator.named_children[0]
        function = call.child_by_field_name("function") if call.type == "call_expression" else call
        arguments = (
            call.child_by_field_name("arguments") if call.type == "call_expression" else None
        )
        name = _text(function).split(".")[-1] if function is not None else _text(call)
        found[name] = _text(arguments)[1:-1].strip() if arguments is not None else ""
    return found


def parse_bicep(path: str, text: str) -> BicepFile:
    """The declarations of one file (after its syntax check)."""
    tree = check_syntax(path, text)
    source = text.encode("utf-8")
    declarations: dict[str, Declaration] = {}
    decorators: dict[str, str] = {}
    target_scope = "resourceGroup"
    for child in tree.root_node.named_children:
        if child.type == "comment":
            continue
        if child.type == "decorators":
            decorators = _decorators(child)
            continue
        if child.type == "target_scope_assignment":
            target_scope = _after(child, "=", source).strip("'")
            continue
        kind = _KINDS.get(child.type)
        line = child.start_point[0] + 1
        if kind is None:
            raise BicepSyntaxError(f"{path}:{line}: unsupported statement {child.type}")
        name_node = child.child_by_field_name("name") or next(
            c for c in child.named_children if c.type == "identifier"
        )
        name = _text(name_node)
        strings = [c for c in child.named_children if c.type == "string"]
        type_text = ""
        params: tuple[str, ...] = ()
        if kind in ("resource", "module"):
            type_text = _text(strings[0]).strip("'")
        elif kind in ("param", "output"):
            types = [c for c in child.named_children if c.type == "type"]
            type_text = _text(types[0]) if types else ""
        if kind == "func":
            parameters = next(c for c in child.named_children if c.type == "parameters")
            params = tuple(
                _text(p.named_children[0])
                for p in parameters.named_children
                if p.type == "parameter"
            )
            value_text = _after(child, "=>", source)
        else:
            value_text = _after(child, "=", source)
        if kind == "resource" and value_text.startswith("existing"):
            value_text = value_text.removeprefix("existing").strip()
        try:
            value = parse_expression(value_text) if value_text else ("lit", None)
        except ExprSyntaxError as exc:
            raise BicepSyntaxError(f"{path}:{line}: {exc}") from None
        key = f"output:{name}" if kind == "output" else name
        if key in declarations:
            raise BicepSyntaxError(f"{path}:{line}: {name} is declared twice")
        declarations[key] = Declaration(
            kind=kind,
            name=name,
            path=path,
            line=line,
            value_text=value_text,
            decorators=decorators,
            type_text=type_text,
            existing=any(c.type == "existing" for c in child.children),
            func_params=params,
            value=value,
        )
        decorators = {}
    return BicepFile(path, target_scope, declarations)


class Sources:
    """File texts by repository-relative POSIX path; :meth:`copy_with` breaks a copy."""

    def __init__(self, texts: Mapping[str, str]) -> None:
        self.texts = dict(texts)
        self._parsed: dict[str, BicepFile] = {}

    def copy_with(self, path: str, change: Callable[[str], str]) -> Sources:
        before = self.text(path)
        after = change(before)
        if after == before:
            raise AssertionError(f"the change to {path} changed nothing")
        return Sources({**self.texts, path: after})

    def replace(self, path: str, old: str, new: str, count: int = 1) -> Sources:
        """A copy whose ``path`` has ``old`` (which must occur) replaced by ``new``."""
        if old not in self.text(path):
            raise AssertionError(f"{old!r} is not in {path}")
        return self.copy_with(path, lambda text: text.replace(old, new, count))

    def text(self, path: str) -> str:
        try:
            return self.texts[path]
        except KeyError:
            raise FileNotFoundError(f"{path}: no such file among the sources") from None

    def bicep(self, path: str) -> BicepFile:
        if path not in self._parsed:
            self._parsed[path] = parse_bicep(path, self.text(path))
        return self._parsed[path]

    def bicep_paths(self) -> list[str]:
        return sorted(p for p in self.texts if p.endswith(".bicep"))


def parse_literal(text: str) -> Any:
    """The value of a literal expression (decorator arguments such as ``@allowed([...])``)."""
    node = parse_expression(text)
    return _literal(node)


def _literal(node: Node) -> Any:
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "str" and all(isinstance(p, str) for p in node[1]):
        return "".join(node[1])
    if kind == "array":
        return [_literal(n) for n in node[1]]
    if kind == "object":
        return {k: _literal(v) for k, v in node[1]}
    raise ValueError(f"not a literal: {node[0]}")
