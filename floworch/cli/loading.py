"""Loading what the CLI is pointed at: manifests, Python flow files and handler modules."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import click

from floworch.engine.flows import FlowRegistry
from floworch.engine.handlers import HandlerRegistry, default_registry
from floworch.errors import FlowValidationError, ValidationIssue
from floworch.model import FlowManifest, load_flows_from_path


def import_handlers(target: str) -> None:
    """Imports a handlers file or module so its ``@floworch.handler`` functions register."""
    path = Path(target)
    if path.suffix == ".py" or path.exists():
        if not path.is_file():
            raise FlowValidationError([ValidationIssue("--handlers", f"no such file: {target}")])
        name = f"floworch_handlers_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise FlowValidationError([ValidationIssue("--handlers", f"cannot import {target}")])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise FlowValidationError(
                [ValidationIssue("--handlers", f"importing {target} failed: {exc!r}")]
            ) from exc
        finally:
            sys.path.remove(str(path.resolve().parent))
        return
    try:
        importlib.import_module(target)
    except ImportError as exc:
        raise FlowValidationError(
            [ValidationIssue("--handlers", f"cannot import module {target!r}: {exc}")]
        ) from exc


def load_project(
    path: str, handlers: tuple[str, ...] = ()
) -> tuple[list[FlowManifest], HandlerRegistry]:
    """Loads the flows at ``path`` and the handlers they need.

    A manifest next to a ``handlers.py`` picks it up when no ``--handlers`` is given, so
    ``floworch run examples/hello/flow.yaml`` just works.
    """
    for target in handlers:
        import_handlers(target)
    manifests = load_flows_from_path(path)
    if not handlers:
        sibling = Path(path).parent / "handlers.py" if Path(path).is_file() else None
        if sibling is not None and sibling.is_file() and Path(path).suffix != ".py":
            import_handlers(str(sibling))
    return manifests, default_registry


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
    return FlowRegistry(manifests)
