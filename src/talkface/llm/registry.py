"""LLM backends by name. Add a backend: one module, one line here."""

from __future__ import annotations

from talkface.registry import BackendEntry

LLM_BACKENDS: dict[str, BackendEntry] = {
    "llama-cpp": BackendEntry(
        "talkface.llm.llama_cpp:LlamaCppLLM", "llm", "embedded llama.cpp with a GGUF model"
    ),
    "openai": BackendEntry(
        "talkface.llm.openai_http:OpenAICompatibleLLM",
        "llm",
        "any OpenAI-compatible server: vLLM, Ollama, llama.cpp server",
    ),
}
