"""The same code on the user's Redis and on RabbitMQ, with an external
PostgreSQL: roles started one by one, as on a cluster."""

from __future__ import annotations

import socket

import openai
import pytest

from tests.brokerutil import drop_rabbit_queues
from tests.stackutil import Cluster, create_database, drop_database
from workers.protocol import model_queues

pytestmark = pytest.mark.stack

SYSTEM_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"


def _reachable(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


BROKERS = {
    "redis": {"broker_url": "redis://127.0.0.1:6379/3", "redis_url": ""},
    "rabbitmq": {
        "broker_url": "amqp://guest:guest@127.0.0.1:5672//",
        "redis_url": "redis://127.0.0.1:6379/4",
    },
}


@pytest.fixture(params=sorted(BROKERS))
def cluster(request, tmp_path):
    for port in (5432, 6379, 5672):
        if not _reachable(port):
            pytest.fail(f"nothing listens on 127.0.0.1:{port}; start the service")
    database_url = create_database(SYSTEM_PG)
    urls = BROKERS[request.param]
    started = Cluster.start(
        tmp_path,
        database_url=database_url,
        models=[CHAT, EMBED],
        **urls,
    )
    try:
        yield started
    finally:
        started.stop()
        drop_database(database_url)
        if request.param == "rabbitmq":
            namespace = started.namespace
            queues = [q for m in (CHAT, EMBED) for q in model_queues(namespace, m)]
            queues.append(f"{namespace}.maintenance")
            drop_rabbit_queues(urls["broker_url"], queues)


def test_chat_stream_and_embeddings(cluster):
    client = openai.OpenAI(base_url=f"{cluster.url}/v1", api_key="x", max_retries=0)
    reply = client.chat.completions.create(
        model=CHAT, messages=[{"role": "user", "content": "Hi"}], max_tokens=6
    )
    assert reply.choices[0].message.content
    chunks = list(
        client.chat.completions.create(
            model=CHAT,
            messages=[{"role": "user", "content": "Hi"}],
            max_tokens=6,
            stream=True,
        )
    )
    assert chunks[-1].choices[0].finish_reason in {"stop", "length"}
    vectors = client.embeddings.create(model=EMBED, input=["a", "b"])
    assert len(vectors.data) == 2
