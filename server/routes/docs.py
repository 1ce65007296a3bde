"""The OpenAPI schema and its browsable page, behind a key like any route.

FastAPI's own /openapi.json and /docs cannot carry a dependency, so the app
turns them off and serves them here.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from auth.policy import Authenticated

router = APIRouter(
    tags=["docs"], include_in_schema=False, dependencies=[Depends(Authenticated())]
)


@router.get("/openapi.json")
async def openapi_schema(request: Request) -> JSONResponse:
    """The OpenAPI description of every route."""
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def docs_page(request: Request) -> HTMLResponse:
    """Swagger UI over /openapi.json."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title=request.app.title)
