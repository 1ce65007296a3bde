"""Shared request dependencies, as Annotated aliases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from server.dispatch import Dispatcher
from server.model_registry import CatalogReloader
from server.settings import Settings
from workers.specs import ModelCatalog


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _catalog(request: Request) -> ModelCatalog:
    return request.app.state.catalog


def _dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


def _model_reloader(request: Request) -> CatalogReloader:
    return request.app.state.model_reloader


def _pool(request: Request) -> Any:
    return request.app.state.pool


def _request_id(request: Request) -> str:
    return request.state.request_id


SettingsDep = Annotated[Settings, Depends(_settings)]
CatalogDep = Annotated[ModelCatalog, Depends(_catalog)]
DispatcherDep = Annotated[Dispatcher, Depends(_dispatcher)]
ModelReloaderDep = Annotated[CatalogReloader, Depends(_model_reloader)]
PoolDep = Annotated[Any, Depends(_pool)]
RequestIdDep = Annotated[str, Depends(_request_id)]
