"""floworch: durable DAG workflows for Python, native to Azure Service Bus, with state in SQL.

The public API::

    import floworch

    @floworch.handler("FetchOrders")
    async def fetch_orders(ctx: floworch.StepContext, inputs: dict) -> dict: ...

The names below are imported on first use (PEP 562), so that ``import floworch`` (and the
``floworch`` command, which lives in this package) starts without loading the engine, pydantic
or the manifest model until something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from floworch.engine.context import Cancellation, StepContext
    from floworch.engine.engine import Engine, TriggerResult
    from floworch.engine.flows import FlowRegistry
    from floworch.engine.handlers import (
        HandlerRegistry,
        StepResult,
        default_registry,
        handler,
    )
    from floworch.errors import FlowError, FlowValidationError, StepError
    from floworch.model import Flow, FlowManifest, load_manifest, validate_manifest
    from floworch.model.statuses import RunStatus, StepStatus

_EXPORTS = {
    "Cancellation": "floworch.engine.context",
    "StepContext": "floworch.engine.context",
    "Engine": "floworch.engine.engine",
    "TriggerResult": "floworch.engine.engine",
    "FlowRegistry": "floworch.engine.flows",
    "HandlerRegistry": "floworch.engine.handlers",
    "StepResult": "floworch.engine.handlers",
    "default_registry": "floworch.engine.handlers",
    "handler": "floworch.engine.handlers",
    "FlowError": "floworch.errors",
    "FlowValidationError": "floworch.errors",
    "StepError": "floworch.errors",
    "Flow": "floworch.model",
    "FlowManifest": "floworch.model",
    "load_manifest": "floworch.model",
    "validate_manifest": "floworch.model",
    "RunStatus": "floworch.model.statuses",
    "StepStatus": "floworch.model.statuses",
}

__all__ = [
    "Cancellation",
    "Engine",
    "Flow",
    "FlowError",
    "FlowManifest",
    "FlowRegistry",
    "FlowValidationError",
    "HandlerRegistry",
    "RunStatus",
    "StepContext",
    "StepError",
    "StepResult",
    "StepStatus",
    "TriggerResult",
    "default_registry",
    "handler",
    "load_manifest",
    "validate_manifest",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'floworch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
