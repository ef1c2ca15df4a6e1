"""Alembic environment for floworch's schema.

floworch runs migrations programmatically (:mod:`floworch.storage.sql.migrate`), handing over an
open connection in ``config.attributes["connection"]``; there is no ``alembic.ini`` to edit.
SQLite gets batch mode, since it cannot ``ALTER`` most things in place.
"""

from __future__ import annotations

from alembic import context

from floworch.storage.sql.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "floworch migrations run through `floworch db upgrade` or open_store(), "
        "not the alembic command line"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
