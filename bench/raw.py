"""The raw libraries, used in-process as the baseline Hearth is held to."""

from __future__ import annotations

import time

from server.settings import Settings
from workers.specs import MINILM, SMOLLM2, ModelCatalog


class RawChat:
    """transformers' own generate(), streamed with TextIteratorStreamer."""

    def __init__(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from workers.backends.gguf_cache import converted_folder

        spec = ModelCatalog.load(models_file=None).get(SMOLLM2)
        folder = converted_folder(
            name=spec.name,
            gguf=spec.path / spec.gguf_file,
            cache_dir=Settings().model_cache_dir,
        )
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
        self.model.eval()

    def stream(self, prompt: str, max_tokens: int) -> tuple[float, float, int]:
        """(time to first token, total seconds, tokens generated)."""
        from transformers.generation.streamers import BaseStreamer

        class FirstToken(BaseStreamer):
            # generate() hands the prompt to put() first, then each token;
            # TextIteratorStreamer would wait for whole words instead.
            def __init__(self) -> None:
                self.calls = 0
                self.at: float | None = None

            def put(self, value) -> None:
                self.calls += 1
                if self.calls == 2:
                    self.at = time.perf_counter()

            def end(self) -> None:
                pass

        messages = [{"role": "user", "content": prompt}]
        started = time.perf_counter()
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        streamer = FirstToken()
        ids = self.model.generate(
            **inputs, max_new_tokens=max_tokens, do_sample=False, streamer=streamer
        )
        total = time.perf_counter() - started
        tokens = ids.shape[1] - inputs["input_ids"].shape[1]
        first = (streamer.at or started + total) - started
        return first, total, tokens

    def close(self) -> None:
        del self.model


class RawEmbed:
    """sentence-transformers encode() in batches."""

    def __init__(self) -> None:
        from sentence_transformers import SentenceTransformer

        spec = ModelCatalog.load(models_file=None).get(MINILM)
        self.model = SentenceTransformer(str(spec.path), device="cpu")

    def rate(self, texts: list[str]) -> float:
        self.model.encode(texts[:8])
        started = time.perf_counter()
        self.model.encode(texts, batch_size=64, normalize_embeddings=True)
        return len(texts) / (time.perf_counter() - started)
