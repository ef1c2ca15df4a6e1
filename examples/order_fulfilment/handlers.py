"""Handlers of the order-fulfilment flow (in-memory stand-ins for real services)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

import floworch


class ChargeInputs(BaseModel):
    order: dict[str, Any]
    n: int


@floworch.handler("FetchOrders")
async def fetch_orders(ctx: floworch.StepContext, inputs: dict[str, Any]) -> dict[str, Any]:
    customer = inputs["customer"]
    return {"orders": [{"id": f"{customer}-{i}", "amount": 10 * (i + 1)} for i in range(3)]}


@floworch.handler("Charge")
async def charge(ctx: floworch.StepContext, inputs: ChargeInputs) -> dict[str, Any]:
    # ctx.idempotency_key is the same for every attempt of this step in this run (retries and
    # redeliveries included): pass it to the payment provider so a retry never charges twice.
    if inputs.order["amount"] < 0:
        raise floworch.StepError("negative amount", retryable=False)
    return {
        "order": inputs.order["id"],
        "charged": inputs.order["amount"],
        "key": ctx.idempotency_key,
    }


@floworch.handler("Ship")
async def ship(ctx: floworch.StepContext, inputs: dict[str, Any]) -> dict[str, Any]:
    return {"shipped": True, "note": inputs["note"]}


@floworch.handler("Notify")
async def notify(ctx: floworch.StepContext, inputs: dict[str, Any]) -> str:
    ctx.logger.warning("charging failed: %s", inputs["errors"])
    return "operator notified"
