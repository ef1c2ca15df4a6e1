"""Loading what the CLI is pointed at: manifests, Python flow files, folders and handler modules.

One loader for every command (``validate``, ``run``, ``resume``, ``worker``, ``topology export
--flows``), so they agree on what a path means:

* a manifest file (``.json``, ``.yaml``, ``.yml``): that flow; a ``handlers.py`` beside it is
  imported unless ``--handlers`` is given;
* a Python file: the flows it defines (its decorated handlers register as it runs);
* a directory (not recursive; names starting with ``_`` or ``.`` are skipped): every manifest
  in it, and the Python flow files named ``flow.py``, ``flows.py``, ``*_flow.py`` or
  ``*_flows.py``; ``handlers.py`` and ``*_handlers.py`` are imported as handler modules (the
  README's ``flow.yaml`` + ``handlers.py`` layout). Other Python files (scripts such as
  ``examples/order_fulfilment/demo.py``, helpers) are neither read nor executed.

Finding no flow at all is an error, never a silent success.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

from floworch.errors import FlowValidationError, ValidationIssue

if TYPE_CHECKING:
    from floworch.engine.flows import FlowRegistry
    from floworch.engine.handlers import HandlerRegistry
    from floworch.model import FlowManifest

FLOW_SUFFIXES = (".json", ".yaml", ".yml", ".py")
HANDLERS_FILE = "handlers.py"


def is_handlers_module(file: Path) -> bool:
    """Whether a ``.py`` file in a flow folder holds handlers rather than flows."""
    return file.suffix == ".py" and (file.name == HANDLERS_FILE or file.stem.endswith("_handlers"))


def is_python_flow_file(file: Path) -> bool:
    """Whether a ``.py`` file in a flow folder defines flows (by its name; see the module doc)."""
    stem = file.stem
    return file.suffix == ".py" and (
        stem in ("flow", "flows") or stem.endswith(("_flow", "_flows"))
    )


def handlers_module_name(file: Path) -> str:
    """The stable module name a handlers file is imported under (the same path, the same name)."""
    import hashlib

    digest = hashlib.sha1(str(file.resolve()).encode("utf-8")).hexdigest()[:12]
    stem = "".join(ch if ch.isalnum() else "_" for ch in file.stem)
    return f"floworch_handlers.{stem}_{digest}"


def import_handlers(target: str) -> None:
    """Imports a handlers file or module so its ``@floworch.handler`` functions register.

    A file already executed in this process (as handlers, or as a Python flow file) is not
    executed again: its handlers are registered already.

    Raises:
        FlowValidationError: no such file or module, or importing it failed.
    """
    path = Path(target)
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise FlowValidationError([ValidationIssue("--handlers", f"no such file: {target}")])
        _import_file(path, target)
        return
    try:
        importlib.import_module(target)
    except ImportError as exc:
        raise FlowValidationError(
            [ValidationIssue("--handlers", f"cannot import module {target!r}: {exc}")]
        ) from exc
    except Exception as exc:
        raise FlowValidationError(
            [ValidationIssue("--handlers", f"importing {target} failed: {_describe(exc)}")]
        ) from exc


def _import_file(path: Path, shown: str) -> None:
    from floworch.model.loading import module_name_for

    name = handlers_module_name(path)
    if name in sys.modules or module_name_for(path) in sys.modules:
        return  # already executed, as a handlers module or as a Python flow file
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FlowValidationError([ValidationIssue("--handlers", f"cannot import {shown}")])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    directory = str(path.resolve().parent)
    added = directory not in sys.path
    if added:
        sys.path.insert(0, directory)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise FlowValidationError(
            [ValidationIssue("--handlers", f"importing {shown} failed: {_describe(exc)}")]
        ) from exc
    finally:
        if added and directory in sys.path:
            sys.path.remove(directory)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def flow_files(path: Path) -> tuple[list[Path], list[Path]]:
    """The flow files and the handler files that ``path`` stands for.

    Raises:
        FlowValidationError: the path does not exist, or holds no flow file.
    """
    if path.is_dir():
        children = sorted(
            child
            for child in path.iterdir()
            if child.is_file()
            and child.suffix in FLOW_SUFFIXES
            and not child.name.startswith(("_", "."))
        )
        flows = [c for c in children if c.suffix != ".py" or is_python_flow_file(c)]
        handlers = [child for child in children if is_handlers_module(child)]
        if not flows:
            others = [c.name for c in children if c.suffix == ".py" and not is_handlers_module(c)]
            skipped = (
                f" ({', '.join(others)} not read: name Python flow files flow.py, "
                "flows.py or *_flows.py)"
                if others
                else ""
            )
            raise FlowValidationError(
                [
                    ValidationIssue(
                        "",
                        "no flow found: the directory holds no .json, .yaml or .yml manifest and "
                        f"no Python flow file{skipped}",
                    )
                ],
                source=str(path),
            )
        return flows, handlers
    if path.is_file():
        sibling = path.parent / HANDLERS_FILE
        beside = [sibling] if path.suffix != ".py" and sibling.is_file() else []
        return [path], beside
    raise FlowValidationError([ValidationIssue("", "no such file or directory")], source=str(path))


@dataclass(frozen=True)
class Project:
    """What a set of paths holds.

    Attributes:
        manifests: the flows, in path and file name order.
        handler_sources: the handler files and modules imported for them.
        has_handlers: whether any handler code was loaded (a handlers module, or a Python flow
            file, which defines its handlers beside its flows); only then can step types be
            checked against the registered handlers.
    """

    manifests: tuple[FlowManifest, ...]
    handler_sources: tuple[str, ...]
    has_handlers: bool


def load_flows(paths: Sequence[str], handlers: Sequence[str] = ()) -> Project:
    """Loads the flows at ``paths`` (files or folders), importing the handlers they need first.

    ``handlers`` (``--handlers`` values) are imported first; when none is given, the
    ``handlers.py`` beside a manifest or inside a folder is imported instead.

    Raises:
        FlowValidationError: a path holds no flow, a manifest is invalid, a handler module
            failed to import, or two flows share an id.
    """
    from floworch.model import load_flows_from_path

    for target in handlers:
        import_handlers(target)
    sources = list(handlers)
    python_flows = False
    manifests: list[FlowManifest] = []
    seen: dict[str, str] = {}
    for path in paths:
        files, handler_files = flow_files(Path(path))
        if not handlers:
            for file in handler_files:
                import_handlers(str(file))
                sources.append(str(file))
        for file in files:
            python_flows = python_flows or file.suffix == ".py"
            for manifest in load_flows_from_path(file):
                if manifest.id in seen:
                    raise FlowValidationError(
                        [
                            ValidationIssue(
                                "id",
                                f"flow id {manifest.id!r} is also defined in {seen[manifest.id]}",
                            )
                        ],
                        source=str(file),
                    )
                seen[manifest.id] = str(file)
                manifests.append(manifest)
    return Project(tuple(manifests), tuple(sources), bool(sources) or python_flows)


def load_project(
    path: str | Sequence[str], handlers: Sequence[str] = ()
) -> tuple[list[FlowManifest], HandlerRegistry]:
    """The flows at ``path`` (one path or several) and the handler registry they run with."""
    from floworch.engine.handlers import default_registry

    paths = [path] if isinstance(path, str) else list(path)
    return list(load_flows(paths, handlers).manifests), default_registry


def check_handlers(manifests: Sequence[FlowManifest], registry: HandlerRegistry) -> None:
    """Refuses flows with a step type that has no handler (what ``run`` and ``worker`` need).

    Raises:
        FlowValidationError: every step whose type has no handler, with its path.
    """
    from floworch.engine.engine import verify_handlers
    from floworch.engine.flows import FlowRegistry

    verify_handlers(FlowRegistry(manifests), registry)


def pick_flow(manifests: list[FlowManifest], flow_id: str | None) -> FlowManifest:
    """The flow to run: ``--flow``, or the only one."""
    if flow_id is not None:
        for manifest in manifests:
            if manifest.id == flow_id:
                return manifest
        known = ", ".join(m.id for m in manifests)
        raise click.UsageError(f"no flow {flow_id!r} here (flows: {known})")
    if len(manifests) != 1:
        known = ", ".join(m.id for m in manifests)
        raise click.UsageError(f"several flows found ({known}); choose one with --flow")
    return manifests[0]


def registry_of(manifests: list[FlowManifest]) -> FlowRegistry:
    """A flow registry of the manifests."""
    from floworch.engine.flows import FlowRegistry

    return FlowRegistry(manifests)
