"""Per-key limits, counted in Redis so every API replica sees the same count.

Requests per minute use the ``limits`` library's moving window on Redis
(the engine under slowapi; see ``RateLimiter`` for why not slowapi's own
decorators). Tokens per minute and per day are fixed-window counters that
each finished request adds to; a key over either is refused until its
window ends. Concurrent requests are a sorted set of request ids, so one
lost by a crashed replica drops out after the request timeout.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass

import redis.asyncio as aioredis
import structlog
from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from server.errors import RateLimited

log = structlog.get_logger(__name__)

LIMIT_NAMES = (
    "requests_per_minute",
    "tokens_per_minute",
    "tokens_per_day",
    "max_concurrent",
)

_DAY_S = 86_400


@dataclass(frozen=True, kw_only=True)
class Limits:
    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_day: int | None = None
    max_concurrent: int | None = None

    @classmethod
    def resolve(cls, given: dict[str, int | None], defaults: Limits) -> Limits:
        """``given`` (key, else tenant) where set, else the server default."""
        fallback = asdict(defaults)
        return cls(**{n: given.get(n) or fallback[n] for n in LIMIT_NAMES})

    @property
    def any(self) -> bool:
        return any(value is not None for value in asdict(self).values())


def _refuse(key_id: str, name: str, limit: int, retry_after: float) -> RateLimited:
    wait = max(1, round(retry_after))
    return RateLimited(
        f"Rate limit reached for key {key_id!r}: {name} is {limit}. "
        f"Retry after {wait} s, or ask an admin to raise the limit.",
        retry_after=wait,
    )


class RateLimiter:
    """Admits a request against its key's limits, and counts what it used.

    slowapi decorates routes and keys limits on the request before any
    dependency has run, so it cannot see which key a bearer token resolves
    to, and its storage calls block the event loop; this uses the asyncio
    API of ``limits``, the library slowapi is built on, directly.
    """

    def __init__(self, *, redis_url: str, namespace: str, slot_ttl_s: float) -> None:
        self._pool = aioredis.ConnectionPool.from_url(redis_url)
        self.redis = aioredis.Redis(connection_pool=self._pool)
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=f"{namespace}:auth:rpm",
            connection_pool=self._pool,
        )
        self._window = MovingWindowRateLimiter(storage)
        self._prefix = f"{namespace}:auth"
        self._slot_ttl_s = slot_ttl_s

    async def close(self) -> None:
        await self.redis.aclose()
        await self._pool.disconnect()

    def _token_keys(self, key_id: str, now: float) -> tuple[str, str]:
        minute, day = int(now // 60), int(now // _DAY_S)
        return (
            f"{self._prefix}:tpm:{key_id}:{minute}",
            f"{self._prefix}:tpd:{key_id}:{day}",
        )

    async def admit(self, *, key_id: str, limits: Limits) -> str | None:
        """Raise RateLimited, or return a concurrency slot to ``release``."""
        if not limits.any:
            return None
        now = time.time()
        await self._check_tokens(key_id, limits, now)
        await self._hit_requests(key_id, limits)
        return await self._take_slot(key_id, limits, now)

    async def _check_tokens(self, key_id: str, limits: Limits, now: float) -> None:
        if limits.tokens_per_minute is None and limits.tokens_per_day is None:
            return
        counts = await self.redis.mget(self._token_keys(key_id, now))
        per_minute, per_day = (int(count or 0) for count in counts)
        if limits.tokens_per_minute and per_minute >= limits.tokens_per_minute:
            raise _refuse(
                key_id, "tokens_per_minute", limits.tokens_per_minute, 60 - now % 60
            )
        if limits.tokens_per_day and per_day >= limits.tokens_per_day:
            raise _refuse(
                key_id, "tokens_per_day", limits.tokens_per_day, _DAY_S - now % _DAY_S
            )

    async def _hit_requests(self, key_id: str, limits: Limits) -> None:
        if limits.requests_per_minute is None:
            return
        item = RateLimitItemPerMinute(limits.requests_per_minute)
        if await self._window.hit(item, key_id):
            return
        stats = await self._window.get_window_stats(item, key_id)
        raise _refuse(
            key_id,
            "requests_per_minute",
            limits.requests_per_minute,
            stats.reset_time - time.time(),
        )

    async def _take_slot(self, key_id: str, limits: Limits, now: float) -> str | None:
        if limits.max_concurrent is None:
            return None
        key = f"{self._prefix}:inflight:{key_id}"
        slot = uuid.uuid4().hex
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zremrangebyscore(key, "-inf", now - self._slot_ttl_s)
            pipe.zadd(key, {slot: now})
            pipe.zcard(key)
            pipe.expire(key, int(self._slot_ttl_s) + 60)
            _, _, count, _ = await pipe.execute()
        if count > limits.max_concurrent:
            await self.redis.zrem(key, slot)
            raise _refuse(key_id, "max_concurrent", limits.max_concurrent, 1)
        return slot

    async def release(self, *, key_id: str, slot: str) -> None:
        await self.redis.zrem(f"{self._prefix}:inflight:{key_id}", slot)

    async def charge(self, *, key_id: str, tokens: int) -> None:
        """Add a finished request's tokens to the key's minute and day."""
        if tokens <= 0:
            return
        per_minute, per_day = self._token_keys(key_id, time.time())
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.incrby(per_minute, tokens)
            pipe.expire(per_minute, 120)
            pipe.incrby(per_day, tokens)
            pipe.expire(per_day, 2 * _DAY_S)
            await pipe.execute()
