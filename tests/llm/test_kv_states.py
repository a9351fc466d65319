"""The LRU of saved conversation states (no model needed)."""

from __future__ import annotations

import numpy as np
import pytest

from talkface.llm._kv_states import ConversationStates, SavedConversation, shared_messages

pytestmark = pytest.mark.unit

SYSTEM = ("system", "be brief")


def saved(*messages: tuple[str, str], size: int = 100) -> SavedConversation:
    return SavedConversation(tuple(messages), np.arange(3), object(), size)


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
