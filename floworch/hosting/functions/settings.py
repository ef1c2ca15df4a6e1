"""What the Function App takes from its app settings, and the options of the Functions host.

:meth:`FunctionsSettings.from_env` reads exactly the settings of
:mod:`floworch.hosting.app_settings` (the list Bicep deploys), plus the local-only
``ServiceBusConnection`` connection string. Nothing else here touches the environment: the
caller (``function_app.py``, the local runner, tests) passes the mapping.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from floworch.errors import FlowError
from floworch.hosting.app_settings import (
    DEFAULT_FLOWS_PATH,
    DEFAULT_STEPS_TOPIC,
    FUNCTION_APP_SETTINGS,
    SERVICEBUS_CONNECTION,
)
from floworch.runtime.servicebus.config import ServiceBusConnection
from floworch.runtime.servicebus.names import DEFAULT_CRON_QUEUE, DEFAULT_TRIGGERS_TOPIC

_DEFAULTS = {setting.name: setting.default for setting in FUNCTION_APP_SETTINGS}
API_AUTH_MODES = ("appservice", "none")
SETTLEMENT_SETTING = "FLOWORCH_FUNCTIONS_SETTLEMENT"


class FunctionsConfigError(FlowError):
    """The Function App cannot run as configured (the message names the setting to change)."""


class Settlement(StrEnum):
    """How the Service Bus trigger functions settle their messages (docs/functions.md).

    ``AUTO``: the host's auto-complete (generally available): returning completes the message,
    raising abandons it (Service Bus redelivers it at once and dead-letters it at its max
    delivery count, as ``MaxDeliveryCountExceeded``). ``ACTIONS``: the SDK-type binding
    (``azurefunctions-extensions-bindings-servicebus``, preview) with
    ``ServiceBusMessageActions``: complete, abandon and dead-letter exactly as the step
    consumer decides, with its reason, like the worker.
    """

    AUTO = "auto"
    ACTIONS = "actions"


@dataclass(frozen=True)
class FunctionsOptions:
    """Options of the Functions host that are code, not app settings (``build_app`` arguments).

    Attributes:
        settlement: see :class:`Settlement` (the app setting ``FLOWORCH_FUNCTIONS_SETTLEMENT``,
            when set, replaces it in :func:`~floworch.hosting.functions.app_from_environment`).
        hold: how long a trigger function keeps retrying a message in place, with back-off,
            while the store or Service Bus is unavailable, before it gives the message back
            (the host renews the lock meanwhile; keep it below host.json's
            ``maxAutoLockRenewalDuration`` and ``functionTimeout``).
        max_delivery_count: the entities' max delivery count (topology/servicebus.json: 10), so
            the last delivery of a message that keeps failing is known.
        background_schedule: the NCRONTAB schedule of the timer function that reconciles and
            seeds cron chains (six fields, seconds first).
        background_lease: how long one instance holds the background pass's SQL lease; another
            takes over this long after the holder stops.
        lease: the step lease (renewed while a handler runs).
        http_auth_level: the HTTP function's auth level (``function``: a function key).
        cron_queue / triggers_topic: the cron queue and the triggers topic
            (topology/servicebus.json).
    """

    settlement: Settlement = Settlement.AUTO
    hold: timedelta = timedelta(seconds=60)
    max_delivery_count: int | None = 10
    background_schedule: str = "*/10 * * * * *"
    background_lease: timedelta = timedelta(seconds=60)
    lease: timedelta = timedelta(seconds=30)
    http_auth_level: str = "function"
    cron_queue: str = DEFAULT_CRON_QUEUE
    triggers_topic: str = DEFAULT_TRIGGERS_TOPIC


@dataclass(frozen=True)
class FunctionsSettings:
    """The app settings of a floworch Function App (see docs/deploy.md for each).

    Attributes:
        flows_path: ``FLOWORCH_FLOWS`` resolved against the app's root.
        db_url: ``FLOWORCH_DB_URL`` (None: unset; the app starts, its first invocation fails
            with a line saying so).
        connection: the engine's own Service Bus sender: ``FLOWORCH_SERVICEBUS_NAMESPACE``
            (``DefaultAzureCredential``, which ``AZURE_CLIENT_ID`` points at the app's identity),
            else, locally, the ``ServiceBusConnection`` connection string; None when neither.
        steps_topic: ``FLOWORCH_STEPS_TOPIC``.
        api_auth: ``FLOWORCH_API_AUTH``: ``appservice`` or ``none``.
        settlement: ``FLOWORCH_FUNCTIONS_SETTLEMENT`` (None: unset, and
            :attr:`FunctionsOptions.settlement` decides); when set it wins over the option.
        environ: the whole mapping (webhook secrets are named by the flows' ``secretFrom``).
    """

    flows_path: Path
    db_url: str | None
    connection: ServiceBusConnection | None
    steps_topic: str = DEFAULT_STEPS_TOPIC
    api_auth: str = "appservice"
    settlement: Settlement | None = None
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, root: Path) -> FunctionsSettings:
        """Reads the app settings.

        Raises:
            FunctionsConfigError: ``FLOWORCH_API_AUTH`` or ``FLOWORCH_FUNCTIONS_SETTLEMENT``
                has a value the Function App cannot use.
        """
        flows = env.get("FLOWORCH_FLOWS") or _DEFAULTS["FLOWORCH_FLOWS"] or DEFAULT_FLOWS_PATH
        namespace = (env.get("FLOWORCH_SERVICEBUS_NAMESPACE") or "").strip()
        local = (env.get(SERVICEBUS_CONNECTION) or "").strip()
        connection = None
        if namespace:
            connection = ServiceBusConnection(namespace=namespace)
        elif local.lower().startswith("endpoint="):
            connection = ServiceBusConnection(connection_string=local)
        auth = (env.get("FLOWORCH_API_AUTH") or _DEFAULTS["FLOWORCH_API_AUTH"] or "").lower()
        if auth not in API_AUTH_MODES:
            raise FunctionsConfigError(
                f"FLOWORCH_API_AUTH={auth!r} cannot be used on a Function App: use 'appservice' "
                "(behind App Service authentication) or 'none' (function keys are the only gate)"
            )
        return cls(
            flows_path=(root / os.path.expanduser(flows)).resolve(),
            db_url=(env.get("FLOWORCH_DB_URL") or "").strip() or None,
            connection=connection,
            steps_topic=env.get("FLOWORCH_STEPS_TOPIC") or DEFAULT_STEPS_TOPIC,
            api_auth=auth,
            settlement=_settlement(env.get(SETTLEMENT_SETTING)),
            environ=dict(env),
        )


def _settlement(value: str | None) -> Settlement | None:
    text = (value or "").strip().lower()
    if not text:
        return None
    try:
        return Settlement(text)
    except ValueError:
        raise FunctionsConfigError(
            f"{SETTLEMENT_SETTING}={value!r} is not a settlement mode: use 'auto' (the host's "
            "auto-complete, the default) or 'actions' (the SDK-type binding, preview)"
        ) from None
