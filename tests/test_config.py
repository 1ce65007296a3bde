"""Settings and model specs: sources, precedence and clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.errors import ConfigError, ModelNotFound
from server.settings import Settings, configure
from workers.specs import MINILM, SMOLLM2, ModelCatalog, read_models_file


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("HEARTH_"):
            monkeypatch.delenv(key)


def test_precedence_flags_over_env_over_file(tmp_path, monkeypatch):
    config = tmp_path / "hearth.toml"
    config.write_text('port = 9001\nhost = "127.0.0.2"\nnamespace = "fromfile"\n')
    monkeypatch.setenv("HEARTH_CONFIG", str(config))
    monkeypatch.setenv("HEARTH_PORT", "9002")

    settings = configure(data_dir=tmp_path / "d", port=None)
    assert settings.port == 9002
    assert settings.host == "127.0.0.2"
    assert settings.namespace == "fromfile"
    assert configure(port=9003).port == 9003


def test_yaml_config_file_with_hearth_section(tmp_path, monkeypatch):
    config = tmp_path / "hearth.yaml"
    config.write_text("hearth:\n  device: cpu\n  queue_max_depth: 5\n")
    monkeypatch.setenv("HEARTH_CONFIG", str(config))
    settings = Settings()
    assert settings.device == "cpu"
    assert settings.queue_max_depth == 5


def test_missing_config_file_names_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HEARTH_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ValueError, match="nope.toml"):
        Settings()


def test_urls_are_normalised():
    settings = Settings(database_url=" postgres://u@h/db ", broker_url="redis://x/0")
    assert settings.database_url == "postgresql://u@h/db"
    assert settings.stream_url == "redis://x/0"


def test_rabbitmq_needs_a_redis_url():
    settings = Settings(broker_url="amqp://guest@127.0.0.1//")
    with pytest.raises(ValueError, match="HEARTH_REDIS_URL"):
        settings.stream_url  # noqa: B018


def test_bundled_models_come_from_wheels():
    catalog = ModelCatalog.load(models_file=None)
    chat = catalog.get(SMOLLM2)
    assert chat.kind == "chat" and (chat.path / chat.gguf_file).is_file()
    embed = catalog.get("all-MiniLM-L6-v2")
    assert embed.name == MINILM and (embed.path / "config.json").is_file()


def test_unknown_model_lists_the_known_ones():
    catalog = ModelCatalog.load(models_file=None)
    with pytest.raises(ModelNotFound) as exc_info:
        catalog.get("gpt-4")
    assert "'gpt-4'" in exc_info.value.message
    assert SMOLLM2 in exc_info.value.message


def test_models_file_adds_and_resolves_relative_paths(tmp_path):
    models = tmp_path / "models.yaml"
    models.write_text(
        "models:\n"
        "  - name: local-llama\n"
        "    aliases: [llama]\n"
        "    kind: chat\n"
        "    backend: transformers\n"
        "    path: weights/llama\n"
        "    workers: 2\n"
        "  - name: big\n"
        "    kind: chat\n"
        "    backend: remote\n"
        "    base_url: http://127.0.0.1:9/v1\n"
    )
    catalog = ModelCatalog.load(models_file=models)
    spec = catalog.get("llama")
    assert spec.path == tmp_path / "weights/llama"
    assert spec.workers == 2
    assert catalog.get("big").backend == "remote"


@pytest.mark.parametrize(
    "entry,message",
    [
        ("  - name: x\n    kind: chat\n    backend: remote\n", "base_url"),
        ("  - name: x\n    kind: chat\n    backend: transformers\n", "path"),
        ("  - name: x\n    kind: chat\n    backend: onnx\n    path: /\n", "backend"),
        (
            "  - name: x\n    kind: chat\n    backend: sentence-transformers\n"
            "    path: /\n",
            "embedding",
        ),
        (
            "  - name: x\n    kind: chat\n    backend: remote\n"
            "    base_url: http://h\n    colour: red\n",
            "colour",
        ),
    ],
)
def test_models_file_errors_name_entry_and_field(tmp_path, entry, message):
    models = tmp_path / "models.yaml"
    models.write_text("models:\n" + entry)
    with pytest.raises(ConfigError) as exc_info:
        read_models_file(models)
    assert "model #1" in exc_info.value.message
    assert message in exc_info.value.message


def test_duplicate_alias_is_refused(tmp_path):
    models = tmp_path / "models.toml"
    models.write_text(
        '[[models]]\nname = "a"\nkind = "chat"\nbackend = "remote"\n'
        'base_url = "http://h"\naliases = ["smollm2"]\n'
    )
    with pytest.raises(ConfigError, match="smollm2"):
        ModelCatalog.load(models_file=models)


def test_models_file_must_exist(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_models_file(tmp_path / "missing.yaml")
