"""The FastAPI application: stateless, any number of replicas."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from contextlib import asynccontextmanager

import structlog
from fastapi import FastAPI

import auth.routes
from auth.lifecycle import start_auth, stop_auth
from auth.middleware import Accounting
from openai_compat.errors import install_error_handlers
from server import db
from server.dispatch import Dispatcher
from server.http_metrics import HttpMetrics
from server.middleware import RequestContext
from server.model_registry import start_following, stop_following
from server.routes import (
    admin,
    batches,
    chat,
    collections,
    docs,
    embeddings,
    files,
    health,
    jobs,
    metrics,
    models,
    responses,
    ui,
    vector_stores,
)
from server.settings import Settings, get_settings
from server.tracing import instrument_app
from server.usage import flush_usage
from workers.celery_app import configure_celery
from workers.specs import ModelCatalog

log = structlog.get_logger(__name__)

# How long each step of the API's shutdown may take before it is cut off.
SHUTDOWN_STEP_S = 10.0


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    configure_celery(settings)
    app.state.dispatcher = Dispatcher(settings=settings)
    app.state.pool = await db.create_pool(settings.database_url)
    await start_auth(app)
    following = start_following(app.state, settings, app.state.dispatcher.redis)
    log.info("api started", models=[spec.name for spec in app.state.catalog])
    try:
        yield
    finally:
        await _bounded("models follower", stop_following(app.state, following))
        await _bounded("usage records", flush_usage())
        await _bounded("rate limiter", stop_auth(app))
        # A connection still held (a request cut off mid-way) would make a
        # graceful close wait forever; past the bound, close it hard.
        if not await _bounded("database pool", app.state.pool.close()):
            app.state.pool.terminate()
        await _bounded("event streams", app.state.dispatcher.close())
        log.info("api stopped")


async def _bounded(step: str, work: Awaitable[object]) -> bool:
    """Run one shutdown step for at most SHUTDOWN_STEP_S; False if cut off."""
    try:
        await asyncio.wait_for(work, SHUTDOWN_STEP_S)
    except TimeoutError:
        log.warning("shutdown step cut off", step=step, after_s=SHUTDOWN_STEP_S)
        return False
    return True


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    app = FastAPI(
        title="Hearth",
        version="0.1.0",
        summary="OpenAI-compatible API for local models on Celery workers.",
        lifespan=lifespan,
        # Served by server.routes.docs, behind a key like every other route.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.catalog = ModelCatalog.load(
        models_file=settings.models_file, bundled=settings.bundled_models
    )
    install_error_handlers(app)
    app.add_middleware(Accounting)
    app.add_middleware(RequestContext)
    app.add_middleware(HttpMetrics)
    instrument_app(app)
    for module in (health, metrics, models, chat, embeddings, admin, docs, ui):
        app.include_router(module.router)
    for router in auth.routes.routers:
        app.include_router(router)
    for job_module in (jobs, files, batches):
        app.include_router(job_module.router)
    app.include_router(collections.router)
    app.include_router(vector_stores.router)
    app.include_router(responses.router)
    return app
