"""Django's PostgreSQL backend with a health check that costs no round trip.

CONN_HEALTH_CHECKS makes Django send `SELECT 1` before the first query of
every request, so that a connection the server dropped (a restart, an idle
timeout) is replaced instead of failing the request: one round trip more on
each till call. A server that ends a session closes its socket, or sends a
FATAL message first, so an idle connection's socket becomes readable: that is
checked without waiting (poll with no timeout), and only then is `SELECT 1`
asked. A connection cut without a word (a dead host) is caught as before, by
the failed query and Django's check after a request with errors.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg import pq


def _looks_dropped(connection: base.Database.Connection) -> bool:
    pgconn = connection.pgconn
    if pgconn.status != pq.ConnStatus.OK:
        return True
    if pgconn.transaction_status != pq.TransactionStatus.IDLE:
        return True  # between requests a connection is idle; anything else, ask
    poller = select.poll()
    poller.register(pgconn.socket, select.POLLIN)
    return bool(poller.poll(0))


class DatabaseWrapper(base.DatabaseWrapper):
    def close_if_health_check_failed(self) -> None:
        if (
            self.connection is None
            or self.pool
            or not self.health_check_enabled
            or self.health_check_done
        ):
            return
        if _looks_dropped(self.connection) and not self.is_usable():
            self.close()
        self.health_check_done = True
