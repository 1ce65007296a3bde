"""Session fixtures shared by tests/ and conformance/.

Without --base-url the session starts its own Hearth with ``hearth up`` on
the embedded broker and database, in a temporary data directory, and every
end-to-end test and the conformance suite run against it.
"""

from __future__ import annotations

import pytest

from tests.stackutil import Processes, base_env, free_port, wait_ready

REMOTE_MODEL = "remote-smollm2"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hearth")
    group.addoption("--base-url", default=None, help="Run against this server.")
    group.addoption("--api-key", default="hearth-local", help="Bearer key to send.")
    group.addoption("--chat-model", default="smollm2-135m-instruct")
    group.addoption("--embedding-model", default="all-minilm-l6-v2")


@pytest.fixture(scope="session")
def hearth_url(request: pytest.FixtureRequest, tmp_path_factory) -> str:
    """Root URL (no /v1) of a running Hearth."""
    given = request.config.getoption("--base-url")
    if given:
        yield given.rstrip("/").removesuffix("/v1")
        return

    root = tmp_path_factory.mktemp("hearth-up")
    port = free_port()
    models_file = root / "models.yaml"
    # A remote model served by this same Hearth over HTTP: the remote
    # backend talks to a real OpenAI-compatible server, through its own
    # worker and queue.
    models_file.write_text(
        "models:\n"
        f"  - name: {REMOTE_MODEL}\n"
        "    kind: chat\n"
        "    backend: remote\n"
        f"    base_url: http://127.0.0.1:{port}/v1\n"
        "    remote_model: smollm2-135m-instruct\n"
        "    context_length: 8192\n"
    )
    env = base_env(
        HEARTH_DATA_DIR=str(root / "data"), HEARTH_MODELS_FILE=str(models_file)
    )
    processes = Processes(logdir=root, env=env)
    processes.start("up", "up", "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, processes)
        yield url
    finally:
        processes.stop_all()


@pytest.fixture(scope="session")
def base_url(hearth_url: str) -> str:
    return f"{hearth_url}/v1"


@pytest.fixture(scope="session")
def api_key(request: pytest.FixtureRequest) -> str:
    return request.config.getoption("--api-key")


@pytest.fixture(scope="session")
def chat_model(request: pytest.FixtureRequest) -> str:
    return request.config.getoption("--chat-model")


@pytest.fixture(scope="session")
def embedding_model(request: pytest.FixtureRequest) -> str:
    return request.config.getoption("--embedding-model")


@pytest.fixture(scope="session")
def client(base_url: str, api_key: str):
    import openai

    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0)
