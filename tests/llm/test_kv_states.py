"""The LRU of saved conversation states (no model needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from talkface.llm._kv_states import (
    MIN_SHIFTED_TOKENS,
    ConversationStates,
    SavedConversation,
    find_cut,
    reusable_messages,
    shared_messages,
)

pytestmark = pytest.mark.unit

SYSTEM = ("system", "be brief")


def saved(*messages: tuple[str, str], size: int = 100) -> SavedConversation:
    return SavedConversation(tuple(messages), np.arange(3), Path("/nonexistent.kv"), size)


def test_states_live_in_files_that_go_with_them() -> None:
    states = ConversationStates(capacity_bytes=250)
    files = []
    for name in "abc":
        path = states.new_path()
        path.write_bytes(b"x" * 100)
        files.append(path)
        states.put(SavedConversation((SYSTEM, ("user", name)), np.arange(3), path, 100))
    assert len({f.parent for f in files}) == 1 and len(set(files)) == 3
    # The least recently saved was forgotten to stay within 250 bytes: its file with it.
    assert not files[0].exists() and files[1].exists() and files[2].exists()
    taken = states.take_best((SYSTEM, ("user", "b"), ("user", "more")), better_than=1)
    assert taken is not None and taken.path == files[1]
    taken.discard()
    assert not files[1].exists()
    states.close()
    assert not files[2].parent.exists()


def test_the_conversation_sharing_most_messages_is_taken() -> None:
    states = ConversationStates(capacity_bytes=1000)
    a = saved(SYSTEM, ("user", "a"), ("assistant", "A"))
    b = saved(SYSTEM, ("user", "b"), ("assistant", "B"))
    states.put(a)
    states.put(b)
    prompt = (SYSTEM, ("user", "b"), ("assistant", "B"), ("user", "more"))
    assert shared_messages(b.messages, prompt) == 3
    assert states.take_best(prompt, better_than=1) is b
    assert len(states) == 1 and states.size_bytes == 100  # taken out: it is held now


def test_only_a_better_match_than_the_held_one_is_taken() -> None:
    states = ConversationStates(capacity_bytes=1000)
    states.put(saved(SYSTEM, ("user", "a"), ("assistant", "A")))
    # Sharing only the system prompt is what any held conversation already gives.
    assert states.take_best((SYSTEM, ("user", "c")), better_than=1) is None
    assert len(states) == 1


def test_a_later_turn_replaces_the_earlier_one_and_old_ones_are_forgotten() -> None:
    states = ConversationStates(capacity_bytes=250)
    first = saved(SYSTEM, ("user", "a"), ("assistant", "A"))
    states.put(first)
    states.put(saved(*first.messages, ("user", "a2"), ("assistant", "A2")))
    assert len(states) == 1
    states.put(saved(SYSTEM, ("user", "b"), ("assistant", "B")))
    states.put(saved(SYSTEM, ("user", "c"), ("assistant", "C")))
    assert len(states) == 2 and states.size_bytes <= 250
    # The least recently saved ("a" conversation) went first.
    assert states.take_best((SYSTEM, ("user", "a")), better_than=1) is None


def test_a_state_larger_than_the_cache_is_not_kept() -> None:
    states = ConversationStates(capacity_bytes=50)
    states.put(saved(SYSTEM, ("user", "a"), size=100))
    assert len(states) == 0 and states.size_bytes == 0


def test_a_cut_history_is_served_by_the_conversation_it_was_cut_from() -> None:
    turns = [(role, f"{role} {i}") for i in range(6) for role in ("user", "assistant")]
    held = (SYSTEM, *turns)
    cut = (SYSTEM, *turns[6:], ("user", "new"))  # the three oldest turns dropped
    assert reusable_messages(held, cut) == (1 + 6, True)
    assert reusable_messages(held, (SYSTEM, ("user", "other"))) == (1, False)
    states = ConversationStates(capacity_bytes=1000)
    states.put(saved(SYSTEM, ("user", "x"), ("assistant", "X")))
    states.put(saved(*held))
    assert states.take_best(cut, better_than=1).messages == held


def test_the_dropped_tokens_are_found_between_the_kept_ones() -> None:
    system, dropped, kept = [1, 2, 3], list(range(100, 140)), list(range(200, 260))
    cut = find_cut(system + dropped + kept, system + kept + [7, 8])
    assert (cut.start, cut.end, cut.kept) == (3, 43, 60)
    assert find_cut(system + dropped, system + dropped + [9]) is None  # continued, not cut
    short = kept[: MIN_SHIFTED_TOKENS - 1]
    assert find_cut(system + dropped + short, system + short + [7]) is None  # not worth moving
