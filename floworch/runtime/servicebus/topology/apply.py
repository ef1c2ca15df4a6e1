"""Planning and applying a topology against a namespace (the entry points hosts call)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from floworch.runtime.servicebus.topology.backend import NamespaceBackend
from floworch.runtime.servicebus.topology.diff import compute_plan, read_namespace
from floworch.runtime.servicebus.topology.errors import (
    EntityExistsError,
    EntityNotFoundError,
    TopologyConflictError,
)
from floworch.runtime.servicebus.topology.model import (
    QueueSpec,
    RuleSpec,
    SubscriptionSpec,
    TopicSpec,
    Topology,
)
from floworch.runtime.servicebus.topology.plan import Action, Change, Plan
from floworch.runtime.servicebus.topology.render import describe_change
from floworch.runtime.servicebus.topology.routing import with_existing_routes

if TYPE_CHECKING:
    from azure.servicebus.management import ServiceBusAdministrationClient

logger = logging.getLogger(__name__)

_S = TypeVar("_S")


def _admin_client_type() -> type[Any] | None:
    try:
        from azure.servicebus.management import ServiceBusAdministrationClient
    except ImportError:  # without the servicebus extra only backends can be given
        return None
    return ServiceBusAdministrationClient


def as_backend(target: NamespaceBackend | ServiceBusAdministrationClient) -> NamespaceBackend:
    """``target`` itself when it is a :class:`NamespaceBackend`; an administration client is
    wrapped in :class:`~floworch.runtime.servicebus.topology.admin.AdminNamespace`.

    Raises:
        TypeError: ``target`` is neither.
    """
    admin_type = _admin_client_type()
    if admin_type is not None and isinstance(target, admin_type):
        from floworch.runtime.servicebus.topology.admin import AdminNamespace

        return AdminNamespace(target)
    if isinstance(target, NamespaceBackend):
        return target
    raise TypeError(
        f"expected a NamespaceBackend or a ServiceBusAdministrationClient, not {type(target)!r}"
    )


def plan_topology(
    target: NamespaceBackend | ServiceBusAdministrationClient, topology: Topology
) -> Plan:
    """Read the namespace and compare it with ``topology``; changes nothing.

    Raises:
        EntityOperationError: reading the namespace failed (the message names the entity).
    """
    backend = as_backend(target)
    return _plan(backend, topology)


def _plan(backend: NamespaceBackend, topology: Topology) -> Plan:
    state = read_namespace(backend, topology)
    # The catch-all of a triggers topic also excludes the flows other deployments routed there.
    wanted = with_existing_routes(topology, state.topics)
    return compute_plan(wanted, state, target=backend.target)


def apply_topology(
    target: NamespaceBackend | ServiceBusAdministrationClient,
    topology: Topology,
    *,
    on_change: Callable[[Change], None] | None = None,
) -> Plan:
    """Make the namespace match ``topology`` and return the plan that was carried out.

    Idempotent: an entity created meanwhile by someone else is updated instead, a rule already
    gone is fine, and a second call returns a plan without changes. Entities the topology does
    not declare are left alone. Nothing is changed when the plan has conflicts.

    Args:
        target: a :class:`NamespaceBackend` or a ``ServiceBusAdministrationClient``.
        topology: what the namespace must hold (see :func:`desired_topology`).
        on_change: called after each change is made (progress output).

    Raises:
        TopologyConflictError: settings Service Bus cannot change in place differ.
        EntityOperationError: a change failed; the message names the entity. Changes made
            before it stay made; applying again continues from there.
    """
    backend = as_backend(target)
    plan = _plan(backend, topology)
    if plan.conflicts:
        lines = "\n".join(f"  - {describe_change(c)}" for c in plan.conflicts)
        raise TopologyConflictError(
            f"cannot apply the topology to {backend.target}: "
            f"{len(plan.conflicts)} conflict(s), nothing was changed:\n{lines}",
            paths=[c.path for c in plan.conflicts],
        )
    for change in plan.changes:
        _execute(backend, change)
        logger.info("topology: %s", describe_change(change))
        if on_change is not None:
            on_change(change)
    return plan


async def ensure_topology(
    target: NamespaceBackend | ServiceBusAdministrationClient, topology: Topology
) -> Plan:
    """:func:`apply_topology` in a worker thread, for async hosts
    (``floworch worker --auto-create-topology``)."""
    return await asyncio.to_thread(apply_topology, target, topology)


def _execute(backend: NamespaceBackend, change: Change) -> None:
    wanted = change.wanted
    if change.action is Action.REMOVE:
        assert change.topic is not None and change.subscription is not None
        name = change.current.name if change.current else change.path.rsplit("/", 1)[-1]
        with contextlib.suppress(EntityNotFoundError):  # already gone: the wanted state
            backend.delete_rule(change.topic, change.subscription, name)
        return
    if isinstance(wanted, RuleSpec):
        assert change.topic is not None and change.subscription is not None
        topic, sub = change.topic, change.subscription
        if change.action is Action.ADD:
            try:
                backend.create_rule(topic, sub, wanted)
            except EntityExistsError:
                backend.update_rule(topic, sub, wanted)
        else:
            try:
                backend.update_rule(topic, sub, wanted)
            except EntityNotFoundError:
                backend.create_rule(topic, sub, wanted)
        return
    create = change.action is Action.CREATE
    if isinstance(wanted, QueueSpec):
        _create_or_update(create, backend.create_queue, backend.update_queue, wanted)
    elif isinstance(wanted, TopicSpec):
        _create_or_update(create, backend.create_topic, backend.update_topic, wanted)
    elif isinstance(wanted, SubscriptionSpec):
        assert change.topic is not None
        topic = change.topic
        _create_or_update(
            create,
            lambda s: backend.create_subscription(topic, s),
            lambda s: backend.update_subscription(topic, s),
            wanted,
        )


def _create_or_update(
    create: bool, create_fn: Callable[[_S], None], update_fn: Callable[[_S], None], spec: _S
) -> None:
    if not create:
        update_fn(spec)
        return
    try:
        create_fn(spec)
    except EntityExistsError:
        update_fn(spec)
