"""``hearth jobs`` and ``hearth batch submit`` as a user runs them, against
the session's real ``hearth up``."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from tests.stackutil import HEARTH, base_env

pytestmark = pytest.mark.stack


def _hearth(url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [HEARTH, *args, "--url", url], env=base_env(), capture_output=True,
        text=True, timeout=180,
    )  # fmt: skip


def test_batch_submit_waits_and_saves_the_output(hearth_url, embedding_model, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            json.dumps(
                {
                    "custom_id": f"r{i}",
                    "method": "POST",
                    "url": "/v1/embeddings",
                    "body": {"model": embedding_model, "input": f"t{i}"},
                }
            )
            + "\n"
            for i in range(20)
        )  # fmt: skip
    )
    out = tmp_path / "out.jsonl"
    done = _hearth(
        hearth_url, "batch", "submit", str(source), "--endpoint", "/v1/embeddings",
        "--wait", "--output", str(out),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "completed\tcompleted=20\tfailed=0" in done.stdout
    ids = [json.loads(line)["custom_id"] for line in out.read_text().splitlines()]
    assert ids == [f"r{i}" for i in range(20)]


def test_batch_submit_names_the_bad_line(hearth_url, tmp_path):
    source = tmp_path / "bad.jsonl"
    source.write_text('{"custom_id": "a"}\n')
    done = _hearth(
        hearth_url, "batch", "submit", str(source), "--endpoint", "/v1/embeddings"
    )
    assert done.returncode == 1
    assert done.stderr.startswith(
        "Error: 'bad.jsonl' is not a valid batch file: line 1"
    )


def test_jobs_list_show_retry_and_cancel(hearth_url, chat_model):
    body = {
        "request": {
            "model": chat_model,
            "max_tokens": 4,
            "messages": [{"role": "user", "content": "w " * 12_000}],
        }
    }
    job = httpx.post(f"{hearth_url}/v1/jobs", json=body, timeout=10).json()
    for _ in range(300):
        state = httpx.get(f"{hearth_url}/v1/jobs/{job['id']}", timeout=10).json()
        if state["state"] == "failed":
            break
        subprocess.run(["sleep", "0.2"], check=True)

    listed = _hearth(hearth_url, "jobs", "list", "--state", "failed", "--limit", "100")
    assert listed.returncode == 0, listed.stderr
    assert any(
        line.startswith(job["id"]) and "\tfailed" in line
        for line in listed.stdout.splitlines()
    )
    shown = _hearth(hearth_url, "jobs", "show", job["id"])
    assert json.loads(shown.stdout)["error"]["code"] == "context_length_exceeded"

    retried = _hearth(hearth_url, "jobs", "retry", job["id"])
    assert retried.returncode == 0 and retried.stdout.strip().endswith("queued")

    refused = _hearth(hearth_url, "jobs", "cancel", "job_nope")
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: No job 'job_nope'")
