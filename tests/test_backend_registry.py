"""Backends register through one mechanism; unknown names fail clearly."""

from __future__ import annotations

import subprocess
import sys

import pytest

from server.errors import ConfigError
from server.settings import Settings
from workers.backends import load_backend
from workers.backends.base import register_backend, registered_backends
from workers.specs import ModelSpec


def test_bundled_backends_are_registered():
    assert {"transformers", "sentence-transformers", "remote"} <= set(
        registered_backends()
    )


def test_importing_backends_does_not_import_torch():
    code = (
        "import sys, workers.backends; "
        "heavy = ('torch', 'transformers', 'httpx'); "
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_unknown_backend_lists_the_known_ones():
    # model_construct skips validation, as a plugin's own spec type might.
    spec = ModelSpec.model_construct(name="x", kind="chat", backend="nope")
    with pytest.raises(ConfigError) as caught:
        load_backend(spec, Settings())
    assert "'nope'" in str(caught.value)
    assert "remote, sentence-transformers, transformers" in str(caught.value)


def test_a_plugin_registers_like_the_bundled_ones(monkeypatch):
    from workers.backends import base

    # The registry is process-wide; leave it as this test found it.
    monkeypatch.setattr(base, "_FACTORIES", dict(base._FACTORIES))
    built = []

    @register_backend("echo-test")
    def build(spec, settings):
        built.append(spec.name)
        return object()

    spec = ModelSpec.model_construct(name="e", kind="chat", backend="echo-test")
    load_backend(spec, Settings())
    assert built == ["e"]
