"""Model backends, and how a worker builds the one a model spec names.

Importing this package registers the bundled backends through the same
``register_backend`` mechanism a plugin uses. Their modules import torch,
transformers and httpx only when a backend is built, so importing this
package stays cheap. A third-party backend registers itself from a module
named by a ``hearth.backends`` entry point, loaded on first use.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from server.errors import ConfigError
from workers.backends import remote, sentence_embed, transformers_chat
from workers.backends.base import backend_factory, registered_backends

if TYPE_CHECKING:
    from server.settings import Settings
    from workers.backends.base import ChatBackend, EmbeddingBackend
    from workers.specs import ModelSpec

__all__ = ["load_backend", "remote", "sentence_embed", "transformers_chat"]


def load_backend(spec: ModelSpec, settings: Settings) -> ChatBackend | EmbeddingBackend:
    """Build the backend ``spec.backend`` names, loading its model."""
    if spec.backend not in registered_backends():
        _load_plugins()
    if spec.backend not in registered_backends():
        raise ConfigError(
            f"model {spec.name!r} names backend {spec.backend!r}, which is not "
            f"installed; known backends: {', '.join(registered_backends())}"
        )
    return backend_factory(spec.backend)(spec, settings)


def _load_plugins() -> None:
    # Importing a plugin's module runs its @register_backend decorators.
    for point in entry_points(group="hearth.backends"):
        point.load()
