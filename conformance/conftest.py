"""Clients for the conformance suite; the server comes from ../conftest.py."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def offline_tiktoken(tmp_path_factory) -> None:
    """Give client libraries cl100k_base without a download.

    LangChain counts tokens with tiktoken, which fetches cl100k_base from the
    internet on first use; tiktoken looks in TIKTOKEN_CACHE_DIR first, under
    the SHA-1 of the download URL, so we place the offline copy there.
    """
    import hashlib

    import tiktoken_ext

    source = Path(next(iter(tiktoken_ext.__path__))) / "data" / "cl100k_base.tiktoken"
    url = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"
    cache = tmp_path_factory.mktemp("tiktoken")
    shutil.copy(source, cache / hashlib.sha1(url.encode()).hexdigest())
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
