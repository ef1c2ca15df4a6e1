"""``floworch topology``: export, plan and apply the Service Bus entities the flows need."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from floworch.cli.loading import load_project, registry_of
from floworch.cli.settings import Settings
from floworch.errors import FlowValidationError
from floworch.runtime.servicebus.names import DEFAULT_CRON_QUEUE, DEFAULT_TRIGGERS_TOPIC
from floworch.runtime.servicebus.topology import (
    SCHEMA_ID,
    NamespaceBackend,
    Plan,
    Topology,
    TopologyError,
    TopologySettings,
    apply_topology,
    desired_topology,
    plan_to_json,
    plan_topology,
    read_document,
    render_document,
    render_plan_text,
    schema_file_for,
    schema_reference,
    schema_text,
)
from floworch.runtime.servicebus.topology.render import describe_change

#: ``floworch topology plan`` exits with this when the namespace differs from the topology.
EXIT_CHANGES_PENDING = 2
DEFAULT_OUT = "topology/servicebus.json"
DEFAULT_ARM_ENDPOINT = "https://management.azure.com"
_F = TypeVar("_F", bound=Callable[..., Any])


class _TopologyCommand(click.Command):
    """Every topology error exits 1, as docs/topology.md says (TopologyError is a kind of
    TransportError, which other commands report with exit 3: a namespace that refuses a
    certificate, a conflict or a bad document is no outage to wait out)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TopologyError as exc:
            raise click.ClickException(str(exc)) from exc


class _PlanCommand(_TopologyCommand):
    """Usage errors exit 1 here (not click's 2), so that 2 always means "changes pending"."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            exc.show()
            sys.exit(1)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as exc:
            exc.show()
            sys.exit(1)


def _default_credential() -> Any:
    """The credential for ``--namespace`` and ``--arm`` (environment, managed identity, az)."""
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


# --- what the topology is ---------------------------------------------------------------------


def _source_options(fn: _F) -> _F:
    fn = click.option(
        "--cron-queue",
        envvar="FLOWORCH_CRON_QUEUE",
        show_envvar=True,
        default=DEFAULT_CRON_QUEUE,
        show_default=True,
        help="Name of the cron queue.",
    )(fn)
    fn = click.option(
        "--triggers-topic",
        envvar="FLOWORCH_TRIGGERS_TOPIC",
        show_envvar=True,
        default=DEFAULT_TRIGGERS_TOPIC,
        show_default=True,
        help="Name of the triggers topic.",
    )(fn)
    fn = click.option(
        "--topic",
        help="Name of the steps topic (default: FLOWORCH_STEPS_TOPIC, else flow-steps).",
    )(fn)
    fn = click.option(
        "--flows",
        "flows_path",
        metavar="PATH",
        multiple=True,
        help="Manifest file or directory of the flows (repeatable; default: FLOWORCH_FLOWS).",
    )(fn)
    return fn


def _desired(
    flows_path: tuple[str, ...],
    topic: str | None,
    triggers_topic: str = DEFAULT_TRIGGERS_TOPIC,
    cron_queue: str = DEFAULT_CRON_QUEUE,
) -> Topology:
    env = Settings.from_env()
    paths = list(flows_path) or ([env.flows] if env.flows else [])
    if not paths:
        raise click.UsageError("say which flows: --flows PATH or FLOWORCH_FLOWS")
    for path in paths:
        if not Path(path).exists():
            raise TopologyError(f"--flows: no such file or directory: {path}")
    try:
        manifests, _ = load_project(paths)
        registry = registry_of(manifests)
    except FlowValidationError as exc:
        # Exit 1, not 2: for `plan`, 2 means "changes pending".
        raise TopologyError(str(exc)) from exc
    names = TopologySettings(
        steps_topic=topic or env.steps_topic, triggers_topic=triggers_topic, cron_queue=cron_queue
    )
    return desired_topology(registry, names)


def _wanted(
    flows_path: tuple[str, ...],
    topic: str | None,
    topology_file: str | None,
    triggers_topic: str = DEFAULT_TRIGGERS_TOPIC,
    cron_queue: str = DEFAULT_CRON_QUEUE,
) -> Topology:
    if topology_file is None:
        return _desired(flows_path, topic, triggers_topic, cron_queue)
    if flows_path or topic:
        raise click.UsageError("give either --topology-file or --flows/--topic, not both")
    return read_document(topology_file)


# --- where the namespace is -------------------------------------------------------------------


def _target_options(fn: _F) -> _F:
    options = [
        click.option(
            "--topology-file",
            type=click.Path(dir_okay=False),
            help="Plan/apply this topology document instead of the flows' topology.",
        ),
        click.option(
            "--connection",
            help="Connection string with Manage rights (default: "
            "FLOWORCH_SERVICEBUS_MANAGEMENT_CONNECTION, else FLOWORCH_SERVICEBUS_CONNECTION).",
        ),
        click.option(
            "--namespace",
            help="Namespace host name, used with DefaultAzureCredential "
            "(default: FLOWORCH_SERVICEBUS_NAMESPACE).",
        ),
        click.option(
            "--ca-file",
            type=click.Path(exists=True, dir_okay=False),
            help="CA certificate to trust for TLS (default: FLOWORCH_SERVICEBUS_CA_FILE; the "
            "local emulator prints its own).",
        ),
        click.option(
            "--arm",
            is_flag=True,
            help="Go through Azure Resource Manager (RBAC control plane) instead.",
        ),
        click.option("--subscription-id", help="ARM: the Azure subscription id."),
        click.option("--resource-group", help="ARM: the namespace's resource group."),
        click.option(
            "--namespace-name",
            help="ARM: the namespace name (default: the first label of --namespace).",
        ),
        click.option(
            "--arm-endpoint",
            default=DEFAULT_ARM_ENDPOINT,
            show_default=True,
            help="ARM: the Resource Manager endpoint (sovereign clouds, tests).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _host(namespace: str) -> str:
    host = namespace.strip()
    for scheme in ("sb://", "https://"):
        if host.startswith(scheme):
            host = host[len(scheme) :]
    return host.rstrip("/")


@contextmanager
def _backend(options: dict[str, Any]) -> Iterator[NamespaceBackend]:
    settings = Settings.from_env()
    connection = (
        options["connection"]
        or settings.servicebus_management_connection
        or settings.servicebus_connection
    )
    namespace = options["namespace"] or settings.servicebus_namespace
    # A few quick retries: enough for a blip, without minutes of back-off for a wrong address.
    transport: dict[str, Any] = {"retry_total": 3, "retry_backoff_factor": 0.4}
    ca_file = options["ca_file"] or settings.servicebus_ca_file
    if ca_file:
        if not Path(ca_file).is_file():
            raise TopologyError(f"FLOWORCH_SERVICEBUS_CA_FILE: no such file: {ca_file}")
        transport["connection_verify"] = ca_file
    with ExitStack() as stack:
        if options["arm"]:
            yield _arm_backend(options, namespace, transport, stack)
            return
        from azure.servicebus.management import ServiceBusAdministrationClient

        from floworch.runtime.servicebus.topology.admin import AdminNamespace

        if connection and (options["connection"] or not options["namespace"]):
            try:
                client = ServiceBusAdministrationClient.from_connection_string(
                    connection, **transport
                )
            except ValueError as exc:
                raise TopologyError(f"invalid Service Bus connection string: {exc}") from exc
        elif namespace:
            credential = _default_credential()
            stack.callback(credential.close)
            client = ServiceBusAdministrationClient(_host(namespace), credential, **transport)
        else:
            raise click.UsageError(
                "say which namespace: --connection (or FLOWORCH_SERVICEBUS_CONNECTION), "
                "--namespace (or FLOWORCH_SERVICEBUS_NAMESPACE), or --arm with "
                "--subscription-id, --resource-group and --namespace-name"
            )
        stack.enter_context(client)
        yield AdminNamespace(client)


def _arm_backend(
    options: dict[str, Any], namespace: str | None, transport: dict[str, Any], stack: ExitStack
) -> NamespaceBackend:
    name = options["namespace_name"] or (_host(namespace).split(".")[0] if namespace else None)
    missing = [
        flag
        for flag, value in (
            ("--subscription-id", options["subscription_id"]),
            ("--resource-group", options["resource_group"]),
            ("--namespace-name", name),
        )
        if not value
    ]
    if missing or name is None:
        raise click.UsageError(f"--arm needs {', '.join(missing)}")
    from azure.mgmt.servicebus import ServiceBusManagementClient

    from floworch.runtime.servicebus.topology.arm import ArmNamespace

    credential = _default_credential()
    stack.callback(credential.close)
    client = ServiceBusManagementClient(
        credential, options["subscription_id"], base_url=options["arm_endpoint"], **transport
    )
    stack.enter_context(client)
    return ArmNamespace(client, options["resource_group"], name)


# --- commands ---------------------------------------------------------------------------------


@click.group("topology")
def topology_group() -> None:
    """The Service Bus entities the flows need: export, plan, apply.

    The topology is the steps and triggers topics with one subscription per flow (a correlation
    filter on FlowId; the triggers topic also has the catch-all 'unrouted'), the cron queue, and
    every queue a ServiceBus trigger names.
    Entities the topology does not declare are reported, never deleted.
    """


@topology_group.command("export", cls=_TopologyCommand)
@_source_options
@click.option(
    "--out",
    default=DEFAULT_OUT,
    show_default=True,
    help="Where to write the document; '-' writes to standard output.",
)
@click.option(
    "--schema-ref",
    help="The document's $schema (default: a copy of the JSON Schema written beside --out, "
    "e.g. topology/servicebus.schema.json; with --out - the schema's id; '' for none).",
)
@click.option(
    "--check", is_flag=True, help="Write nothing; exit 1 when --out (or its schema) is stale."
)
def export_command(
    flows_path: tuple[str, ...],
    topic: str | None,
    triggers_topic: str,
    cron_queue: str,
    out: str,
    schema_ref: str | None,
    check: bool,
) -> None:
    """Write the flows' topology as topology/servicebus.json (the emulator and Bicep read it).

    Unless --schema-ref is given, the JSON Schema is written beside the document and $schema
    names it, so editors complete the document and its text does not depend on where floworch
    is installed (`--check` passes on any machine).
    """
    desired = _desired(flows_path, topic, triggers_topic, cron_queue)
    if out == "-":
        text = render_document(desired, schema=SCHEMA_ID if schema_ref is None else schema_ref)
        click.echo(text, nl=False)
        return
    path = Path(out)
    files = {path: render_document(desired, schema=schema_ref or schema_reference(path))}
    if schema_ref == "":
        files[path] = render_document(desired, schema=None)
    elif schema_ref is None:
        files[schema_file_for(path)] = schema_text()
    if check:
        stale = [
            str(p) for p, text in files.items() if not p.exists() or p.read_text("utf-8") != text
        ]
        if stale:
            raise TopologyError(
                f"{' and '.join(stale)} out of date with the flows; run "
                f"`floworch topology export --out {out}`"
            )
        click.echo(f"{out} is up to date")
        return
    for target, text in files.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    subs = sum(len(t.subscriptions) for t in desired.topics)
    also = f" (and its schema {schema_file_for(path)})" if schema_ref is None else ""
    click.echo(
        f"wrote {out}{also}: {len(desired.topics)} topic(s), {subs} subscription(s), "
        f"{len(desired.queues)} queue(s)"
    )


@topology_group.command("plan", cls=_PlanCommand)
@_source_options
@_target_options
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan_command(
    flows_path: tuple[str, ...],
    topic: str | None,
    triggers_topic: str,
    cron_queue: str,
    as_json: bool,
    **options: Any,
) -> None:
    """Compare the namespace with the topology and print what apply would change.

    Exit code: 0 when nothing would change, 2 when changes are pending (conflicts included),
    1 on any error (as `terraform plan -detailed-exitcode`).
    """
    desired = _wanted(flows_path, topic, options.pop("topology_file"), triggers_topic, cron_queue)
    with _backend(options) as backend:
        plan = plan_topology(backend, desired)
    _print_plan(plan, as_json)
    if plan.pending:
        sys.exit(EXIT_CHANGES_PENDING)


@topology_group.command("apply", cls=_TopologyCommand)
@_source_options
@_target_options
@click.option("--json", "as_json", is_flag=True, help="Print the applied plan as JSON.")
def apply_command(
    flows_path: tuple[str, ...],
    topic: str | None,
    triggers_topic: str,
    cron_queue: str,
    as_json: bool,
    **options: Any,
) -> None:
    """Create or update the entities so the namespace matches the topology.

    Idempotent: a second apply changes nothing. Nothing is changed when a setting Service Bus
    cannot change in place differs (a conflict; see `plan`).
    """
    desired = _wanted(flows_path, topic, options.pop("topology_file"), triggers_topic, cron_queue)
    echo = (lambda _change: None) if as_json else (lambda c: click.echo(describe_change(c)))
    with _backend(options) as backend:
        plan = apply_topology(backend, desired, on_change=echo)
    if as_json:
        click.echo(json.dumps(plan_to_json(plan), indent=2))
        return
    if plan.pending:
        click.echo(f"Applied to {plan.target}: {plan.summary()}.")
    else:
        click.echo(f"No changes: {plan.target} matches the topology.")
    for warning in plan.warnings:
        click.echo(f"warning: {warning}", err=True)


def _print_plan(plan: Plan, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(plan_to_json(plan), indent=2))
        return
    click.echo(render_plan_text(plan), nl=False)
    if plan.pending and not plan.conflicts:
        click.echo("Run `floworch topology apply` with the same options to make these changes.")
    elif plan.conflicts:
        click.echo("apply refuses to run until the conflicts are resolved.")
