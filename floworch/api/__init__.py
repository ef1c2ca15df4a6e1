"""The HTTP API: one ASGI app (FastAPI) served by the worker, ``floworch serve`` and the
Function App. Build it with :func:`create_app`; see docs/api.md."""

from floworch.api.app import create_app, store_probe
from floworch.api.auth import AuthConfig, AuthMode, Role
from floworch.api.context import (
    ApiOptions,
    DeadLetterCount,
    Readiness,
    ReadinessProbe,
    WebhookSecrets,
)

__all__ = [
    "ApiOptions",
    "AuthConfig",
    "AuthMode",
    "DeadLetterCount",
    "Readiness",
    "ReadinessProbe",
    "Role",
    "WebhookSecrets",
    "create_app",
    "store_probe",
]
