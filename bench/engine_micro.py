"""Micro-benchmark: raw ``model.generate`` against the batching engine.

Runs the bundled SmolLM2 on the CPU, greedy, a fixed number of new tokens
per request, and prints tokens per second for raw single-stream generate
and for the engine with 1, 4 and 8 concurrent requests, with each one's
ratio to raw. Rounds alternate between the two so a busy machine slows
both alike; the best round of each counts.

    HEARTH_CACHE_DIR=.cache/hearth python -m bench.engine_micro [--tokens 64]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path

PROMPT = [{"role": "user", "content": "Write a long story about a cat and a ship."}]


class _Quiet:
    def delta(self, index: int, text: str) -> None:
        pass

    def choice_end(self, index: int, finish_reason: str) -> None:
        pass

    def cancelled(self) -> bool:
        return False


def raw_rate(backend, tokens: int) -> float:
    import torch

    ids = backend.tokenizer.apply_chat_template(
        PROMPT, add_generation_prompt=True, return_tensors="pt"
    )["input_ids"]
    started = time.perf_counter()
    with torch.inference_mode():
        out = backend.model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
        )
    return (out.shape[1] - ids.shape[1]) / (time.perf_counter() - started)


def engine_rate(backend, tokens: int, streams: int) -> float:
    from workers.backends.base import ChatInput, GenerationParams

    produced = [0] * streams

    def one(k: int) -> None:
        usage = backend.generate(
            request_id=f"bench-{k}",
            chat=ChatInput(messages=PROMPT),
            params=GenerationParams(max_tokens=tokens, temperature=0.0),
            sink=_Quiet(),
        )
        produced[k] = usage.completion_tokens

    threads = [threading.Thread(target=one, args=(k,)) for k in range(streams)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(produced) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from server.settings import Settings
    from workers.backends import load_backend
    from workers.device import set_torch_threads
    from workers.specs import SMOLLM2, bundled_specs

    set_torch_threads(args.threads)
    cache = os.environ.get("HEARTH_CACHE_DIR") or Path(".cache/hearth").resolve()
    spec = next(s for s in bundled_specs() if s.name == SMOLLM2)
    backend = load_backend(spec, Settings(cache_dir=cache, device="cpu"))
    raw_rate(backend, 8)  # warm generate()'s own code paths

    best = {"raw": 0.0, 1: 0.0, 4: 0.0, 8: 0.0}
    for round_ in range(args.rounds):
        best["raw"] = max(best["raw"], raw_rate(backend, args.tokens))
        for streams in (1, 4, 8):
            best[streams] = max(
                best[streams], engine_rate(backend, args.tokens, streams)
            )
        print(
            f"round {round_ + 1}: " + ", ".join(f"{k}={v:.1f}" for k, v in best.items())
        )
    backend.close()

    raw = best["raw"]
    print(f"\n{args.tokens} new tokens per request, torch threads {args.threads}")
    print(f"{'run':<22}{'tokens/s':>10}{'x raw':>8}")
    print(f"{'raw generate, 1':<22}{raw:>10.1f}{1.0:>8.2f}")
    for streams in (1, 4, 8):
        rate = best[streams]
        print(f"{f'engine, {streams} concurrent':<22}{rate:>10.1f}{rate / raw:>8.2f}")


if __name__ == "__main__":
    main()
