"""Evaluates a Bicep deployment offline, the way ARM would expand it.

`main.bicep` is evaluated with given parameter values: parameters (checked against
``@allowed``), variables, user-defined functions, lambdas (map, filter, toObject...), loops,
conditions, and modules with their parameters. Values known only at deployment time (resource
ids and properties, ``uniqueString``, module outputs) become :class:`Unknown`. The result is the
flat list of resource instances (type, API version, full name, body, scope) the policies check.
Only the functions the templates use are implemented; anything else fails loudly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from tests.unit.infra.bicep_builtins import BUILTINS, OPAQUE
from tests.unit.infra.bicep_expr import Node
from tests.unit.infra.bicep_source import BicepFile, Declaration, Sources, parse_literal
from tests.unit.infra.bicep_values import (
    EvalError,
    Lambda,
    ModuleRef,
    ResourceRef,
    Unknown,
    is_unknown,
    normalise,
    to_string,
)

__all__ = ["Deployment", "EvalError", "Resource", "ResourceRef", "Unknown", "evaluate_deployment"]


@dataclass(frozen=True)
class Resource:
    """One resource instance of an evaluated deployment."""

    file: str
    symbol: str
    index: int | None
    type: str
    api_version: str
    existing: bool
    names: tuple[Any, ...]  # the name of each ancestor, then its own (Unknown where unknown)
    body: dict[str, Any]
    line: int

    @property
    def where(self) -> str:
        loop = "" if self.index is None else f"[{self.index}]"
        return f"{self.file}:{self.line} {self.symbol}{loop}"

    @property
    def properties(self) -> dict[str, Any]:
        value = self.body.get("properties", {})
        return value if isinstance(value, dict) else {}


@dataclass
class Deployment:
    resources: list[Resource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    output_declarations: list[Declaration] = field(default_factory=list)
    files: dict[str, BicepFile] = field(default_factory=dict)

    def of_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.resources if r.type.lower() == resource_type.lower()]

    def deployed(self) -> list[Resource]:
        return [r for r in self.resources if not r.existing]

    def instance(self, ref: ResourceRef) -> Resource:
        for resource in self.resources:
            if (resource.file, resource.symbol, resource.index) == (
                ref.file,
                ref.symbol,
                ref.index,
            ):
                return resource
        raise KeyError(f"{ref.file}: no resource {ref.symbol}[{ref.index}] (declared later?)")


class FileEvaluator:
    """Evaluates one file with given parameter values, appending to ``deployment``."""

    def __init__(
        self,
        sources: Sources,
        path: str,
        params: Mapping[str, Any],
        deployment: Deployment,
        *,
        root: bool,
    ) -> None:
        self.sources = sources
        self.path = path
        self.file = sources.bicep(path)
        self.deployment = deployment
        self.root = root
        deployment.files[path] = self.file
        self.params: dict[str, Any] = {}
        self.vars: dict[str, Any] = {}
        self._pending: set[str] = set()
        self._where = path
        self._bind(params)

    def fail(self, message: str) -> EvalError:
        return EvalError(f"{self._where}: {message}")

    def _bind(self, given: Mapping[str, Any]) -> None:
        declared = {d.name: d for d in self.file.of_kind("param")}
        extra = sorted(set(given) - set(declared))
        if extra:
            raise self.fail(f"no parameter named {', '.join(extra)}")
        for name, decl in declared.items():
            self._where = decl.where
            if name in given:
                value = given[name]
            elif decl.value_text:
                value = self.eval(decl.value, {})
            else:
                raise self.fail(f"parameter {name} needs a value")
            allowed = self.allowed(name)
            if allowed and not is_unknown(value) and value not in allowed:
                raise self.fail(f"parameter {name}={value!r} is not one of {allowed}")
            self.params[name] = value

    def allowed(self, name: str) -> list[Any]:
        """The ``@allowed`` values of a parameter (empty when it has none)."""
        text = self.file.declarations[name].decorators.get("allowed")
        return list(parse_literal(text)) if text else []

    def variable(self, name: str) -> Any:
        if name not in self.vars:
            if name in self._pending:
                raise self.fail(f"variable {name} depends on itself")
            self._pending.add(name)
            decl = self.file.declarations[name]
            where, self._where = self._where, decl.where
            self.vars[name] = self.eval(decl.value, {})
            self._where = where
            self._pending.discard(name)
        return self.vars[name]

    # -- expressions

    def eval(self, node: Node, local: Mapping[str, Any]) -> Any:
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "str":
            parts = [p if isinstance(p, str) else self.eval(p, local) for p in node[1]]
            if any(is_unknown(p) for p in parts):
                return Unknown(
                    "'" + "".join(p if isinstance(p, str) else "${?}" for p in parts) + "'"
                )
            return "".join(to_string(p) for p in parts)
        if kind == "array":
            return [self.eval(n, local) for n in node[1]]
        if kind == "object":
            out: dict[str, Any] = {}
            for key, value in node[1]:
                name = key if isinstance(key, str) else self.eval(key, local)
                out[name.text if isinstance(name, Unknown) else name] = self.eval(value, local)
            return out
        if kind == "ident":
            return self.name(node[1], local)
        if kind == "member":
            return self.member(self.eval(node[1], local), node[2], node[3])
        if kind == "index":
            return self.index(self.eval(node[1], local), self.eval(node[2], local), node[3])
        if kind == "unary":
            value = self.eval(node[2], local)
            if is_unknown(value):
                return Unknown(f"{node[1]}?")
            return (not self.truth(value)) if node[1] == "!" else -value
        if kind == "binary":
            return self.binary(node, local)
        if kind == "ternary":
            condition = self.eval(node[1], local)
            if is_unknown(condition):
                return Unknown("?:")
            return self.eval(node[2] if self.truth(condition) else node[3], local)
        if kind == "lambda":
            return Lambda(tuple(node[1]), node[2], dict(local))
        if kind == "call":
            return self.call(node[1], [self.eval(a, local) for a in node[2]])
        if kind == "for":
            return [self.eval(body, scope) for body, scope in self.loop(node, local)]
        raise self.fail(f"unsupported expression {kind}")

    def name(self, name: str, local: Mapping[str, Any]) -> Any:
        if name in local:
            return local[name]
        decl = self.file.declarations.get(name)
        if decl is None:
            raise self.fail(f"unknown name {name}")
        if decl.kind == "param":
            return self.params[name]
        if decl.kind == "var":
            return self.variable(name)
        if decl.kind == "resource":
            return ResourceRef(self.path, name)
        if decl.kind == "module":
            return ModuleRef(self.path, name)
        raise self.fail(f"{name} is a {decl.kind}, not a value")

    def member(self, target: Any, prop: str, safe: bool) -> Any:
        if isinstance(target, ModuleRef):
            return target if prop == "outputs" else Unknown(f"{target.symbol}.outputs.{prop}")
        if isinstance(target, ResourceRef | Unknown):
            text = target.text if isinstance(target, Unknown) else target.symbol
            return Unknown(f"{text}.{prop}")
        if target is None and safe:
            return None
        if isinstance(target, dict):
            if prop in target:
                return target[prop]
            if safe:
                return None
            raise self.fail(f"no property {prop!r} (it has {sorted(target)})")
        raise self.fail(f"cannot read .{prop} of a {type(target).__name__}")

    def index(self, target: Any, key: Any, safe: bool) -> Any:
        if isinstance(target, ResourceRef) and isinstance(key, int):
            return ResourceRef(target.file, target.symbol, key)
        if is_unknown(target) or is_unknown(key):
            return Unknown("[?]")
        if isinstance(target, list) and isinstance(key, int):
            if 0 <= key < len(target):
                return target[key]
            if safe:
                return None
            raise self.fail(f"index {key} is out of range ({len(target)} items)")
        if isinstance(target, dict) and isinstance(key, str):
            return self.member(target, key, safe)
        if target is None and safe:
            return None
        raise self.fail(f"cannot index a {type(target).__name__} with {key!r}")

    def binary(self, node: Node, local: Mapping[str, Any]) -> Any:
        op = node[1]
        left = self.eval(node[2], local)
        if op == "??":
            return left if left is not None else self.eval(node[3], local)
        if op == "&&" and left is False:
            return False
        if op == "||" and left is True:
            return True
        right = self.eval(node[3], local)
        if is_unknown(left) or is_unknown(right):
            return Unknown(f"? {op} ?")
        if op in ("&&", "||"):
            self.truth(left)
            return self.truth(right)
        table: dict[str, Callable[[Any, Any], Any]] = {
            "==": lambda a, b: a == b,
            "!=": lambda a, b: a != b,
            "=~": lambda a, b: str(a).lower() == str(b).lower(),
            "!~": lambda a, b: str(a).lower() != str(b).lower(),
            "<": lambda a, b: a < b,
            "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b,
            ">=": lambda a, b: a >= b,
            "+": lambda a, b: a + b,
            "-": lambda a, b: a - b,
            "*": lambda a, b: a * b,
            "/": lambda a, b: a // b,
            "%": lambda a, b: a % b,
        }
        return table[op](left, right)

    def truth(self, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(f"a condition is a {type(value).__name__}, not a bool")
        return value

    def loop(self, node: Node, local: Mapping[str, Any]) -> Iterator[tuple[Node, dict[str, Any]]]:
        _kind, item, index_name, source, body = node
        items = self.eval(source, local)
        if is_unknown(items):
            raise self.fail("a loop over a value known only at deployment time")
        if not isinstance(items, list):
            raise self.fail(f"a loop over a {type(items).__name__}, not an array")
        for position, value in enumerate(items):
            scope = {**local, item: value}
            if index_name:
                scope[index_name] = position
            yield body, scope

    def apply(self, function: Any, *args: Any) -> Any:
        if not isinstance(function, Lambda):
            raise self.fail("expected a lambda")
        local = {**function.local, **dict(zip(function.params, args, strict=False))}
        return self.eval(function.body, local)

    def call(self, name: str, args: list[Any]) -> Any:
        short = name.split(".")[-1]
        decl = self.file.declarations.get(name)
        if decl is not None and decl.kind == "func":
            if len(decl.func_params) != len(args):
                raise self.fail(f"{name} takes {len(decl.func_params)} arguments")
            return self.eval(decl.value, dict(zip(decl.func_params, args, strict=True)))
        if short in OPAQUE:
            return Unknown(f"{short}()")
        builtin = BUILTINS.get(short)
        if builtin is None:
            raise self.fail(f"function {name} is not implemented by this evaluator")
        return builtin(self, args)

    # -- declarations that deploy

    def bodies(self, decl: Declaration) -> Iterator[tuple[int | None, Node, dict[str, Any]]]:
        node = decl.value
        if node[0] == "for":
            for position, (body, scope) in enumerate(self.loop(node, {})):
                if body[0] == "if":
                    if self.truth(self.eval(body[1], scope)):
                        yield position, body[2], scope
                else:
                    yield position, body, scope
        elif node[0] == "if":
            if self.truth(self.eval(node[1], {})):
                yield None, node[2], {}
        else:
            yield None, node, {}

    def evaluate(self) -> None:
        for decl in self.file.of_kind("resource"):
            self._where = decl.where
            resource_type, _, api_version = decl.type_text.partition("@")
            for position, node, scope in self.bodies(decl):
                body = self.eval(node, scope)
                parent = body.get("parent")
                above = (
                    self.deployment.instance(parent).names
                    if isinstance(parent, ResourceRef)
                    else ()
                )
                names = (*above, body.get("name"))
                self.deployment.resources.append(
                    Resource(
                        self.path,
                        decl.name,
                        position,
                        resource_type,
                        api_version,
                        decl.existing,
                        names,
                        body,
                        decl.line,
                    )
                )
        for decl in self.file.of_kind("module"):
            self._where = decl.where
            target = normalise(str(PurePosixPath(self.path).parent / decl.type_text))
            for _position, node, scope in self.bodies(decl):
                body = self.eval(node, scope)
                child = FileEvaluator(
                    self.sources, target, body.get("params", {}), self.deployment, root=False
                )
                child.evaluate()
        if self.root:
            for decl in self.file.of_kind("output"):
                self._where = decl.where
                self.deployment.outputs[decl.name] = self.eval(decl.value, {})
        self.deployment.output_declarations.extend(self.file.of_kind("output"))


def evaluate_deployment(sources: Sources, main: str, params: Mapping[str, Any]) -> Deployment:
    """Evaluates ``main`` (a repository-relative path) and every module it uses."""
    deployment = Deployment()
    FileEvaluator(sources, main, params, deployment, root=True).evaluate()
    return deployment
