"""The SQL store: the store port for SQLite, PostgreSQL and SQL Server (SQLAlchemy Core).

Open one with :func:`floworch.storage.factory.open_store`; :class:`SqlStore` is the adapter and
:class:`SqlStoreOptions` its connection settings.
"""

from floworch.storage.sql.engine import SqlStoreOptions
from floworch.storage.sql.store import SqlStore
from floworch.storage.sql.urls import default_database_url, to_async_url, to_driver_url

__all__ = [
    "SqlStore",
    "SqlStoreOptions",
    "default_database_url",
    "to_async_url",
    "to_driver_url",
]
