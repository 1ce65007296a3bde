"""POST /auth/token: trade an API key for a short-lived access token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from auth import tokens
from auth.context import Caller
from auth.policy import Authenticated
from auth.schemas import TokenRequest
from auth.scopes import ALL, parse_scopes
from server.errors import InvalidRequest, PermissionDenied

router = APIRouter(prefix="/auth", tags=["auth"])


def _scopes(wanted: list[str] | None, caller: Caller) -> tuple[str, ...]:
    if wanted is None:
        return caller.scopes
    scopes = parse_scopes(wanted)
    extra = set(scopes) - set(caller.scopes)
    if extra:
        raise PermissionDenied(
            f"The key does not hold {', '.join(sorted(extra))}; ask for a subset "
            f"of its scopes ({', '.join(caller.scopes)}).",
            param="scopes",
        )
    return scopes


@router.post("/token")
async def create_token(
    request: Request,
    caller: Annotated[Caller, Depends(Authenticated())],
    body: TokenRequest | None = None,
) -> dict:
    """Mint a bearer token for the calling key, optionally with fewer scopes."""
    body = body or TokenRequest()
    if caller.via == "open":
        raise InvalidRequest(
            "This server has no API keys, so it needs no token; create a key "
            "with `hearth keys create` first."
        )
    if caller.via == "jwt":
        # A token minting tokens would outlive the expiry it was given.
        raise InvalidRequest(
            "Send the API key itself (hk-...), not an access token, to get a token."
        )

    authenticator = request.app.state.auth
    ttl_max = authenticator.settings.jwt_ttl_s
    ttl_s = min(body.expires_in or ttl_max, ttl_max)
    scopes = _scopes(body.scopes, caller)
    token, expires_at = tokens.mint(
        secret=authenticator.jwt_secret,
        key_id=caller.key_id,
        tenant=caller.tenant,
        scopes=tuple(s for s in ALL if s in scopes),
        ttl_s=ttl_s,
    )
    return {
        "access_token": token,
        "token_type": "bearer",
        "expires_in": ttl_s,
        "expires_at": expires_at,
        "scope": " ".join(scopes),
    }
