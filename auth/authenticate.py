"""Turn an ``Authorization: Bearer ...`` header into a ``Caller``.

The bearer is an API key (``hk-<id>.<secret>``) or a token minted from one
at ``POST /auth/token``. With no active keys in the database, a server on
loopback (or started with ``--allow-insecure-bind``) serves everyone as
tenant ``local`` with every scope and ignores whatever bearer is sent, so
clients that insist on sending a key still work.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import asyncpg
import structlog
from starlette.requests import Request

from auth import audit, keys, tokens
from auth.config import AuthSettings
from auth.context import LOCAL, Caller
from auth.limits import Limits
from auth.scopes import ALL
from server.bind_policy import is_loopback
from server.errors import AuthenticationError, DatabaseUnavailable
from server.settings import Settings

log = structlog.get_logger(__name__)

# Once keys exist, keep believing so for this long without asking again;
# "no keys" is never cached, so the first key protects every replica at once.
_KEYS_EXIST_TTL_S = 5.0
_TOUCH_EVERY_S = 60.0


def bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


class Authenticator:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        settings: Settings,
        auth_settings: AuthSettings,
        jwt_secret: str,
    ) -> None:
        self.pool = pool
        self.settings = auth_settings
        self.jwt_secret = jwt_secret
        self.defaults = Limits(
            requests_per_minute=auth_settings.default_requests_per_minute,
            tokens_per_minute=auth_settings.default_tokens_per_minute,
            tokens_per_day=auth_settings.default_tokens_per_day,
            max_concurrent=auth_settings.default_max_concurrent,
        )
        # Serving without keys is for a machine's own users: never on an
        # address others reach, even if every key was revoked while running.
        self.open_allowed = settings.allow_insecure_bind or is_loopback(settings.host)
        self._keys_seen_at = float("-inf")
        self._touched: dict[str, float] = {}

    async def keys_exist(self) -> bool:
        if time.monotonic() - self._keys_seen_at < _KEYS_EXIST_TTL_S:
            return True
        try:
            found = await keys.active_keys_exist(self.pool)
        except asyncpg.UndefinedTableError as exc:
            raise DatabaseUnavailable(
                "The database has no api_keys table; run `hearth migrate`."
            ) from exc
        if found:
            self._keys_seen_at = time.monotonic()
        return found

    def forget_keys_exist(self) -> None:
        """After a revocation the answer may have become "no"."""
        self._keys_seen_at = float("-inf")

    async def authenticate(self, request: Request) -> Caller:
        if not await self.keys_exist():
            if self.open_allowed:
                return LOCAL
            raise AuthenticationError(
                "This server has no active API keys and listens on a public "
                "address, so it serves nobody; create one with `hearth keys "
                "create --tenant NAME --scopes inference`."
            )

        token = bearer(request)
        if token is None:
            raise AuthenticationError(
                "Missing API key: send 'Authorization: Bearer hk-...' "
                "(the key from `hearth keys create`)."
            )
        try:
            if token.startswith(keys.PREFIX):
                caller = await self._from_key(token)
            elif tokens.looks_like_jwt(token):
                caller = await self._from_jwt(token)
            else:
                raise AuthenticationError(
                    "Incorrect API key provided; Hearth keys start with 'hk-'."
                )
        except AuthenticationError as exc:
            await self._audit_failure(request, token, exc)
            raise
        await self._touch(caller.key_id)
        return caller

    async def _from_key(self, token: str) -> Caller:
        parts = keys.split_key(token)
        row = await keys.find_for_auth(self.pool, parts[0]) if parts else None
        if row is None or not keys.secret_matches(parts[1], row["secret_sha256"]):
            raise AuthenticationError(
                "Incorrect API key provided; check the key or ask an admin for one."
            )
        self._check_usable(row)
        return self._caller(row, scopes=tuple(row["scopes"]), via="key")

    async def _from_jwt(self, token: str) -> Caller:
        claims = tokens.verify(token, secret=self.jwt_secret)
        row = await keys.find_for_auth(self.pool, str(claims["sub"]))
        if row is None or row["tenant"] != claims["tenant"]:
            raise AuthenticationError(
                "Invalid access token: its key no longer exists; use another key."
            )
        # A token never holds more than its key holds now.
        held = set(row["scopes"]) & set(str(claims.get("scope", "")).split())
        self._check_usable(row)
        return self._caller(row, scopes=tuple(s for s in ALL if s in held), via="jwt")

    def _check_usable(self, row: asyncpg.Record) -> None:
        if row["revoked_at"] is not None:
            raise AuthenticationError(
                f"API key {row['id']!r} has been revoked; ask an admin for a new key."
            )
        expires_at = row["expires_at"]
        if expires_at is not None and expires_at <= datetime.now(UTC):
            raise AuthenticationError(
                f"API key {row['id']!r} expired at {expires_at.isoformat()}; "
                "rotate it (`hearth keys rotate`) or create a new one."
            )

    def _caller(self, row: asyncpg.Record, *, scopes, via) -> Caller:
        given = {name: row[name] for name in (
            "requests_per_minute", "tokens_per_minute", "tokens_per_day",
            "max_concurrent",
        )}  # fmt: skip
        return Caller(
            tenant=row["tenant"],
            key_id=row["id"],
            scopes=scopes,
            via=via,
            limits=Limits.resolve(given, self.defaults),
        )

    async def _touch(self, key_id: str | None) -> None:
        now = time.monotonic()
        if key_id is None or now - self._touched.get(key_id, -1e9) < _TOUCH_EVERY_S:
            return
        self._touched[key_id] = now
        try:
            await keys.touch(self.pool, key_id)
        except (OSError, asyncpg.PostgresError) as exc:
            log.warning("last-used time not recorded", key_id=key_id, error=str(exc))

    async def _audit_failure(
        self, request: Request, token: str, exc: AuthenticationError
    ) -> None:
        # The key id (public) when the bearer names one; never the bearer.
        parts = keys.split_key(token)
        key_id = parts[0] if parts else None
        tenant = None
        if key_id is not None:
            row = await keys.find_for_auth(self.pool, key_id)
            tenant = row["tenant"] if row else None
        log.info("authentication failed", key_id=key_id, path=request.url.path)
        await audit.record(
            self.pool,
            actor="anonymous",
            actor_key_id=key_id,
            tenant=tenant,
            action=audit.AUTH_FAILURE,
            target=f"{request.method} {request.url.path}",
            client_ip=client_ip(request),
            outcome="denied",
            detail={"reason": exc.message},
        )
