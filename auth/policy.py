"""What each route requires of its caller, declared on every route.

    router = APIRouter(dependencies=[Depends(Scoped(INFERENCE))])
    async def handler(caller: Annotated[Caller, Depends(Scoped(ADMIN))]): ...

``tests/test_auth_scopes.py`` walks the app's routes and fails for any
route that declares no policy, so a new route cannot ship unprotected.
"""

from __future__ import annotations

from starlette.requests import Request

from auth.context import Account, Caller, current_account
from auth.scopes import grants
from server.errors import PermissionDenied


class Policy:
    """Base of the route policies; ``scopes`` is what a route asks for."""

    scopes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(map(repr, self.scopes))})"


class Public(Policy):
    """No key needed: health probes, and nothing that reads or changes data."""

    async def __call__(self) -> None:
        return None


class Authenticated(Policy):
    """Any valid key, whatever its scopes."""

    async def __call__(self, request: Request) -> Caller:
        account = _account(request)
        if not account.admitted:
            account.caller = await request.app.state.auth.authenticate(request)
            self._check(account.caller)
            await _admit(request, account)
        else:
            self._check(account.caller)
        return account.caller

    def _check(self, caller: Caller) -> None:
        return None


class Scoped(Authenticated):
    """A valid key holding any one of ``scopes`` (admin holds them all)."""

    def __init__(self, *scopes: str) -> None:
        if not scopes:
            raise ValueError("Scoped needs at least one scope; use Authenticated")
        self.scopes = scopes

    def _check(self, caller: Caller) -> None:
        if grants(caller.scopes, self.scopes):
            return
        held = ", ".join(caller.scopes) or "none"
        raise PermissionDenied(
            f"This key's scopes ({held}) do not include "
            f"{' or '.join(map(repr, self.scopes))}, which this route needs; "
            "use a key that has it (`hearth keys create --scopes ...`)."
        )


def _account(request: Request) -> Account:
    account = current_account()
    if account is None:
        raise RuntimeError("auth.middleware.Accounting is not installed")
    return account


async def _admit(request: Request, account: Account) -> None:
    """Apply the key's limits once per request, after its scope passed."""
    account.admitted = True
    key_id = account.caller.key_id
    if key_id is None:
        return
    limiter = request.app.state.limiter
    account.slot = await limiter.admit(key_id=key_id, limits=account.caller.limits)
