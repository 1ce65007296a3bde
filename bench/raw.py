"""The raw libraries, used in-process as the baseline Hearth is held to."""

from __future__ import annotations

import threading
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
        from transformers import TextIteratorStreamer

        messages = [{"role": "user", "content": prompt}]
        started = time.perf_counter()
        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True)
        output = {}

        def run() -> None:
            output["ids"] = self.model.generate(
                **inputs, max_new_tokens=max_tokens, do_sample=False, streamer=streamer
            )

        thread = threading.Thread(target=run)
        thread.start()
        first = None
        for text in streamer:
            if first is None and text:
                first = time.perf_counter() - started
        thread.join()
        total = time.perf_counter() - started
        tokens = output["ids"].shape[1] - inputs["input_ids"].shape[1]
        return first or total, total, tokens

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
