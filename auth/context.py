"""Who is calling, for the length of one request.

The accounting middleware gives each request an ``Account``; the route's
policy fills in the caller. Usage records read the tenant and key from
here because they are built deep inside the generation relay, far from
the request that knows who asked.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Literal

from auth.limits import Limits
from auth.scopes import ALL

LOCAL_TENANT = "local"


@dataclass(frozen=True, kw_only=True)
class Caller:
    tenant: str
    key_id: str | None
    scopes: tuple[str, ...]
    # "open": no keys exist and the server serves everyone as ``local``.
    via: Literal["open", "key", "jwt"]
    limits: Limits = field(default_factory=Limits)


LOCAL = Caller(tenant=LOCAL_TENANT, key_id=None, scopes=ALL, via="open")


@dataclass(kw_only=True)
class Account:
    """Mutable per-request state shared by the policy, usage and middleware."""

    caller: Caller = LOCAL
    tokens: int = 0
    slot: str | None = None
    admitted: bool = False


_account: ContextVar[Account | None] = ContextVar("hearth_account", default=None)


def begin_account() -> Account:
    account = Account()
    _account.set(account)
    return account


def current_account() -> Account | None:
    return _account.get()


def current_tenant() -> str:
    account = _account.get()
    return account.caller.tenant if account else LOCAL_TENANT


def current_key_id() -> str | None:
    account = _account.get()
    return account.caller.key_id if account else None


def add_tokens(tokens: int) -> None:
    """Count a finished request's tokens against its key's quotas."""
    account = _account.get()
    if account is not None:
        account.tokens += tokens
