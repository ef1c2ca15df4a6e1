"""The flows this repository deploys as a Function App (``FLOWORCH_FLOWS=flows``): the two
examples, with the handlers beside them. ``topology/servicebus.json`` holds their entities.

Your own Function App puts its manifests and ``handlers.py`` here instead (docs/functions.md).
"""

from pathlib import Path

from floworch.cli.loading import load_flows

_EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

flows = list(
    load_flows(
        [str(_EXAMPLES / "hello" / "flow.yaml"), str(_EXAMPLES / "order_fulfilment" / "flow.json")]
    ).manifests
)
