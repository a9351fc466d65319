"""Any OpenAI-compatible chat server (vLLM, Ollama, llama.cpp server, ...), streamed.

Replies stream over server-sent events from ``POST {url}/chat/completions``. Every way a
server can fail is turned into one clear, retryable-or-not error: not reachable, slow
to connect, no first token in time (a hung server), an HTTP error with the server's own
message, a stream that breaks off. Replies go through the same
:class:`~talkface.llm.guard.ReplyGuard` as the embedded model's.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Self

from talkface.errors import BackendError, BackendUnavailable, ConfigError
from talkface.llm.base import (
    GenerationRequest,
    GenerationStats,
    LLMBackend,
    LLMCapabilities,
    LLMSettings,
)
from talkface.llm.guard import ReplyGuard

_CHARS_PER_TOKEN = 4  # a server does not tell us its tokenizer; a common estimate


class OpenAICompatibleLLM(LLMBackend):
    """A remote chat model behind the OpenAI chat-completions API."""

    name = "openai"
    capabilities = LLMCapabilities(batching=True, prefix_reuse=False)

    def __init__(self, settings: LLMSettings, client: Any, base_url: str) -> None:
        super().__init__(settings)
        self._client = client
        self._base_url = base_url

    @classmethod
    def load(cls, settings: LLMSettings) -> Self:
        """A client for the OpenAI-compatible server at ``settings.url`` (nothing is loaded)."""
        try:
            import httpx
        except ImportError as exc:
            raise BackendUnavailable(
                "the openai LLM backend needs httpx; run: pip install httpx"
            ) from exc
        if not settings.url:
            raise ConfigError(
                "the openai LLM backend needs the server's URL: --llm-url "
                "http://127.0.0.1:8000/v1 (or TALKFACE_LLM__URL)"
            )
        if not settings.url.startswith(("http://", "https://")):
            raise ConfigError(f"LLM URL {settings.url!r} must start with http:// or https://")
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        client = httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(
                connect=settings.connect_timeout_s,
                read=settings.first_token_timeout_s,
                write=settings.connect_timeout_s,
                pool=settings.connect_timeout_s,
            ),
            # Talk to exactly the server configured, never through an environment proxy.
            trust_env=False,
        )
        return cls(settings, client, settings.url.rstrip("/"))

    def count_tokens(self, text: str) -> int:
        """An estimate from the length of ``text``: the server's tokenizer is not at hand."""
        return max(1, len(text) // _CHARS_PER_TOKEN)

    async def _generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationStats]:
        # The server batches; here each request is simply its own concurrent stream.
        return list(await asyncio.gather(*(self._generate(r) for r in requests)))

    async def _generate(self, request: GenerationRequest) -> GenerationStats:
        import httpx

        body = {
            "model": self.settings.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": True,
        }
        url = f"{self._base_url}/chat/completions"
        completion = 0
        finish = "stop"
        guard = ReplyGuard()
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                async with self._client.stream("POST", url, json=body) as response:
                    if response.status_code >= 400:
                        raise _http_error(response.status_code, (await response.aread())[:500])
                    async for line in response.aiter_lines():
                        if request.stream.cancelled:
                            finish = "cancelled"
                            break
                        delta, reason = _parse_event(line)
                        if delta:
                            completion += 1
                            if guard.pass_on(delta, request.stream.put):
                                break
                        if reason:
                            finish = reason
                        if line.strip() == "data: [DONE]":
                            break
        except httpx.ConnectError:
            raise BackendError(
                f"the LLM server at {self._base_url} is not reachable (connection refused); "
                "start it or check --llm-url",
                retryable=True,
            ) from None
        except httpx.ConnectTimeout:
            raise BackendError(
                f"the LLM server at {self._base_url} did not accept a connection within "
                f"{self.settings.connect_timeout_s:g} s",
                retryable=True,
            ) from None
        except httpx.ReadTimeout:
            raise BackendError(
                f"the LLM server at {self._base_url} sent nothing for "
                f"{self.settings.first_token_timeout_s:g} s; it may be hung or overloaded",
                retryable=True,
            ) from None
        except TimeoutError:
            raise BackendError(
                f"the LLM server at {self._base_url} took longer than "
                f"{self.settings.timeout_s:g} s for one reply",
                retryable=True,
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise BackendError(
                f"the LLM server at {self._base_url} broke off the reply: {exc}", retryable=True
            ) from None
        rest, finish = guard.finish(finish)
        if rest:
            request.stream.put(rest)
        request.stream.close()
        prompt = sum(self.count_tokens(m.content) for m in request.messages)
        return GenerationStats(
            prompt_tokens=prompt, completion_tokens=completion, finish_reason=finish
        )

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()


def _parse_event(line: str) -> tuple[str, str | None]:
    """(text delta, finish reason) of one server-sent-events line; empty for others."""
    if not line.startswith("data:"):
        return "", None
    payload = line[5:].strip()
    if not payload or payload == "[DONE]":
        return "", None
    try:
        event = json.loads(payload)
        choice = event["choices"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return "", None
    delta = choice.get("delta") or {}
    return delta.get("content") or "", choice.get("finish_reason")


def _http_error(status: int, body: bytes) -> BackendError:
    try:
        detail = json.loads(body)["error"]
        detail = detail.get("message", detail) if isinstance(detail, dict) else detail
    except (ValueError, KeyError, TypeError):
        detail = body.decode("utf-8", "replace").strip() or "no details"
    hint = {401: " (check the API key)", 404: " (check --llm-url and --llm-model)"}.get(status, "")
    return BackendError(
        f"the LLM server answered HTTP {status}: {detail}{hint}", retryable=status >= 500
    )
