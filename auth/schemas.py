"""Request bodies of the key, token and audit routes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LimitsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(None, ge=1, le=1_000_000)
    tokens_per_minute: int | None = Field(None, ge=1, le=2_000_000_000)
    tokens_per_day: int | None = Field(None, ge=1, le=2_000_000_000)
    max_concurrent: int | None = Field(None, ge=1, le=100_000)


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    scopes: list[str] = Field(min_length=1, max_length=4)
    # Only a server without keys (bootstrapping) may name another tenant.
    tenant: str | None = Field(None, max_length=64)
    name: str | None = Field(None, max_length=200)
    expires_in_days: int | None = Field(None, ge=1, le=3650)
    limits: LimitsIn = Field(default_factory=LimitsIn)


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A subset of the key's scopes; all of them when omitted.
    scopes: list[str] | None = Field(None, max_length=4)
    expires_in: int | None = Field(None, ge=60, le=86_400)
