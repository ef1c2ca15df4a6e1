"""Handlers of the hello flow: plain Python functions registered by step type."""

from typing import Any

import floworch


@floworch.handler("Greet")
async def greet(ctx: floworch.StepContext, inputs: dict[str, Any]) -> dict[str, str]:
    ctx.logger.info("greeting %s", inputs["name"])
    return {"greeting": f"Hello, {inputs['name']}!"}


@floworch.handler("Shout")
def shout(inputs: dict[str, Any]) -> str:
    # A sync handler: it runs in a worker thread.
    return str(inputs["text"]).upper()
