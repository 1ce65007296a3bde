"""One request id, sent by the client, in the API's and the worker's logs."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.opsutil import eventually, log_lines, stack_log

pytestmark = pytest.mark.stack


def test_a_request_id_reaches_the_worker_log(
    request, hearth_url, api_key, chat_model, tmp_path_factory
):
    request_id = f"corr-{uuid.uuid4().hex}"
    reply = httpx.post(
        f"{hearth_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {api_key}", "X-Request-Id": request_id},
        json={
            "model": chat_model,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4,
        },
        timeout=60,
    )
    assert reply.status_code == 200
    assert reply.headers["x-request-id"] == request_id
    log = stack_log(request, tmp_path_factory)

    def lines_by_process():
        found: dict[str, list[dict]] = {}
        for line in log_lines(log):
            if line.get("request_id") == request_id:
                found.setdefault(line.get("process"), []).append(line)
        assert {"api", "worker"} <= set(found), found
        return found

    found = eventually(lines_by_process)
    task_line = next(x for x in found["worker"] if x["event"] == "task finished")
    assert task_line["model"] == chat_model
    assert task_line["task"] == "generate"
    assert task_line["task_id"]
    assert task_line["tenant"] == "local"
    assert task_line["completion_id"] == reply.json()["id"]
