"""Side-by-side benchmark: raw libraries in-process vs Hearth over HTTP.

    make bench                       # starts its own `hearth up`
    python -m bench.run --base-url http://127.0.0.1:8000/v1

Raw and Hearth run one after the other in the same run, on the same prompts,
texts and thread count, so the ratios compare like with like. Results go to
bench/results/latest.json and bench/results/latest.md.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.raw import RawChat, RawEmbed

RESULTS = Path(__file__).parent / "results"
CHAT = "smollm2-135m-instruct"
EMBED = "all-minilm-l6-v2"
PROMPTS = [
    "Explain why the sky is blue.",
    "Write a short poem about rivers.",
    "List some uses of copper.",
    "Describe a day at the beach.",
    "What makes a good teacher?",
    "Tell a story about a clever fox.",
    "How do airplanes fly?",
    "Give advice for learning to cook.",
]
MAX_TOKENS = 48
REPEATS = 2


def _texts(n: int) -> list[str]:
    words = "the quick brown fox jumps over a lazy dog near the river bank".split()
    return [" ".join(words[(i + j) % len(words)] for j in range(24)) for i in range(n)]


def _stream_chat(base: str, prompt: str) -> tuple[float, float, int]:
    """One streamed chat: (time to first token, total seconds, tokens)."""
    body = {
        "model": CHAT,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": MAX_TOKENS,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    first = None
    tokens = 0
    with httpx.stream("POST", f"{base}/chat/completions", json=body, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            choices = chunk.get("choices") or []
            if first is None and choices and choices[0]["delta"].get("content"):
                first = time.perf_counter() - started
    return first or 0.0, time.perf_counter() - started, tokens


def _embed(base: str, texts: list[str]) -> None:
    r = httpx.post(
        f"{base}/embeddings", json={"model": EMBED, "input": texts}, timeout=300
    )
    r.raise_for_status()


def bench_single_stream(base: str, raw: RawChat) -> dict:
    # Warm both sides once: the first generate() pays one-time setup costs.
    raw.stream(PROMPTS[-1], 4)
    _stream_chat(base, PROMPTS[-1])
    raw_runs = [raw.stream(p, MAX_TOKENS) for p in PROMPTS[:REPEATS]]
    hearth_runs = [_stream_chat(base, p) for p in PROMPTS[:REPEATS]]

    def decode_rate(runs):
        return statistics.median(
            (n - 1) / (total - ttft) for ttft, total, n in runs if n > 1
        )

    raw_ttft = statistics.median(r[0] for r in raw_runs) * 1000
    hearth_ttft = statistics.median(r[0] for r in hearth_runs) * 1000
    return {
        "raw_ttft_ms": round(raw_ttft, 1),
        "hearth_ttft_ms": round(hearth_ttft, 1),
        "ttft_overhead_ms": round(hearth_ttft - raw_ttft, 1),
        "raw_decode_tok_s": round(decode_rate(raw_runs), 2),
        "hearth_decode_tok_s": round(decode_rate(hearth_runs), 2),
        "decode_ratio": round(decode_rate(hearth_runs) / decode_rate(raw_runs), 3),
    }


def bench_concurrent(base: str, raw: RawChat, streams: int) -> dict:
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(streams)]

    started = time.perf_counter()
    raw_tokens = sum(raw.stream(p, MAX_TOKENS)[2] for p in prompts)
    raw_rate = raw_tokens / (time.perf_counter() - started)

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(streams) as pool:
        runs = list(pool.map(lambda p: _stream_chat(base, p), prompts))
    hearth_rate = sum(r[2] for r in runs) / (time.perf_counter() - started)
    return {
        "streams": streams,
        "raw_sequential_tok_s": round(raw_rate, 2),
        "hearth_aggregate_tok_s": round(hearth_rate, 2),
        "ratio": round(hearth_rate / raw_rate, 3),
    }


def bench_embeddings(base: str, raw: RawEmbed) -> dict:
    texts = _texts(256)
    raw_rate = raw.rate(texts)

    started = time.perf_counter()
    _embed(base, texts)
    one_request = len(texts) / (time.perf_counter() - started)

    singles = texts[:160]
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda t: _embed(base, [t]), singles))
    concurrent_rate = len(singles) / (time.perf_counter() - started)
    return {
        "raw_batched_texts_s": round(raw_rate, 1),
        "hearth_one_request_256_texts_s": round(one_request, 1),
        "hearth_16_concurrent_singles_texts_s": round(concurrent_rate, 1),
        "one_request_ratio": round(one_request / raw_rate, 3),
        "concurrent_ratio": round(concurrent_rate / raw_rate, 3),
    }


def _start_hearth(threads: int):
    from tests.stackutil import Processes, base_env, free_port, wait_ready

    root = Path(tempfile.mkdtemp(prefix="hearth-bench-"))
    port = free_port()
    env = base_env(
        HEARTH_DATA_DIR=str(root / "data"), HEARTH_TORCH_THREADS=str(threads)
    )
    processes = Processes(logdir=root, env=env)
    processes.start("up", "up", "--port", str(port))
    wait_ready(f"http://127.0.0.1:{port}", processes)
    return f"http://127.0.0.1:{port}/v1", processes


def _markdown(result: dict) -> str:
    s, e = result["single_stream"], result["embeddings"]
    rows = [
        (
            "TTFT median (ms)",
            s["raw_ttft_ms"],
            s["hearth_ttft_ms"],
            f"+{s['ttft_overhead_ms']} ms",
            "<= +20 ms",
        ),
        (
            "decode tok/s, 1 stream",
            s["raw_decode_tok_s"],
            s["hearth_decode_tok_s"],
            s["decode_ratio"],
            ">= 0.9",
        ),
    ]
    for c in result["concurrent"]:
        rows.append(
            (
                f"aggregate tok/s, {c['streams']} streams (raw: sequential)",
                c["raw_sequential_tok_s"],
                c["hearth_aggregate_tok_s"],
                c["ratio"],
                ">= 3 (8 streams)" if c["streams"] == 8 else "",
            )
        )
    rows += [
        (
            "embeddings texts/s, 1 request of 256",
            e["raw_batched_texts_s"],
            e["hearth_one_request_256_texts_s"],
            e["one_request_ratio"],
            "",
        ),
        (
            "embeddings texts/s, 16 concurrent singles",
            e["raw_batched_texts_s"],
            e["hearth_16_concurrent_singles_texts_s"],
            e["concurrent_ratio"],
            ">= 0.7",
        ),
    ]
    lines = [
        f"Machine: {result['machine']}; torch threads {result['threads']}.",
        "",
        "| measure | raw library | Hearth over HTTP | ratio | target |",
        "| --- | ---: | ---: | ---: | --- |",
    ]
    lines += [f"| {a} | {b} | {c} | {d} | {t} |" for a, b, c, d, t in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="benchmark this server instead")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    # A SIGTERM (a timeout, say) must still stop the stack we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    processes = None
    base = args.base_url
    if base is None:
        base, processes = _start_hearth(args.threads)
    try:
        raw_chat = RawChat()
        result = {
            "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "threads": args.threads,
            "single_stream": bench_single_stream(base, raw_chat),
            "concurrent": [bench_concurrent(base, raw_chat, n) for n in (4, 8)],
        }
        raw_chat.close()
        result["embeddings"] = bench_embeddings(base, RawEmbed())
    finally:
        if processes is not None:
            processes.stop_all()

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "latest.md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
