"""``Callbacks::Deliver``: POST a stored JSON payload to its URL and record the outcome in MySQL.

The job borrows a MySQL connection twice, briefly: once to read the row and once to write the
result. It holds none while the HTTP call is in flight, which is what lets 100 greenlets share
a pool of 20 connections while each waits on a slow callback endpoint.

Rails enqueues it as ``Resque.enqueue(Callbacks::Deliver, callback.id)``; the demo uses
:func:`create_schema` and :func:`insert_callbacks` to make rows to enqueue.
"""
from __future__ import annotations

import json
import logging
import os
import re
from typing import Any, List, Optional

from resque_compat import db, http
from resque_compat.errors import ResqueError
from resque_compat.registry import job

log = logging.getLogger(__name__)

#: The table the job reads and writes. Tests and demos may point it at another table.
TABLE = "callbacks"
SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.sql")
#: last_error is TEXT; keep it readable in resque-web and SQL clients.
MAX_ERROR_CHARS = 2000

_JSON_HEADERS = {"Content-Type": "application/json"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class CallbackNotFound(ResqueError):
    """The job's callback id has no row: deleted, or enqueued with a wrong id."""


def _table(table: Optional[str] = None) -> str:
    name = TABLE if table is None else table
    # The name is put into SQL text (identifiers cannot be query parameters), so allow only a
    # plain identifier.
    if not _IDENTIFIER.match(name):
        raise ValueError(f"callbacks table name {name!r} must be a plain SQL identifier such as callbacks")
    return name


@job("Callbacks::Deliver", queue="callbacks")
def deliver(callback_id: Any) -> None:
    """Send callback ``callback_id`` and record delivered/failed, attempts, last_error.

    A row already delivered is not sent again (a retried job must not duplicate a callback).
    On a non-2xx answer, a timeout or a refused connection the row is marked failed first and
    then the error is raised, so Resque also records the failure and it can be retried.
    """
    table = _table()
    with db.cursor() as cur:
        cur.execute(f"SELECT url, payload, status FROM {table} WHERE id = %s", (callback_id,))
        row = cur.fetchone()
    if row is None:
        raise CallbackNotFound(f"callback {callback_id!r} is not in table {table}: it was deleted "
                               "or enqueued with a wrong id; there is nothing to deliver or retry")
    url, payload, status = row
    if status == "delivered":
        log.info("callback %s was already delivered; not sending it again", callback_id)
        return

    error: Optional[BaseException] = None
    try:
        response = http.post(url, body=(payload or "").encode("utf-8"), headers=_JSON_HEADERS)
    except (http.HTTPTimeout, http.HTTPConnectionError, ValueError) as exc:
        error = exc
    else:
        if not response.ok:
            error = http.HTTPError(response)

    with db.cursor() as cur:
        if error is None:
            cur.execute(
                f"UPDATE {table} SET status = 'delivered', attempts = attempts + 1, "
                "last_error = NULL, delivered_at = UTC_TIMESTAMP() WHERE id = %s",
                (callback_id,),
            )
        else:
            cur.execute(
                f"UPDATE {table} SET status = 'failed', attempts = attempts + 1, "
                "last_error = %s WHERE id = %s",
                (str(error)[:MAX_ERROR_CHARS], callback_id),
            )
    if error is not None:
        raise error


def create_schema(conn: Any, table: Optional[str] = None) -> None:
    """Create the callbacks table (``schema.sql``) on a DB-API connection, named ``table``."""
    name = _table(table)
    with open(SCHEMA_PATH, encoding="utf-8") as fh:
        sql = "\n".join(line for line in fh if not line.lstrip().startswith("--"))
    sql = sql.replace("CREATE TABLE IF NOT EXISTS callbacks (", f"CREATE TABLE IF NOT EXISTS {name} (", 1)
    cur = conn.cursor()
    try:
        for statement in sql.split(";"):
            if statement.strip():
                cur.execute(statement)
    finally:
        cur.close()
    conn.commit()


def insert_callbacks(n: int, url: str, payload: Any = None, table: Optional[str] = None,
                     batch: int = 500) -> List[int]:
    """Insert ``n`` pending callbacks to ``url`` through the pool and return their ids.

    ``payload`` (any JSON value) is stored for every row; by default each row gets
    ``{"event": "demo", "seq": i}``. Ids come from one multi-row INSERT per batch, which InnoDB
    numbers consecutively unless innodb_autoinc_lock_mode=2 and others insert at the same time.
    """
    name = _table(table)
    ids: List[int] = []
    for start in range(0, n, batch):
        count = min(batch, n - start)
        params: List[Any] = []
        for i in range(start, start + count):
            value = payload if payload is not None else {"event": "demo", "seq": i}
            params += (url, json.dumps(value, separators=(",", ":")))
        values = ", ".join(["(%s, %s)"] * count)
        with db.cursor() as cur:
            cur.execute(f"INSERT INTO {name} (url, payload) VALUES {values}", params)
            first = cur.lastrowid
        ids.extend(range(first, first + count))
    return ids
