"""Every use of llama-cpp-python internals, in one place (pinned: llama-cpp-python 0.3.36).

Reusing and swapping a conversation's KV cache needs what llama-cpp-python does not make
public: the tokens a ``Llama`` evaluated (``_input_ids``, ``input_ids``, ``n_tokens``), its
raw context (``_ctx.ctx``) and the low-level ``llama_state_seq_*_file`` /
``llama_memory_*`` functions. Nothing else in talkface touches them;
:func:`missing_internals` names what an upgrade removed or renamed, and
``tests/llm/test_llama_internals.py`` fails on it.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path
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
    "sampler",
    "save_sequence",
    "set_sampler",
]

MODULE_FUNCTIONS = (
    "llama_state_seq_save_file",
    "llama_state_seq_load_file",
    "llama_memory_seq_rm",
    "llama_memory_seq_add",
    "llama_memory_can_shift",
    "llama_get_memory",
)
"""The ``llama_cpp`` module functions used here."""

LLAMA_ATTRIBUTES = ("_input_ids", "input_ids", "n_tokens", "_ctx", "reset", "_sampler")
"""The attributes of a loaded ``llama_cpp.Llama`` used here (and ``_ctx.ctx``)."""

_SEQUENCE = 0  # llama-cpp-python keeps its one conversation in sequence 0


@dataclass(frozen=True, slots=True)
class SequenceState:
    """A file holding a copy of sequence 0's KV cache, and the tokens it holds."""

    token_ids: np.ndarray
    path: Path
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


def save_sequence(llama: Any, path: Path) -> SequenceState:
    """Write the KV cache and the tokens it holds to ``path`` (llama.cpp writes it layer by
    layer, never a whole copy in memory), to hand to :func:`restore_sequence`."""
    import llama_cpp

    count = evaluated_count(llama)
    token_ids = llama.input_ids[:count].copy()
    tokens = (llama_cpp.llama_token * count)(*token_ids.tolist())
    written = llama_cpp.llama_state_seq_save_file(
        llama._ctx.ctx, str(path).encode(), _SEQUENCE, tokens, count
    )
    return SequenceState(token_ids=token_ids, path=path, size_bytes=int(written))


def restore_sequence(llama: Any, state: SequenceState) -> bool:
    """Replace the KV cache with the one saved in ``state``; False (and an empty cache)
    when llama.cpp refuses it or its file is gone, so the next prompt is evaluated afresh."""
    import llama_cpp

    ctx = llama._ctx.ctx
    llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(ctx), _SEQUENCE, -1, -1)
    count = len(state.token_ids)
    tokens = (llama_cpp.llama_token * max(count, 1))()
    read_count = ctypes.c_size_t(0)
    loaded = state.path.is_file() and llama_cpp.llama_state_seq_load_file(
        ctx, str(state.path).encode(), _SEQUENCE, tokens, count, ctypes.byref(read_count)
    )
    if not loaded or read_count.value != count:
        llama.reset()
        return False
    llama.input_ids[:count] = state.token_ids
    llama.n_tokens = count
    return True


def sampler(llama: Any) -> Any:
    """The sampler of the generation under way: llama-cpp-python keeps one per ``Llama``
    (made when a generation starts), and its repeat penalty remembers that reply's tokens."""
    return llama._sampler


def set_sampler(llama: Any, sampler: Any) -> None:
    """Give a generation set aside back its sampler (see :func:`sampler`)."""
    llama._sampler = sampler


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
