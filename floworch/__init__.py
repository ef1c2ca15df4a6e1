"""floworch: durable DAG workflows for Python, native to Azure Service Bus, with state in SQL.

The public API::

    import floworch

    @floworch.handler("FetchOrders")
    async def fetch_orders(ctx: floworch.StepContext, inputs: dict) -> dict: ...
"""

from floworch.engine.context import Cancellation, StepContext
from floworch.engine.engine import Engine, TriggerResult
from floworch.engine.flows import FlowRegistry
from floworch.engine.handlers import HandlerRegistry, StepResult, default_registry, handler
from floworch.errors import FlowError, FlowValidationError, StepError
from floworch.model import Flow, FlowManifest, load_manifest, validate_manifest
from floworch.model.statuses import RunStatus, StepStatus

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
