"""Start and stop the security layer with the API process."""

from __future__ import annotations

from fastapi import FastAPI

from auth.authenticate import Authenticator
from auth.config import AuthSettings
from auth.limits import RateLimiter
from auth.tokens import load_secret

# A concurrency slot whose request never finished (a replica died) is
# dropped this long after the longest a request may take.
_SLOT_GRACE_S = 30


async def start_auth(app: FastAPI) -> None:
    """Needs ``app.state.settings`` and ``app.state.pool``."""
    settings = app.state.settings
    auth_settings = getattr(app.state, "auth_settings", None) or AuthSettings()
    secret = load_secret(
        data_dir=settings.data_dir, configured=auth_settings.jwt_secret
    )
    app.state.auth = Authenticator(
        pool=app.state.pool,
        settings=settings,
        auth_settings=auth_settings,
        jwt_secret=secret,
    )
    app.state.limiter = RateLimiter(
        redis_url=settings.stream_url,
        namespace=settings.namespace,
        slot_ttl_s=settings.request_timeout_s + _SLOT_GRACE_S,
    )


async def stop_auth(app: FastAPI) -> None:
    limiter = getattr(app.state, "limiter", None)
    if limiter is not None:
        await limiter.close()
