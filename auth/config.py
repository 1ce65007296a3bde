"""Settings of the security layer, read from ``HEARTH_*`` like the rest.

Kept apart from ``server.settings`` so the CLI can create keys without
loading the serving settings' validators for brokers and models.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class AuthSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEARTH_", extra="ignore")

    # Several API replicas must share it; else each process reads the one in
    # the data directory (created on first start).
    jwt_secret: str | None = Field(None, min_length=32)
    jwt_ttl_s: int = Field(900, ge=60, le=86_400)

    # Defaults for keys whose key and tenant rows leave a limit empty;
    # None means unlimited.
    default_requests_per_minute: int | None = Field(None, ge=1)
    default_tokens_per_minute: int | None = Field(None, ge=1)
    default_tokens_per_day: int | None = Field(None, ge=1)
    default_max_concurrent: int | None = Field(None, ge=1)
