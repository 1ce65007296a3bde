"""Where a model runs: device, dtype and quantization, resolved from its spec.

A spec says what the operator wants (``auto``, ``cuda:1``, ``4bit``); this
module checks it against the machine and turns it into the keyword arguments
``from_pretrained`` takes, so a wrong setting fails at worker start with a
message that says what to change, not deep inside transformers.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from server.errors import ConfigError

if TYPE_CHECKING:
    import torch

log = structlog.get_logger(__name__)

GPU_INSTALL = "pip install 'hearth[gpu]'"


@dataclass(frozen=True, kw_only=True)
class Placement:
    """A model's resolved device, dtype and quantization."""

    device: str
    dtype: torch.dtype
    quantization: str = "none"
    quantization_config: Any = None

    @property
    def on_cuda(self) -> bool:
        return self.device.startswith("cuda")

    def model_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``AutoModel*.from_pretrained``."""
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if self.quantization_config is not None:
            kwargs["quantization_config"] = self.quantization_config
        if self.on_cuda:
            # bitsandbytes places weights itself and needs a device map to do it.
            kwargs["device_map"] = {"": self.device}
        return kwargs


def resolve_device(requested: str, *, model: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    value = requested.strip().lower()
    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if value == "cpu":
        return "cpu"
    if value == "cuda" or value.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"model {model!r} asks for device {requested!r} but no GPU is "
                "visible to torch here; set its device to 'cpu' or 'auto'"
            )
        index = value.partition(":")[2]
        if index:
            count = torch.cuda.device_count()
            if not index.isdigit() or int(index) >= count:
                raise ConfigError(
                    f"model {model!r} asks for device {requested!r} but this "
                    f"machine has {count} GPU(s) (cuda:0 to cuda:{count - 1}); "
                    "pick one of those or 'auto'"
                )
        return value
    raise ConfigError(
        f"model {model!r} has device {requested!r}; use 'auto', 'cpu', 'cuda' "
        "or 'cuda:N'"
    )


def resolve_dtype(requested: str, *, device: str, model: str) -> torch.dtype:
    """``auto`` -> bfloat16 (or float16) on CUDA, float32 on CPU."""
    import torch

    on_cuda = device.startswith("cuda")
    if requested == "auto":
        if not on_cuda:
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    names = {
        "float32": torch.float32,
        "float16": torch.float16,
        "bfloat16": torch.bfloat16,
    }
    if requested not in names:
        raise ConfigError(
            f"model {model!r} has dtype {requested!r}; use one of auto, "
            + ", ".join(names)
        )
    if requested == "float16" and not on_cuda:
        # Allowed, but many CPU kernels upcast float16, so it is usually slower.
        log.warning(
            "float16 on cpu is slow; prefer dtype auto or float32",
            model=model,
        )
    return names[requested]


def quantization_config(quantization: str, *, device: str, model: str) -> Any:
    """A ``BitsAndBytesConfig`` for 8bit/4bit, or None for ``none``."""
    if quantization == "none":
        return None
    if quantization not in {"8bit", "4bit"}:
        raise ConfigError(
            f"model {model!r} has quantization {quantization!r}; use none, 8bit or 4bit"
        )
    if not device.startswith("cuda"):
        raise ConfigError(
            f"model {model!r} asks for {quantization} quantization, which needs "
            f"a CUDA GPU, but it would run on {device!r}; set its quantization "
            "to 'none' to run it on the CPU"
        )
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError(
            f"model {model!r} asks for {quantization} quantization, which needs "
            f"bitsandbytes; install it with: {GPU_INSTALL}"
        )

    import torch
    from transformers import BitsAndBytesConfig

    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=compute,
    )


def resolve_placement(
    *,
    model: str,
    device: str = "auto",
    dtype: str = "auto",
    quantization: str = "none",
    default_device: str = "auto",
) -> Placement:
    """Resolve a model's placement; ``device`` auto defers to ``default_device``.

    ``default_device`` is the process-wide setting (``HEARTH_DEVICE``), so an
    operator can push every model that did not pick a device onto the CPU.
    """
    wanted = default_device if device == "auto" else device
    resolved = resolve_device(wanted, model=model)
    return Placement(
        device=resolved,
        dtype=resolve_dtype(dtype, device=resolved, model=model),
        quantization=quantization,
        quantization_config=quantization_config(
            quantization, device=resolved, model=model
        ),
    )


def set_torch_threads(n: int) -> None:
    """Use ``n`` threads for torch's intra-op work in this process."""
    import torch

    if n < 1:
        raise ConfigError(f"torch threads must be at least 1, got {n}")
    torch.set_num_threads(n)
    try:
        # Only settable before the first parallel op; later calls are refused.
        torch.set_num_interop_threads(max(1, min(n, 4)))
    except RuntimeError:
        log.debug("torch interop threads already fixed", threads=n)
