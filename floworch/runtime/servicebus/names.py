"""Entity names of the Service Bus runtime, shared by the dispatcher, the processor host and the
topology manager so that all three always agree."""

from __future__ import annotations

import hashlib
import re

DEFAULT_STEPS_TOPIC = "flow-steps"
DEFAULT_CRON_QUEUE = "flow-cron"
#: The topic run-starting messages are sent to; each flow has its subscription there.
DEFAULT_TRIGGERS_TOPIC = "flow-triggers"
SUBSCRIPTION_PREFIX = "flow-"
FLOW_RULE_NAME = "flow"
#: The subscription of the triggers topic that catches messages no flow's subscription routes
#: (no ``FlowId``, or the id of a flow not deployed), so that they are dead-lettered with a
#: reason instead of being dropped by Service Bus.
UNROUTED_SUBSCRIPTION = "unrouted"
UNROUTED_RULE = "unrouted"

#: Service Bus limits subscription and rule names to 50 characters.
MAX_SUBSCRIPTION_NAME = 50
_ALLOWED = re.compile(r"[^A-Za-z0-9._\-]")


def subscription_name(flow_id: str) -> str:
    """The subscription that receives the step messages of ``flow_id`` on the steps topic, and
    its trigger messages on the triggers topic: ``flow-<flowId>``.

    Characters Service Bus does not allow become ``-``. A name that would exceed 50 characters is
    cut and given a short hash of the full flow id, so two long ids never share a subscription.
    """
    cleaned = _ALLOWED.sub("-", flow_id)
    name = f"{SUBSCRIPTION_PREFIX}{cleaned}"
    if len(name) <= MAX_SUBSCRIPTION_NAME and cleaned == flow_id:
        return name
    digest = hashlib.sha256(flow_id.encode()).hexdigest()[:8]
    keep = MAX_SUBSCRIPTION_NAME - len(SUBSCRIPTION_PREFIX) - len(digest) - 1
    return f"{SUBSCRIPTION_PREFIX}{cleaned[:keep]}-{digest}"
