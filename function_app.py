"""The Azure Functions entry point (Python v2 programming model): the flows at FLOWORCH_FLOWS
(``flows/`` in this package) as a Function App. See docs/functions.md."""

import os
from pathlib import Path

from floworch.hosting.functions import app_from_environment

app = app_from_environment(os.environ, root=Path(__file__).parent)
