"""Settings from the environment (``FLOWORCH_`` prefix): read here and in hosting only."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """What the CLI and hosts take from the environment.

    Attributes:
        db_url: ``FLOWORCH_DB_URL``; None means the embedded default (SQLite under .floworch/).
        flows: ``FLOWORCH_FLOWS``, a module or path that registers flows and handlers.
        runtime: ``FLOWORCH_RUNTIME``: ``memory`` or ``servicebus``.
        servicebus_connection: ``FLOWORCH_SERVICEBUS_CONNECTION``.
        servicebus_namespace: ``FLOWORCH_SERVICEBUS_NAMESPACE`` (managed identity).
        servicebus_management_connection: ``FLOWORCH_SERVICEBUS_MANAGEMENT_CONNECTION``, the
            management endpoint when it differs from the data plane's (the local emulator).
        servicebus_ca_file: ``FLOWORCH_SERVICEBUS_CA_FILE``, a CA certificate to trust for the
            management endpoint (the local emulator's).
        steps_topic: ``FLOWORCH_STEPS_TOPIC`` (default ``flow-steps``).
        debug: ``FLOWORCH_DEBUG`` set to 1/true/yes: print tracebacks of unexpected errors.
    """

    db_url: str | None = None
    flows: str | None = None
    runtime: str = "memory"
    servicebus_connection: str | None = None
    servicebus_namespace: str | None = None
    servicebus_management_connection: str | None = None
    servicebus_ca_file: str | None = None
    steps_topic: str = "flow-steps"
    debug: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Reads the ``FLOWORCH_*`` variables."""
        env = os.environ if env is None else env
        return cls(
            db_url=env.get("FLOWORCH_DB_URL") or None,
            flows=env.get("FLOWORCH_FLOWS") or None,
            runtime=env.get("FLOWORCH_RUNTIME", "memory") or "memory",
            servicebus_connection=env.get("FLOWORCH_SERVICEBUS_CONNECTION") or None,
            servicebus_namespace=env.get("FLOWORCH_SERVICEBUS_NAMESPACE") or None,
            servicebus_management_connection=(
                env.get("FLOWORCH_SERVICEBUS_MANAGEMENT_CONNECTION") or None
            ),
            servicebus_ca_file=env.get("FLOWORCH_SERVICEBUS_CA_FILE") or None,
            steps_topic=env.get("FLOWORCH_STEPS_TOPIC") or "flow-steps",
            debug=env.get("FLOWORCH_DEBUG", "").strip().lower() in ("1", "true", "yes"),
        )

    def database_url(self, override: str | None = None, cwd: Path | None = None) -> str:
        """The database to use: ``--db``, else ``FLOWORCH_DB_URL``, else SQLite under .floworch/."""
        if override:
            return override
        if self.db_url:
            return self.db_url
        from floworch.storage.sql.urls import default_database_url

        return default_database_url(cwd or Path.cwd())
