"""Per-request accounting: give the request an Account, and when its
response has been sent in full (streams included) free its concurrency slot
and add its tokens to its key's counters."""

from __future__ import annotations

import anyio
import structlog
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Receive, Scope, Send

from auth.context import begin_account

log = structlog.get_logger(__name__)


class Accounting:
    """A pure ASGI middleware, so streamed responses are not buffered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        account = begin_account()
        try:
            await self.app(scope, receive, send)
        finally:
            key_id = account.caller.key_id
            if key_id is not None and (account.slot or account.tokens):
                with anyio.CancelScope(shield=True):
                    await self._settle(scope, key_id, account)

    async def _settle(self, scope: Scope, key_id: str, account) -> None:
        limiter = scope["app"].state.limiter
        try:
            if account.slot:
                await limiter.release(key_id=key_id, slot=account.slot)
            await limiter.charge(key_id=key_id, tokens=account.tokens)
        except (OSError, RedisError) as exc:
            log.warning("usage not counted", key_id=key_id, error=str(exc))
