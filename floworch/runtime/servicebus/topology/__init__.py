"""The Service Bus topology manager: the entities the registered flows need, exported as
``topology/servicebus.json``, planned against a namespace and applied to it.

Typical use::

    from floworch.runtime.servicebus.topology import apply_topology, desired_topology

    plan = apply_topology(admin_client, desired_topology(flow_registry))

This module imports no Azure SDK; :mod:`.admin` (``ServiceBusAdministrationClient``) and
:mod:`.arm` (Azure Resource Manager) do.
"""

from floworch.runtime.servicebus.topology.apply import (
    apply_topology,
    as_backend,
    ensure_topology,
    plan_topology,
)
from floworch.runtime.servicebus.topology.backend import NamespaceBackend
from floworch.runtime.servicebus.topology.capacity import (
    MAX_SUBSCRIPTIONS_PER_TOPIC,
    correlation_equivalent,
)
from floworch.runtime.servicebus.topology.desired import FLOW_ID_PROPERTY, desired_topology
from floworch.runtime.servicebus.topology.diff import NamespaceState, compute_plan, read_namespace
from floworch.runtime.servicebus.topology.document import (
    SCHEMA_ID,
    read_document,
    render_document,
    schema_file_for,
    schema_reference,
    schema_text,
    to_document,
)
from floworch.runtime.servicebus.topology.errors import (
    EntityExistsError,
    EntityNotFoundError,
    EntityOperationError,
    TopologyAccessError,
    TopologyConflictError,
    TopologyDocumentError,
    TopologyError,
)
from floworch.runtime.servicebus.topology.memory import InMemoryNamespace
from floworch.runtime.servicebus.topology.model import (
    DEFAULT_RULE_NAME,
    CorrelationFilterSpec,
    FalseFilterSpec,
    QueueSpec,
    RuleSpec,
    SqlFilterSpec,
    SubscriptionSpec,
    TopicSpec,
    Topology,
    TrueFilterSpec,
)
from floworch.runtime.servicebus.topology.plan import (
    Action,
    Change,
    ExtraEntity,
    FieldChange,
    Kind,
    Plan,
    TopicCapacity,
)
from floworch.runtime.servicebus.topology.render import plan_to_json, render_plan_text
from floworch.runtime.servicebus.topology.settings import TopologySettings

__all__ = [
    "DEFAULT_RULE_NAME",
    "FLOW_ID_PROPERTY",
    "MAX_SUBSCRIPTIONS_PER_TOPIC",
    "SCHEMA_ID",
    "Action",
    "Change",
    "CorrelationFilterSpec",
    "EntityExistsError",
    "EntityNotFoundError",
    "EntityOperationError",
    "ExtraEntity",
    "FalseFilterSpec",
    "FieldChange",
    "InMemoryNamespace",
    "Kind",
    "NamespaceBackend",
    "NamespaceState",
    "Plan",
    "QueueSpec",
    "RuleSpec",
    "SqlFilterSpec",
    "SubscriptionSpec",
    "TopicCapacity",
    "TopicSpec",
    "Topology",
    "TopologyAccessError",
    "TopologyConflictError",
    "TopologyDocumentError",
    "TopologyError",
    "TopologySettings",
    "TrueFilterSpec",
    "apply_topology",
    "as_backend",
    "compute_plan",
    "correlation_equivalent",
    "desired_topology",
    "ensure_topology",
    "plan_to_json",
    "plan_topology",
    "read_document",
    "read_namespace",
    "render_document",
    "render_plan_text",
    "schema_file_for",
    "schema_reference",
    "schema_text",
    "to_document",
]
