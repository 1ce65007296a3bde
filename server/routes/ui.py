"""GET /ui: the dashboard, static files from the server.ui package.

The page holds no data: it asks the admin API and /v1 for everything, with
the key the user types in, so it can be public like the health probes.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from auth.policy import Public
from server.errors import NotFound

router = APIRouter(tags=["ui"], dependencies=[Depends(Public())])

_ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# Scripts and styles from this server only; the page calls only this API.
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> Response:
    # A fixed list, so no path from the URL ever reaches the file system.
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise NotFound(f"No dashboard file {name!r}; open /ui.", param="asset")
    body = files("server.ui").joinpath(name).read_bytes()
    return Response(body, media_type=media_type, headers=_HEADERS)


@router.get("/ui", include_in_schema=False)
async def dashboard() -> Response:
    """The dashboard page."""
    return _asset("index.html")


@router.get("/ui/{asset}", include_in_schema=False)
async def dashboard_asset(asset: str) -> Response:
    """The dashboard's script and style sheet."""
    return _asset(asset)
