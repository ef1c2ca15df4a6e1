"""Which functions a Function App has for its flows, with stable, valid names.

One Service Bus topic trigger per flow's subscription on the steps topic and per flow's
subscription on the triggers topic, one for the triggers topic's catch-all ``unrouted`` (what no
flow's subscription routes is dead-lettered with its reason), one queue trigger for the cron
queue and one per queue a ``ServiceBus`` flow trigger names; a timer for the background pass,
the HTTP function of the API (auth level ``function``: every ``/api`` route, webhooks,
``/status``, ``/healthz`` and ``/readyz``) and two anonymous HTTP functions for the dashboard's
page and files (:data:`DASHBOARD_ROUTES`), which hold no data. The entities are the ones the
worker receives from and ``floworch topology export`` writes (``topology/servicebus.json``).

Function names follow the Functions rules (a letter first, then letters, digits, ``_`` and
``-``; at most 127 characters; compared without case): each is a fixed prefix and the entity's
name; a name that has to change (a ``.`` in a flow id, a queue name too long) gets a short hash of
the original, so two entities never share a function.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from floworch.runtime.servicebus.names import UNROUTED_SUBSCRIPTION, subscription_name

MAX_FUNCTION_NAME = 127
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_\-]")
BACKGROUND_FUNCTION = "background"
HTTP_FUNCTION = "http"
HTTP_ROUTE = "/{*route}"
DASHBOARD_FUNCTION = "dashboard"
DASHBOARD_ASSETS_FUNCTION = "dashboard-assets"
DASHBOARD_ROUTES = {
    # The site root only: an optional segment that must be empty (a route of "" would mean
    # the function's name to the host).
    DASHBOARD_FUNCTION: "{page:maxlength(0)?}",
    DASHBOARD_ASSETS_FUNCTION: "assets/{version}/{*name}",
}
"""The anonymous dashboard functions and their routes. The host tries routes in the order of the
function names (https://github.com/Azure/azure-functions-host/issues/9876), so both names sort
before ``http``, whose catch-all would match these paths too (a test holds the order)."""
CRON_FUNCTION = "cron"
TRIGGERS_PREFIX = "triggers"


class FunctionKind(StrEnum):
    """What a trigger function receives."""

    STEPS = "steps"
    """Step messages of one flow (its subscription on the steps topic)."""
    CRON = "cron"
    """Cron ticks (the cron queue)."""
    TRIGGERS = "triggers"
    """Run-starting messages (a flow's subscription on the triggers topic, or its own
    ``ServiceBus`` queue)."""
    UNROUTED = "unrouted"
    """What no flow's subscription on the triggers topic routes (dead-lettered with a reason)."""


class FlowLike(Protocol):
    """What the plan needs of a flow (a FlowManifest or a FlowDefinition)."""

    @property
    def id(self) -> str: ...

    @property
    def triggers(self) -> Mapping[str, object]: ...


@dataclass(frozen=True)
class TriggerFunction:
    """One Service Bus trigger function.

    Attributes:
        name: the function name.
        kind: what it receives.
        topic / subscription: a topic trigger's entity.
        queue: a queue trigger's entity.
        flow_id: the flow whose step (or trigger) messages the function receives.
    """

    name: str
    kind: FunctionKind
    topic: str | None = None
    subscription: str | None = None
    queue: str | None = None
    flow_id: str | None = None

    @property
    def entity(self) -> str:
        """The entity path (``topic/Subscriptions/name`` or the queue)."""
        if self.queue is not None:
            return self.queue
        return f"{self.topic}/Subscriptions/{self.subscription}"


def function_name(prefix: str, entity: str) -> str:
    """``<prefix>-<entity>``, made valid: characters outside ``[A-Za-z0-9_-]`` become ``_`` and
    a name that had to change, or is too long, ends in a hash of the entity name."""
    cleaned = _NOT_ALLOWED.sub("_", entity)
    name = f"{prefix}-{cleaned}"
    if cleaned == entity and len(name) <= MAX_FUNCTION_NAME:
        return name
    digest = hashlib.sha256(entity.encode()).hexdigest()[:8]
    keep = MAX_FUNCTION_NAME - len(prefix) - len(digest) - 2
    return f"{prefix}-{cleaned[:keep]}-{digest}"


def trigger_queues(flows: Iterable[FlowLike], triggers_topic: str) -> list[str]:
    """Every queue a ``ServiceBus`` flow trigger names (other than the triggers topic), sorted."""
    queues = set()
    for flow in flows:
        for trigger in flow.triggers.values():
            queue = getattr(trigger, "queue", None)
            if getattr(trigger, "type", None) != "ServiceBus" or not queue:
                continue
            if queue.casefold() != triggers_topic.casefold():
                queues.add(queue)
    return sorted(queues)


def function_plan(
    flows: Iterable[FlowLike], *, steps_topic: str, cron_queue: str, triggers_topic: str
) -> list[TriggerFunction]:
    """The Service Bus trigger functions for ``flows``, in a stable order (steps by flow id,
    triggers by flow id, the catch-all, cron, then trigger queues by name)."""
    ordered = sorted(flows, key=lambda flow: flow.id)
    plan = [
        TriggerFunction(
            name=function_name(FunctionKind.STEPS, subscription_name(flow.id)),
            kind=FunctionKind.STEPS,
            topic=steps_topic,
            subscription=subscription_name(flow.id),
            flow_id=flow.id,
        )
        for flow in ordered
    ]
    plan.extend(
        TriggerFunction(
            name=function_name(TRIGGERS_PREFIX, subscription_name(flow.id)),
            kind=FunctionKind.TRIGGERS,
            topic=triggers_topic,
            subscription=subscription_name(flow.id),
            flow_id=flow.id,
        )
        for flow in ordered
    )
    plan.append(
        TriggerFunction(
            name=function_name(TRIGGERS_PREFIX, UNROUTED_SUBSCRIPTION),
            kind=FunctionKind.UNROUTED,
            topic=triggers_topic,
            subscription=UNROUTED_SUBSCRIPTION,
        )
    )
    plan.append(TriggerFunction(name=CRON_FUNCTION, kind=FunctionKind.CRON, queue=cron_queue))
    plan.extend(
        TriggerFunction(name=function_name("queue", queue), kind=FunctionKind.TRIGGERS, queue=queue)
        for queue in trigger_queues(ordered, triggers_topic)
    )
    return plan


_SEGMENT = re.compile(r"\{(?P<star>\*)?(?P<name>\w+)(?::maxlength\((?P<max>\d+)\))?(?P<opt>\?)?\}")


def match_route(template: str, path: str) -> dict[str, str] | None:
    """The route values when ``path`` matches an HTTP trigger's route ``template`` (the host's
    templates as the Function App uses them: literal segments, ``{name}``, a last ``{*name}``
    and ``{name:maxlength(n)?}``), else None. The local host routes with it.

    Raises:
        ValueError: a template segment this matcher does not know.
    """
    parts = [p for p in template.strip("/").split("/") if p]
    given = [p for p in path.split("?", 1)[0].strip("/").split("/") if p]
    values: dict[str, str] = {}
    for index, part in enumerate(parts):
        if not part.startswith("{"):
            if index >= len(given) or given[index].casefold() != part.casefold():
                return None
            continue
        found = _SEGMENT.fullmatch(part)
        if found is None:
            raise ValueError(f"route template {template!r}: segment {part!r} is not supported")
        if found["star"]:
            values[found["name"]] = "/".join(given[index:])
            return values
        if index >= len(given):
            if found["opt"]:
                continue
            return None
        if found["max"] is not None and len(given[index]) > int(found["max"]):
            return None
        values[found["name"]] = given[index]
    return values if len(given) <= len(parts) else None


def route_order(names: Sequence[str]) -> list[str]:
    """HTTP function names in the order the host tries their routes (by name, ignoring case)."""
    return sorted(names, key=str.casefold)
