"""Convert a GGUF file to a transformers folder once, and reuse it.

Loading a GGUF through transformers dequantizes every tensor, which takes
about half a minute even for a small model; loading the same weights from a
safetensors folder takes a fraction of a second. The folder is keyed by the
GGUF file's name, size and modification time and by the transformers
version, so replacing the file or upgrading transformers converts again.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import structlog

from server.errors import ConfigError

log = structlog.get_logger(__name__)

_DONE_MARKER = "hearth-converted.txt"


def cache_key(gguf: Path) -> str:
    """A short hash of what identifies this GGUF's conversion."""
    import transformers

    stat = gguf.stat()
    ident = f"{gguf.name}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    return hashlib.sha256(ident.encode()).hexdigest()[:16]


def converted_folder(*, name: str, gguf: Path, cache_dir: Path) -> Path:
    """The cached folder for ``gguf``, converting it first if needed."""
    if not gguf.is_file():
        raise ConfigError(
            f"model {name!r}: GGUF file {str(gguf)!r} does not exist; check "
            "its path and gguf_file"
        )
    target = cache_dir / f"{name}-{cache_key(gguf)}"
    if (target / _DONE_MARKER).is_file():
        return target

    cache_dir.mkdir(parents=True, exist_ok=True)
    # Several worker processes may start at once; one converts, the rest wait.
    with open(cache_dir / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (target / _DONE_MARKER).is_file():
            _convert(name=name, gguf=gguf, target=target)
    return target


def _convert(*, name: str, gguf: Path, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.perf_counter()
    log.info("converting gguf (once)", model=name, gguf=str(gguf))
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)

    # A GGUF-loaded model remembers its quantizer and would refuse to save, or
    # save a config that asks for GGUF again; the weights are plain tensors now.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    # Written beside the target and renamed, so a crash leaves no half cache.
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _DONE_MARKER).write_text(f"converted from {gguf}\n")
        if target.exists():
            shutil.rmtree(target)
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "gguf converted",
        model=name,
        folder=str(target),
        convert_s=round(time.perf_counter() - started, 1),
    )
