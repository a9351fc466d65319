"""Saved llama.cpp KV caches of conversations, so sessions that take turns keep their reuse.

llama.cpp holds one evaluated prompt at a time. One session alone extends it turn after
turn and evaluates only its new words; but when two sessions alternate, each turn finds
the other session's conversation in the cache and evaluates its whole history again
(on this 2-core box, ~17 ms per token: a 600-token history costs 10 s before the first
word). So before the model switches to another conversation, the one it holds is saved
here (about 12 KB per token for Qwen2.5-Coder-0.5B, 23 KB for SmolLM2-135M), and restored
when its session speaks next.

The states are kept in files (in a folder of the system's temporary directory, removed
when the model closes), not in the process's memory: held in RAM they made the server's
RSS grow by up to ``conversation_cache_mb`` as conversations came and went (+220 MB in an
hour's soak of four sessions), memory a box must budget per process. In files they sit in
the page cache, which the kernel can reclaim, and llama.cpp streams them layer by layer
(no whole copy in memory); a 2000-token state takes ~10-20 ms to write or read.

Conversations are matched by their messages, not by an id: a conversation's next prompt
starts with the messages of its previous prompt and reply, or, once its history was cut to
fit the context (:mod:`talkface.llm.memory`), with the system prompt and then the later part
of them. The cache is bounded in bytes and forgets the least recently used conversation
first.

A cut history is not evaluated again: :func:`find_cut` finds the dropped tokens in the held
ones, and llama.cpp removes them from the KV cache and moves the rest up (RoPE positions
shift exactly; the kept tokens' deeper-layer values still carry what they attended to in
the dropped turns, the approximation llama.cpp's own context shift makes). Evaluating the
kept half again cost ~2000 tokens at ~17 ms each on one core: half a minute, during which
every other session's answer waited.
"""

from __future__ import annotations

import collections
import itertools
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Messages = tuple[tuple[str, str], ...]
"""A conversation as (role, content) pairs: the prompt, then the reply."""


def common_prefix_length(a: Sequence[object], b: Sequence[object]) -> int:
    """How many leading items two sequences (messages, token ids) have in common."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


shared_messages = common_prefix_length
"""How many leading messages two conversations have in common."""

MIN_SHIFTED_TOKENS = 32
"""Fewest tokens worth keeping across a cut: a shorter run is cheaper to evaluate again
than to move (and is likely a chance match, not the conversation's own turns)."""


def reusable_messages(saved: Sequence[object], messages: Sequence[object]) -> tuple[int, bool]:
    """How much of ``messages`` a KV cache holding the conversation ``saved`` serves.

    Returns how many messages of ``messages`` it holds (the leading ones both share, plus,
    when ``messages`` dropped older turns of ``saved``, the run of ``saved``'s later
    messages that follows), and whether ``messages`` continues ``saved`` to its end.
    """
    shared = common_prefix_length(saved, messages)
    if shared == len(saved):
        return shared, True
    best, to_end = shared, False
    for start in range(shared + 1, len(saved)):
        run = common_prefix_length(saved[start:], messages[shared:])
        if run and shared + run > best:
            best, to_end = shared + run, start + run == len(saved)
    return best, to_end


@dataclass(frozen=True, slots=True)
class Cut:
    """Held tokens ``[start, end)`` a prompt dropped; the ``kept`` tokens after them follow on."""

    start: int
    end: int
    kept: int


def find_cut(held: Sequence[int], prompt: Sequence[int]) -> Cut | None:
    """Where ``prompt`` drops a span of the evaluated tokens ``held`` and goes on with the
    tokens after it (a history cut to fit); None when it does not, or keeps too few
    (:data:`MIN_SHIFTED_TOKENS`) for moving them to be worth it."""
    start = common_prefix_length(held, prompt)
    if start >= len(held) or start >= len(prompt):
        return None
    held_ids = np.asarray(held)
    rest = np.asarray(prompt[start:])
    best: Cut | None = None
    for end in np.flatnonzero(held_ids[start + 1 :] == rest[0]) + start + 1:
        length = min(len(held_ids) - end, len(rest))
        differ = np.flatnonzero(held_ids[end : end + length] != rest[:length])
        kept = int(differ[0]) if len(differ) else length
        if best is None or kept > best.kept:
            best = Cut(start=start, end=int(end), kept=kept)
    if best is None or best.kept < MIN_SHIFTED_TOKENS:
        return None
    return best


@dataclass(frozen=True, slots=True)
class SavedConversation:
    """One conversation's evaluated tokens and the file of KV-cache bytes that hold them."""

    messages: Messages
    token_ids: np.ndarray
    path: Path
    size_bytes: int

    def discard(self) -> None:
        """Remove the state's file (it was restored, superseded or forgotten)."""
        self.path.unlink(missing_ok=True)


class ConversationStates:
    """A byte-bounded LRU of :class:`SavedConversation`, matched by message prefix; their
    files live in one folder of the system's temporary directory, made when first needed.

    Args:
        capacity_bytes: most bytes of KV state kept; 0 keeps nothing.
    """

    def __init__(self, capacity_bytes: int) -> None:
        self.capacity_bytes = capacity_bytes
        self._saved: collections.OrderedDict[Messages, SavedConversation] = (
            collections.OrderedDict()
        )
        self._bytes = 0
        self._folder: Path | None = None
        self._file_numbers = itertools.count()
        self._remove_folder: weakref.finalize | None = None

    def new_path(self) -> Path:
        """A path in the states' folder for the next state to be saved to."""
        if self._folder is None:
            self._folder = Path(tempfile.mkdtemp(prefix="talkface-kv-"))
            # Removed at close, or when the process exits without closing the model.
            self._remove_folder = weakref.finalize(self, shutil.rmtree, self._folder, True)
        return self._folder / f"{next(self._file_numbers)}.kv"

    def close(self) -> None:
        """Forget every state and remove their folder."""
        self._saved.clear()
        self._bytes = 0
        if self._remove_folder is not None:
            self._remove_folder()

    def __len__(self) -> int:
        return len(self._saved)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def put(self, saved: SavedConversation) -> None:
        """Keep ``saved``, replacing older states of the same conversation."""
        if saved.size_bytes > self.capacity_bytes:
            saved.discard()
            return
        for messages in [m for m in self._saved if shared_messages(m, saved.messages) == len(m)]:
            self._drop(messages)  # an earlier turn of this conversation: superseded
        self._saved[saved.messages] = saved
        self._bytes += saved.size_bytes
        while self._bytes > self.capacity_bytes:
            self._drop(next(iter(self._saved)))

    def take_best(
        self, messages: Sequence[tuple[str, str]], better_than: int
    ) -> SavedConversation | None:
        """Remove and return the saved conversation that serves the most messages of
        ``messages`` (:func:`reusable_messages`), if it serves more than ``better_than``;
        the caller discards it once restored."""
        best, best_shared = None, better_than
        for saved in self._saved:
            shared, _ = reusable_messages(saved, tuple(messages))
            if shared > best_shared:
                best, best_shared = saved, shared
        if best is None:
            return None
        found = self._saved.pop(best)
        self._bytes -= found.size_bytes
        return found

    def _drop(self, messages: Messages) -> None:
        dropped = self._saved.pop(messages)
        self._bytes -= dropped.size_bytes
        dropped.discard()
