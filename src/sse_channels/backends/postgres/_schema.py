"""The tables, and every SQL statement the backend runs, for one schema name.

Three tables in the schema (``sse`` by default):

- ``events``: the outbox. ``id`` is an identity column, ``txid`` the inserting
  transaction's ``pg_current_xact_id()``; the primary key ``(txid, id)`` is the delivery
  order. ``data`` is ``bytea`` (UTF-8) because ``text`` cannot hold NUL, which SSE data
  may contain. ``token`` marks the rows of one send of the backend's own, so that a send
  retried after a lost reply finds them instead of storing them twice.
- ``trims``: per channel, the newest ``(txid, id)`` that retention trimming deleted, and a
  ``seq`` that grows with every trim: readers that had not read that far report a gap.
- ``meta``: the epoch label (a new one when the tables are made anew: the log was lost).

Statements are plain ``str`` with ``%s`` placeholders, so that a Django cursor (psycopg 2
or 3) runs them as well as psycopg does. The schema name is checked to be a plain
lower-case identifier, so it is written into the SQL unquoted and cannot inject anything.

Pure: no I/O; imports nothing of ours.
"""

from __future__ import annotations

import re
from typing import final

__all__ = ["SCHEMA_VERSION", "Sql", "check_schema", "schema_sql"]

#: Bumped when the tables change shape (stored in ``meta`` for future migrations).
SCHEMA_VERSION = "1"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,47}")
#: ``pg_snapshot_xmin`` of the statement's snapshot: every transaction below it has ended.
_XMIN = "pg_snapshot_xmin(pg_current_snapshot())"


def check_schema(schema: object) -> str:
    """``schema`` if it is a lower-case SQL identifier of at most 48 characters.

    Raises:
        TypeError: not a ``str``.
        ValueError: not such an identifier.
    """
    if type(schema) is not str:
        raise TypeError(f"schema must be str, not {type(schema).__name__}")
    if not _IDENTIFIER.fullmatch(schema):
        raise ValueError(
            f"schema must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, at most 48 "
            f"characters), not {schema!r}"
        )
    return schema


def schema_sql(schema: str = "sse") -> str:
    """The SQL that creates the backend's tables in ``schema``, idempotently.

    The backend runs it itself when it starts (under an advisory lock, so that processes
    starting together do not collide). Run it yourself instead, e.g. from a migration,
    when the application's database role may not create tables; the epoch row it inserts
    gets its random label from ``gen_random_uuid()``.

    Raises:
        TypeError, ValueError: ``schema`` is not a lower-case SQL identifier.
    """
    s = check_schema(schema)
    return f"""\
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.events (
    id bigint GENERATED ALWAYS AS IDENTITY,
    txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
    channel text NOT NULL,
    data bytea NOT NULL,
    event text,
    retry integer,
    event_id text,
    token text,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (txid, id)
);
CREATE INDEX IF NOT EXISTS events_by_channel ON {s}.events (channel, txid, id);
CREATE TABLE IF NOT EXISTS {s}.trims (
    channel text PRIMARY KEY,
    txid xid8 NOT NULL,
    id bigint NOT NULL,
    seq bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS trims_by_seq ON {s}.trims (seq);
CREATE SEQUENCE IF NOT EXISTS {s}.trim_seq;
CREATE TABLE IF NOT EXISTS {s}.meta (
    name text PRIMARY KEY,
    value text NOT NULL
);
INSERT INTO {s}.meta (name, value)
    VALUES ('epoch', substr(replace(gen_random_uuid()::text, '-', ''), 1, 8)),
           ('version', '{SCHEMA_VERSION}')
    ON CONFLICT (name) DO NOTHING;
"""


def _numbered(statement: str) -> str:
    """``statement`` with its ``%s`` placeholders numbered ``$1``, ``$2``... in order."""
    parts = statement.split("%s")
    return "".join(f"{part}${n}" for n, part in enumerate(parts[:-1], 1)) + parts[-1]


@final
class Sql:
    """Every statement of the backend for one schema (see the module docstring)."""

    __slots__ = (
        "doorbell",
        "ensure",
        "find_token",
        "history",
        "insert_many",
        "insert_one",
        "insert_prepared",
        "insert_single",
        "read",
        "schema",
        "skim",
        "tail",
        "trim_age",
        "trim_count",
    )

    def __init__(self, schema: str) -> None:
        s = self.schema = check_schema(schema)
        #: The NOTIFY channel: rung by every insert, in its transaction (so at commit).
        self.doorbell = f"sse_channels.{s}"
        #: Creates the tables (under a lock) and answers the epoch label.
        self.ensure = (
            f"SELECT pg_advisory_xact_lock(hashtext('sse_channels.schema.{s}'));\n" + schema_sql(s)
        )
        returning = f"""\
SELECT ins.txid::text, ins.id, meta.value
FROM ins CROSS JOIN (
    SELECT value, pg_notify('{self.doorbell}', '') FROM {s}.meta WHERE name = 'epoch'
) AS meta (value, rang)
ORDER BY ins.id"""
        #: One event (``send_in``): channel, data, event, retry, event_id.
        self.insert_one = f"""\
WITH ins AS (
    INSERT INTO {s}.events (channel, data, event, retry, event_id)
    VALUES (%s, %s, %s, %s, %s)
    RETURNING txid, id
)
{returning}"""
        #: One send of the backend's own: channel, data, event, retry, event_id, token.
        self.insert_single = f"""\
WITH ins AS (
    INSERT INTO {s}.events (channel, data, event, retry, event_id, token)
    VALUES (%s, %s, %s, %s, %s, %s)
    RETURNING txid, id
)
{returning}"""
        #: ``insert_single`` with ``$n`` placeholders, for ``_prepared.Prepared``.
        self.insert_prepared = _numbered(self.insert_single)
        #: The backend's own sends, batched: arrays of each column, and the batch's token.
        self.insert_many = f"""\
WITH ins AS (
    INSERT INTO {s}.events (channel, data, event, retry, event_id, token)
    SELECT c, d, e, r, i, %s
    FROM unnest(%s::text[], %s::bytea[], %s::text[], %s::int[], %s::text[])
        WITH ORDINALITY AS u (c, d, e, r, i, o)
    ORDER BY o
    RETURNING txid, id
)
{returning}"""
        #: After a lost reply: the rows a token stored, if any, after a known position.
        self.find_token = f"""\
SELECT txid::text, id FROM {s}.events
WHERE (txid, id) > (%s::xid8, %s) AND token = %s ORDER BY txid, id"""
        #: The epoch, the newest final position, and the newest trim: where a reader starts.
        self.tail = f"""\
SELECT (SELECT value FROM {s}.meta WHERE name = 'epoch'),
       (SELECT txid::text || '.' || id FROM {s}.events
         WHERE txid < {_XMIN} ORDER BY txid DESC, id DESC LIMIT 1),
       (SELECT coalesce(max(seq), 0) FROM {s}.trims)"""
        #: With nothing watched: how many final rows each channel got after the position
        #: (for trimming), and the newest of them (kind 0: a channel's count, 1: the
        #: newest position, 2: the epoch label, 3: the newest trim's seq).
        self.skim = f"""\
WITH new AS (
    SELECT txid, id, channel FROM {s}.events
    WHERE (txid, id) > (%s::xid8, %s) AND txid < {_XMIN}
    ORDER BY txid, id LIMIT %s
)
SELECT 0, channel, count(*) FROM new GROUP BY channel
UNION ALL
SELECT 1, (SELECT txid::text || '.' || id FROM new ORDER BY txid DESC, id DESC LIMIT 1), 0
UNION ALL
SELECT 2, value, 0 FROM {s}.meta WHERE name = 'epoch'
UNION ALL
SELECT 3, NULL, coalesce(max(seq), 0) FROM {s}.trims"""
        #: One read, in one snapshot: kind 0 = final events after the position (at most
        #: the limit), 1 = trims newer than the seq, 2 = committed rows held back by an
        #: older transaction still running, 3 = the epoch label.
        self.read = f"""\
SELECT 0, e.txid::text, e.id, e.channel, e.data, e.event, e.retry, e.event_id
FROM (SELECT * FROM {s}.events
      WHERE (txid, id) > (%s::xid8, %s) AND txid < {_XMIN}
      ORDER BY txid, id LIMIT %s) AS e
UNION ALL
SELECT 1, txid::text, id, channel, NULL, NULL, NULL, seq::text
FROM {s}.trims WHERE seq > %s
UNION ALL
SELECT 2, {_XMIN}::text, 0, '', NULL, NULL, NULL, NULL
WHERE (SELECT txid FROM {s}.events ORDER BY txid DESC LIMIT 1) >= {_XMIN}
UNION ALL
SELECT 3, '0', 0, value, NULL, NULL, NULL, NULL FROM {s}.meta WHERE name = 'epoch'"""
        #: One channel's retained events in a range, and how far it is gone: kind 0 =
        #: events, 1 = the trim watermark, 2 = the newest row beyond the newest ``maxlen``,
        #: 3 = present if the range is final (its end is below ``xmin``).
        self.history = f"""\
SELECT 0, e.txid::text, e.id, e.data, e.event, e.retry, e.event_id
FROM (SELECT * FROM {s}.events
      WHERE channel = %s AND (txid, id) > (%s::xid8, %s) AND (txid, id) <= (%s::xid8, %s)
      ORDER BY txid, id) AS e
UNION ALL
SELECT 1, txid::text, id, NULL, NULL, NULL, NULL FROM {s}.trims WHERE channel = %s
UNION ALL
SELECT 2, txid::text, id, NULL, NULL, NULL, NULL
FROM (SELECT txid, id FROM {s}.events WHERE channel = %s
      ORDER BY txid DESC, id DESC OFFSET %s LIMIT 1) AS beyond
UNION ALL
SELECT 3, NULL, NULL, NULL, NULL, NULL, NULL WHERE %s::xid8 < {_XMIN}"""
        trims = f"""\
last AS (
    SELECT DISTINCT ON (channel) channel, txid, id FROM gone
    ORDER BY channel, txid DESC, id DESC
)
INSERT INTO {s}.trims (channel, txid, id, seq)
SELECT channel, txid, id, nextval('{s}.trim_seq') FROM last
ON CONFLICT (channel) DO UPDATE SET txid = excluded.txid, id = excluded.id, seq = excluded.seq
WHERE (trims.txid, trims.id) < (excluded.txid, excluded.id)"""
        lock = f"SELECT pg_try_advisory_xact_lock(hashtext('sse_channels.trim.{s}')) AS ok"
        #: Delete each listed channel's final rows beyond its newest ``maxlen``.
        self.trim_count = f"""\
WITH lock AS ({lock}),
cut AS (
    SELECT c.channel, t.txid, t.id
    FROM unnest(%s::text[]) AS c (channel)
    CROSS JOIN LATERAL (
        SELECT txid, id FROM {s}.events AS e
        WHERE e.channel = c.channel AND e.txid < {_XMIN}
        ORDER BY txid DESC, id DESC OFFSET %s LIMIT 1
    ) AS t
    WHERE (SELECT ok FROM lock)
),
gone AS (
    DELETE FROM {s}.events AS e USING cut
    WHERE e.channel = cut.channel AND (e.txid, e.id) <= (cut.txid, cut.id)
    RETURNING e.channel, e.txid, e.id
),
{trims}"""
        #: Delete final rows older than a number of seconds (at most a limit per run).
        self.trim_age = f"""\
WITH lock AS ({lock}),
old AS (
    SELECT txid, id FROM {s}.events
    WHERE txid < {_XMIN} AND created_at < now() - make_interval(secs => %s)
      AND (SELECT ok FROM lock)
    ORDER BY txid, id LIMIT %s
),
gone AS (
    DELETE FROM {s}.events AS e USING old
    WHERE (e.txid, e.id) = (old.txid, old.id)
    RETURNING e.channel, e.txid, e.id
),
{trims}"""
