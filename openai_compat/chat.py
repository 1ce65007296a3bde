"""Chat and text completion requests and responses, as OpenAI defines them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from server.errors import InvalidRequest

MAX_STOP = 4


class _Lenient(BaseModel):
    # Clients send fields we do not use (user, logit_bias, ...); ignore them.
    model_config = ConfigDict(extra="ignore")


class TextPart(_Lenient):
    type: Literal["text"]
    text: str


class ChatMessage(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        parts = []
        for part in self.content:
            if part.get("type") != "text":
                raise InvalidRequest(
                    f"content part type {part.get('type')!r} is not supported by "
                    "this model; send text parts only",
                    param="messages",
                )
            parts.append(TextPart.model_validate(part).text)
        return "".join(parts)


class StreamOptions(_Lenient):
    include_usage: bool = False


class _Sampling(_Lenient):
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=16)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(None, ge=-2, le=2)
    frequency_penalty: float | None = Field(None, ge=-2, le=2)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    logprobs: bool | int | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> list[str]:
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop sequences are allowed")
        if any(s == "" for s in stops):
            raise ValueError("stop sequences must not be empty")
        return stops

    @field_validator("logprobs")
    @classmethod
    def _no_logprobs(cls, value: bool | int | None) -> None:
        if value:
            raise ValueError("logprobs are not supported yet; omit the field")
        return None

    def generation_params(self, max_tokens: int | None) -> dict[str, Any]:
        return {
            "max_tokens": max_tokens,
            "temperature": 1.0 if self.temperature is None else self.temperature,
            "top_p": 1.0 if self.top_p is None else self.top_p,
            "seed": self.seed,
            "stop": list(self.stop or []),
            "presence_penalty": self.presence_penalty or 0.0,
            "frequency_penalty": self.frequency_penalty or 0.0,
            "n": self.n or 1,
        }

    @property
    def include_usage(self) -> bool:
        return bool(
            self.stream and self.stream_options and self.stream_options.include_usage
        )


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    # Hearth's extension, sent by the openai SDK through extra_body: answer
    # from these collections, with citations (retrieval.grounded_chat).
    collections: list[str] | None = Field(None, min_length=1, max_length=16)
    retrieval: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> ChatCompletionRequest:
        if self.messages[-1].role == "assistant" and not self.messages[-1].text():
            # An empty trailing assistant turn adds nothing; drop it.
            self.messages = self.messages[:-1] or self.messages
        return self

    def wire_messages(self) -> list[dict[str, str]]:
        return [
            {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
            for m in self.messages
        ]

    def params(self) -> dict[str, Any]:
        limit = self.max_completion_tokens or self.max_tokens
        return self.generation_params(limit)


class CompletionRequest(_Sampling):
    prompt: str | list[str]
    echo: bool | None = False
    suffix: str | None = None
    best_of: int | None = None

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("send exactly one prompt per request")
        return value

    @field_validator("echo", "suffix", "best_of")
    @classmethod
    def _unsupported(cls, value: Any, info) -> Any:
        if value not in (None, False, 1):
            raise ValueError(f"{info.field_name} is not supported; omit it")
        return value

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def params(self) -> dict[str, Any]:
        return self.generation_params(self.max_tokens if self.max_tokens else 16)
