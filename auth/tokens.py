"""Short-lived JWTs minted from an API key, so the key itself need not
travel with every request.

Only HS256 is accepted (an explicit allow-list: a token that names "none"
or an asymmetric algorithm is refused), and the audience, issuer and expiry
are always checked.
"""

from __future__ import annotations

import os
import secrets
import stat
import time
import uuid
from pathlib import Path

import structlog
from jose import JWTError, jwt

from server.errors import AuthenticationError, ConfigError

log = structlog.get_logger(__name__)

ALGORITHMS = ["HS256"]
AUDIENCE = "hearth-api"
ISSUER = "hearth"
SECRET_FILE = "jwt_secret"


def load_secret(*, data_dir: Path, configured: str | None) -> str:
    """HEARTH_JWT_SECRET, else the data directory's secret, made on first use."""
    if configured:
        return configured
    path = data_dir / SECRET_FILE
    if not path.exists():
        _create_secret_file(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{path} is readable by other users (mode {mode:o}); "
            f"run `chmod 600 {path}` and start again."
        )
    return path.read_text().strip()


def _create_secret_file(path: Path) -> None:
    # Written under a temporary name and linked into place, so two processes
    # starting at once agree on one secret and never read a half-written one.
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{SECRET_FILE}.{uuid.uuid4().hex}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")
    try:
        os.link(temp, path)
        log.info("jwt secret created", path=str(path))
    except FileExistsError:
        pass
    finally:
        temp.unlink()


def mint(
    *, secret: str, key_id: str, tenant: str, scopes: tuple[str, ...], ttl_s: int
) -> tuple[str, int]:
    """A signed token for ``key_id``; returns it and its expiry (unix time)."""
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": key_id,
        "tenant": tenant,
        "scope": " ".join(scopes),
        "iat": now,
        "exp": now + ttl_s,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHMS[0]), now + ttl_s


def verify(token: str, *, secret: str) -> dict:
    """The token's claims, or AuthenticationError."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=ALGORITHMS,
            audience=AUDIENCE,
            issuer=ISSUER,
            options={"require_exp": True, "require_aud": True, "require_sub": True},
        )
    except JWTError as exc:
        raise AuthenticationError(
            f"Invalid access token ({exc}); mint a new one at POST /auth/token."
        ) from exc
    if not isinstance(claims.get("tenant"), str):
        raise AuthenticationError(
            "Invalid access token (no tenant); mint a new one at POST /auth/token."
        )
    return claims


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("ey")
