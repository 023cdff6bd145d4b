"""PostgresBackend: channels shared by many processes through a PostgreSQL outbox table.

Install with ``pip install "sse-channels[postgres]"``. This package is the only one that
imports psycopg, and ``sse_channels.backends`` does not import it: it loads when you ask
for it.

- [PostgresBackend][sse_channels.backends.postgres.PostgresBackend]: the backend.
- [send_in][sse_channels.backends.postgres.send_in] and
  [send_in_async][sse_channels.backends.postgres.send_in_async]: write an event in the
  application's own transaction; it is delivered if and only if that transaction commits.
- [schema_sql][sse_channels.backends.postgres.schema_sql]: the SQL of the tables, for
  those who create them themselves.
- [PostgresPresence][sse_channels.backends.postgres.PostgresPresence]: presence shared by
  every process, in tables of the same schema (see docs/presence.md).

Events are rows of one table, delivered in the order of ``(txid, id)`` and read only below
the snapshot's ``xmin``, so that a transaction committing late can never slip in behind
what a reader has passed (``_backend``'s docstring has the reasoning). ``NOTIFY`` is only
the doorbell. docs/postgres.md explains the trade-offs.

The modules, each with one job: ``_backend`` (PostgresBackend: lifecycle, reading,
history, trimming), ``_schema``, ``_ids``, ``_rows``, ``_link``, ``_prepared``, ``_sender``,
``_watch``, ``_health``, ``_outbox``, ``_presence`` (PostgresPresence).
"""

from __future__ import annotations

from ._backend import PostgresBackend
from ._outbox import send_in, send_in_async
from ._presence import PostgresPresence
from ._schema import schema_sql

__all__ = ["PostgresBackend", "PostgresPresence", "schema_sql", "send_in", "send_in_async"]

for _obj in (PostgresBackend, PostgresPresence, send_in, send_in_async, schema_sql):
    _obj.__module__ = __name__  # reprs and docs name them where users import them
del _obj
