"""Socket.IO room names, shared by the web app (joins) and the bridge (emits), and the viewed set.

The viewed set tells the bridge which symbol rooms have a socket in some web
process, so it pushes market data only there. It lives in Redis as the sorted
set ``<prefix>viewed``: member = symbol, score = the epoch second the entry
expires. Every web process adds the symbols its sockets joined, with an expiry
a few refreshes ahead, and refreshes them while they stay joined; nothing ever
removes a member another process may still hold. A room left (or a process
that died) simply stops being refreshed and drops out when its score passes.
"""

from __future__ import annotations

import math
from typing import Iterable

import redis

VIEWED_TTL_S = 15.0      # an entry lives this long past its last refresh
VIEWED_REFRESH_S = 5.0   # how often a web process refreshes the rooms it still has


def symbol_room(symbol: str) -> str:
    return f"symbol:{symbol}"


def user_room(user_id: int) -> str:
    return f"user:{user_id}"


def viewed_key(prefix: str) -> str:
    return f"{prefix}viewed"


def publish_viewed(client: redis.Redis, prefix: str, symbols: Iterable[str], now_s: float,
                   ttl_s: float = VIEWED_TTL_S) -> None:
    """Mark ``symbols`` viewed until ``now_s + ttl_s`` and drop the entries already expired.

    ``GT``: an entry only ever moves later, so a process with a shorter TTL never cuts
    another's short. Raises :class:`redis.RedisError` when Redis is away (the caller retries).
    """
    key = viewed_key(prefix)
    expiry = now_s + ttl_s
    pipe = client.pipeline(transaction=False)
    members = {symbol: expiry for symbol in symbols}
    if members:
        pipe.zadd(key, members, gt=True)
    pipe.zremrangebyscore(key, "-inf", now_s)
    # the key itself goes a TTL after the last refresh anywhere (the longest of the processes' TTLs)
    pipe.expire(key, math.ceil(ttl_s), nx=True)
    pipe.expire(key, math.ceil(ttl_s), gt=True)
    pipe.execute()


def read_viewed(client: redis.Redis, prefix: str, now_s: float) -> set[str]:
    """The symbols some web process viewed as of ``now_s`` (one ZRANGEBYSCORE). Raises
    :class:`redis.RedisError` when Redis is away."""
    members = client.zrangebyscore(viewed_key(prefix), now_s, "+inf")
    return {m.decode() if isinstance(m, bytes) else str(m) for m in members}
