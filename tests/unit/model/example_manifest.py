"""The issue's example manifest, shared by the model tests."""

from __future__ import annotations

import json
from typing import Any

EXAMPLE_JSON = """{"id": "order-fulfilment", "version": "1",
 "triggers": {"manual": {"type": "Manual"}, "nightly": {"type": "Cron", "cron": "0 2 * * *"},
              "orders": {"type": "Webhook", "slug": "orders"}},
 "steps": {
  "fetch":   {"type": "FetchOrders", "inputs": {"customer": "@triggerBody()?.customerId"}},
  "each":    {"type": "ForEach", "forEach": "@steps('fetch').output.orders", "concurrencyLimit": 2,
              "runAfter": {"fetch": ["Succeeded"]},
              "steps": {"charge": {"type": "Charge",
                                   "inputs": {"order": "@item()", "n": "@index()"}}}},
  "approve": {"type": "WaitForSignal", "inputs": {"signalName": "approval", "timeoutSeconds": 3600},
              "runAfter": {"each": ["Succeeded"]}},
  "ship":    {"type": "Ship",
              "runAfter": {"approve": {"statuses": ["Succeeded"],
                                       "when": "@steps('approve').output.approved == true"}},
              "retry": {"maxAttempts": 5, "initialIntervalSeconds": 2, "backoffCoefficient": 2.0,
                        "maxIntervalSeconds": 60},
              "timeoutSeconds": 30},
  "notify":  {"type": "Notify", "runAfter": {"each": ["Failed", "TimedOut"]}}}}
"""

EXAMPLE_YAML = """\
id: order-fulfilment
version: 1
triggers:
  manual: {type: Manual}
  nightly:
    type: Cron
    cron: "0 2 * * *"
  orders: {type: Webhook, slug: orders}
steps:
  fetch:
    type: FetchOrders
    inputs:
      customer: "@triggerBody()?.customerId"
  each:
    type: ForEach
    forEach: "@steps('fetch').output.orders"
    concurrencyLimit: 2
    runAfter: {fetch: [Succeeded]}
    steps:
      charge:
        type: Charge
        inputs: {order: "@item()", n: "@index()"}
  approve:
    type: WaitForSignal
    inputs: {signalName: approval, timeoutSeconds: 3600}
    runAfter: {each: [Succeeded]}
  ship:
    type: Ship
    runAfter:
      approve:
        statuses: [Succeeded]
        when: "@steps('approve').output.approved == true"
    retry:
      maxAttempts: 5
      initialIntervalSeconds: 2
      backoffCoefficient: 2.0
      maxIntervalSeconds: 60
    timeoutSeconds: 30
  notify:
    type: Notify
    runAfter: {each: [Failed, TimedOut]}
"""

EXAMPLE_PY = """\
from floworch.model import Flow, Retry

flow = Flow("order-fulfilment", version="1")
flow.manual()
flow.cron("0 2 * * *", key="nightly")
flow.webhook("orders", key="orders")
flow.step("fetch", "FetchOrders", inputs={"customer": "@triggerBody()?.customerId"})
each = flow.for_each(
    "each", "@steps('fetch').output.orders", concurrency_limit=2, run_after={"fetch": ["Succeeded"]}
)
each.step("charge", "Charge", inputs={"order": "@item()", "n": "@index()"})
flow.wait_for_signal("approve", "approval", timeout=3600, run_after="each")
flow.step(
    "ship",
    "Ship",
    run_after={
        "approve": {"statuses": ["Succeeded"], "when": "@steps('approve').output.approved == true"}
    },
    retry=Retry(max_attempts=5, initial_interval_seconds=2, max_interval_seconds=60),
    timeout=30,
)
flow.step("notify", "Notify", run_after={"each": ["Failed", "TimedOut"]})
"""


def example() -> dict[str, Any]:
    """A fresh copy of the example manifest as a dict."""
    data: dict[str, Any] = json.loads(EXAMPLE_JSON)
    return data
