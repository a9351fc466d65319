"""Every use of llama-cpp-python internals, in one place (pinned: llama-cpp-python 0.3.36).

Reusing and swapping a conversation's KV cache needs what llama-cpp-python does not make
public: the tokens a ``Llama`` evaluated (``_input_ids``, ``input_ids``, ``n_tokens``), its
raw context (``_ctx.ctx``) and the low-level ``llama_state_seq_*`` / ``llama_memory_seq_*``
functions. Nothing else in talkface touches them; :func:`missing_internals` names what an
upgrade removed or renamed, and ``tests/llm/test_llama_internals.py`` fails on it.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "LLAMA_ATTRIBUTES",
    "MODULE_FUNCTIONS",
    "SequenceState",
    "drop_tokens",
    "evaluated_count",
    "evaluated_tokens",
    "missing_internals",
    "restore_sequence",
    "save_sequence",
]

MODULE_FUNCTIONS = (
    "llama_state_seq_get_size",
    "llama_state_seq_get_data",
    "llama_state_seq_set_data",
    "llama_memory_seq_rm",
    "llama_memory_seq_add",
    "llama_memory_can_shift",
    "llama_get_memory",
)
"""The ``llama_cpp`` module functions used here."""

LLAMA_ATTRIBUTES = ("_input_ids", "input_ids", "n_tokens", "_ctx", "reset")
"""The attributes of a loaded ``llama_cpp.Llama`` used here (and ``_ctx.ctx``)."""

_SEQUENCE = 0  # llama-cpp-python keeps its one conversation in sequence 0


@dataclass(frozen=True, slots=True)
class SequenceState:
    """A copy of sequence 0's KV cache and the tokens it holds."""

    token_ids: np.ndarray
    kv_state: object  # a ctypes byte array, handed back to llama.cpp as it came
    size_bytes: int


def missing_internals(llama: Any) -> list[str]:
    """The internals this module uses that ``llama`` (a loaded ``Llama``) or the installed
    ``llama_cpp`` module lack, as readable names; empty when all are there."""
    import llama_cpp

    missing = [f"llama_cpp.{name}" for name in MODULE_FUNCTIONS if not hasattr(llama_cpp, name)]
    missing += [f"Llama.{name}" for name in LLAMA_ATTRIBUTES if not hasattr(llama, name)]
    if hasattr(llama, "_ctx") and not hasattr(llama._ctx, "ctx"):
        missing.append("Llama._ctx.ctx")
    return missing


def evaluated_count(llama: Any) -> int:
    """How many tokens llama.cpp's KV cache holds now."""
    return int(llama.n_tokens)


def evaluated_tokens(llama: Any, count: int | None = None) -> list[int]:
    """The first ``count`` tokens llama.cpp evaluated (all it holds when ``None``)."""
    held = evaluated_count(llama)
    return [int(t) for t in llama._input_ids[: held if count is None else min(count, held)]]


def save_sequence(llama: Any) -> SequenceState:
    """Copy the KV cache and the tokens it holds, to hand to :func:`restore_sequence`."""
    import llama_cpp

    ctx = llama._ctx.ctx
    size = llama_cpp.llama_state_seq_get_size(ctx, _SEQUENCE)
    buffer = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_seq_get_data(ctx, buffer, size, _SEQUENCE)
    token_ids = llama.input_ids[: llama.n_tokens].copy()
    return SequenceState(token_ids=token_ids, kv_state=buffer, size_bytes=int(written))


def restore_sequence(llama: Any, state: SequenceState) -> bool:
    """Replace the KV cache with ``state``; False (and an empty cache) when llama.cpp
    refuses it, so the next prompt is evaluated afresh."""
    import llama_cpp

    ctx = llama._ctx.ctx
    llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), _SEQUENCE, -1, -1)
    if llama_cpp.llama_state_seq_set_data(ctx, state.kv_state, state.size_bytes, _SEQUENCE) == 0:
        llama.reset()
        return False
    count = len(state.token_ids)
    llama.input_ids[:count] = state.token_ids
    llama.n_tokens = count
    return True


def drop_tokens(llama: Any, start: int, end: int) -> bool:
    """Remove evaluated tokens ``[start, end)`` from the KV cache and move the ones after
    them up by ``end - start`` positions (llama.cpp re-rotates their keys at the next
    decode). False, changing nothing, for a model whose positions cannot be moved."""
    import llama_cpp

    memory = llama_cpp.llama_get_memory(llama._ctx.ctx)
    if not llama_cpp.llama_memory_can_shift(memory):
        return False
    held = evaluated_count(llama)
    llama_cpp.llama_memory_seq_rm(memory, _SEQUENCE, start, end)
    llama_cpp.llama_memory_seq_add(memory, _SEQUENCE, end, -1, start - end)
    llama.input_ids[start : held - (end - start)] = llama.input_ids[end:held].copy()
    llama.n_tokens = held - (end - start)
    return True
