"""Runs the order-fulfilment flow end to end in-process, approving it from code.

python examples/order_fulfilment/demo.py
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import handlers  # noqa: E402,F401  (registers the handlers)

from floworch.model import load_manifest  # noqa: E402
from floworch.testing import FlowTestHost  # noqa: E402


async def main() -> int:
    flow = load_manifest(HERE / "flow.json")
    async with FlowTestHost([flow]) as host:
        run_id = await host.trigger("order-fulfilment", body={"customerId": "c-42"})
        await host.idle()  # let the run reach the approval step
        print("waiting for approval:", (await host.get(run_id)).steps["approve"].status)
        print("signal:", await host.signal(run_id, "approval", {"approved": True, "by": "ops"}))
        run = await host.wait(run_id)
        print(json.dumps(run.to_dict(), indent=2))
        return 0 if run.status == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
