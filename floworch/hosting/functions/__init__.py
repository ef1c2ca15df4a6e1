"""The Azure Functions host: ``function_app.py`` builds its app with :func:`app_from_environment`
(or :func:`build_app`); see docs/functions.md.

Importing this package imports ``azure.functions`` (the ``functions`` extra) but nothing heavy of
floworch's: the engine, the store and the Service Bus client are built on the first invocation.
"""

from floworch.hosting.functions.app import FloworchFunctionApp, app_from_environment, build_app
from floworch.hosting.functions.settings import FunctionsOptions, FunctionsSettings, Settlement

__all__ = [
    "FloworchFunctionApp",
    "FunctionsOptions",
    "FunctionsSettings",
    "Settlement",
    "app_from_environment",
    "build_app",
]
