"""One settings object for the API, the workers, the supervisor and the CLI.

Values come, highest first, from CLI flags (passed as overrides), ``HEARTH_*``
environment variables, an optional config file named by ``HEARTH_CONFIG``
(TOML or YAML), and the defaults below.
"""

from __future__ import annotations

import os
import tomllib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

Device = Literal["auto", "cpu", "cuda"] | str


def _read_config_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ValueError(f"config file {path} does not exist; fix HEARTH_CONFIG")
    text = path.read_text()
    if path.suffix in {".yaml", ".yml"}:
        data = yaml.safe_load(text) or {}
    elif path.suffix == ".toml":
        data = tomllib.loads(text)
    else:
        raise ValueError(f"config file {path} must end in .toml, .yaml or .yml")
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping at the top")
    return data.get("hearth", data)


class ConfigFileSource(PydanticBaseSettingsSource):
    """Reads the file named by HEARTH_CONFIG, if any."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        name = os.environ.get("HEARTH_CONFIG")
        return _read_config_file(Path(name)) if name else {}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HEARTH_", extra="ignore")

    data_dir: Path = Path(".hearth")
    # Converted models are a cache shared between data directories.
    cache_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)

    # Empty means "start the embedded one" (Valkey, PostgreSQL).
    broker_url: str = ""
    redis_url: str = ""
    database_url: str = ""

    models_file: Path | None = None
    device: Device = "auto"
    bundled_models: bool = True

    # Prefix for queue names and Redis keys, so stacks can share a broker.
    namespace: str = Field("hearth", pattern=r"^[a-z][a-z0-9_-]{0,31}$")
    queue_max_depth: int = Field(64, ge=1)
    request_timeout_s: float = Field(600.0, gt=0)
    worker_heartbeat_s: float = Field(2.0, gt=0)
    worker_concurrency: int = Field(32, ge=1)
    # Unacknowledged messages a worker holds per batch queue (workers/
    # batch_consumer.py): a batch backlog never fills the window that
    # interactive requests are received through. Eight keep most of the
    # throughput of step-level batching on a CPU.
    worker_batch_prefetch: int = Field(8, ge=1)
    torch_threads: int | None = Field(None, ge=1)

    # Durable jobs and batches (server/jobs).
    job_backlog_max: int = Field(100_000, ge=1)
    job_max_attempts: int = Field(3, ge=1, le=20)
    job_backoff_s: float = Field(2.0, gt=0)
    job_backoff_max_s: float = Field(300.0, gt=0)
    # How often beat sweeps jobs: outbox, retries, lost workers, batches.
    job_sweep_s: float = Field(2.0, gt=0)
    # A queued job whose message is nowhere after this long is sent again.
    job_resend_after_s: float = Field(30.0, gt=0)
    file_max_bytes: int = Field(200 * 1024 * 1024, ge=1)
    batch_max_lines: int = Field(50_000, ge=1)
    # Webhooks go to loopback and these hosts only; private ranges need the
    # flag, and link-local (cloud metadata) addresses are always refused.
    # Comma-separated, so it passes to child processes as one variable.
    webhook_allowed_hosts: str = ""
    webhook_allow_private: bool = False

    # hearth up: worker processes per model between workers and max_workers.
    autoscale_interval_s: float = Field(1.0, gt=0)
    # Add a worker when more than this many messages wait per worker ...
    autoscale_queue_per_worker: int = Field(4, ge=1)
    # ... or when the oldest message has waited this long.
    autoscale_wait_s: float = Field(5.0, gt=0)
    # Remove an added worker once it and its queues were idle this long.
    autoscale_idle_s: float = Field(60.0, gt=0)
    # A worker pod's own /metrics port (clusters; hearth up needs none).
    worker_metrics_port: int | None = Field(None, ge=1, le=65535)

    allow_insecure_bind: bool = False
    log_level: str = "INFO"
    log_json: bool | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            ConfigFileSource(settings_cls),
            file_secret_settings,
        )

    @field_validator("data_dir", "cache_dir", "models_file")
    @classmethod
    def _absolute(cls, value: Path | None) -> Path | None:
        return value.expanduser().resolve() if value is not None else None

    @field_validator("broker_url", "redis_url", "database_url")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if value.startswith("postgres://"):
            value = "postgresql://" + value.removeprefix("postgres://")
        return value

    @property
    def model_cache_dir(self) -> Path:
        return self.cache_dir or (self.data_dir / "cache")

    @property
    def uses_redis_broker(self) -> bool:
        return self.broker_url.startswith(("redis://", "rediss://", "valkey://"))

    @property
    def stream_url(self) -> str:
        """Redis URL for results, streaming and liveness."""
        if self.redis_url:
            return self.redis_url
        if self.uses_redis_broker:
            return self.broker_url
        raise ValueError(
            "a RabbitMQ broker needs HEARTH_REDIS_URL for results and streaming"
        )

    def export_env(self) -> dict[str, str]:
        """Environment that gives a child process these same settings."""
        env: dict[str, str] = {}
        for name, value in self.model_dump().items():
            if value is None:
                continue
            env[f"HEARTH_{name.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
        return env


@lru_cache
def get_settings() -> Settings:
    return Settings()


def configure(**overrides: Any) -> Settings:
    """Build settings with CLI overrides and make them the process-wide ones."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    settings = Settings(**clean)
    get_settings.cache_clear()
    for key, value in settings.export_env().items():
        os.environ[key] = value
    return get_settings()
