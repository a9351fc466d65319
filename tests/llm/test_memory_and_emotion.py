"""Conversation memory within its token budget, and the expression of each sentence."""

from __future__ import annotations

import itertools

import pytest

from talkface.errors import BadInput
from talkface.llm.emotion import classify_emotion, sentence_emotion
from talkface.llm.memory import INTERRUPTED_MARK, ConversationMemory
from talkface.messages import Emotion

pytestmark = pytest.mark.unit


def words(text: str) -> int:
    return len(text.split())


def test_the_prompt_is_persona_then_history_then_the_new_message() -> None:
    memory = ConversationMemory(
        "Be brief.", budget_tokens=1000, reply_tokens=50, count_tokens=words
    )
    memory.record("Hi", "Hello! How can I help?")
    prompt = memory.prompt("What time is it?")
    assert [m.role for m in prompt] == ["system", "user", "assistant", "user"]
    assert prompt[0].content == "Be brief." and prompt[-1].content == "What time is it?"


def test_the_oldest_turns_are_dropped_to_fit_the_budget() -> None:
    memory = ConversationMemory("Be brief.", budget_tokens=120, reply_tokens=20, count_tokens=words)
    for i in range(10):
        memory.record(f"question number {i} " + "word " * 5, f"answer number {i} " + "word " * 5)
    prompt = memory.prompt("last question")
    users = [m.content for m in prompt if m.role == "user"]
    assert users[-1] == "last question"
    assert users[-2].startswith("question number 9")  # the newest turns survive
    assert not any(u.startswith("question number 0") for u in users)  # the oldest went
    assert sum(words(m.content) + 8 for m in prompt) <= 120


def test_a_full_history_is_cut_in_one_go_so_the_prompt_keeps_its_start() -> None:
    # Every prompt's start is what an LLM's prefix cache reuses: sliding the window by one
    # turn each time would make it re-read the whole history at every turn.
    memory = ConversationMemory("Be brief.", budget_tokens=400, reply_tokens=20, count_tokens=words)
    firsts, sizes = [], []
    for i in range(60):
        prompt = memory.prompt(f"question {i}")
        firsts.append(prompt[1].content if len(prompt) > 2 else None)
        sizes.append(sum(words(m.content) + 6 for m in prompt))
        memory.record(f"question {i} " + "word " * 5, f"answer {i} " + "word " * 5)
    assert max(sizes) <= 400 - 20
    cuts = sum(1 for a, b in itertools.pairwise(firsts) if a is not None and a != b)
    assert 2 <= cuts <= 60 // 5  # a cut every several turns, not one per turn
    assert firsts[-1] is not None  # history is still there after the cuts


def test_an_interrupted_answer_is_remembered_as_such() -> None:
    memory = ConversationMemory(
        "Be brief.", budget_tokens=1000, reply_tokens=50, count_tokens=words
    )
    memory.record("Tell me a story", "Once upon a time", interrupted=True)
    assistant = [m.content for m in memory.prompt("Stop.") if m.role == "assistant"]
    assert assistant == ["Once upon a time" + INTERRUPTED_MARK]
    memory.record("Hi", "Hello there, how are you doing today")
    memory.amend_last("Hello there", interrupted=True)
    assert memory.turns[-1].assistant == "Hello there" and memory.turns[-1].interrupted


def test_a_message_too_long_for_the_context_is_refused() -> None:
    memory = ConversationMemory("Be brief.", budget_tokens=300, reply_tokens=50, count_tokens=words)
    with pytest.raises(BadInput, match="shorten it"):
        memory.prompt("word " * 400)


@pytest.mark.parametrize(
    ("text", "emotion"),
    [
        ("Great to see you again!", Emotion.HAPPY),
        ("Thanks for asking.", Emotion.HAPPY),
        ("I am sorry, I cannot do that.", Emotion.SERIOUS),
        ("Please be careful with the stove.", Emotion.SERIOUS),
        ("The store opens at nine.", Emotion.NEUTRAL),
        ("很高兴为您服务。", Emotion.HAPPY),
        ("抱歉，我无法回答。", Emotion.SERIOUS),
    ],
)
def test_sentences_get_an_expression_from_their_words(text: str, emotion: Emotion) -> None:
    assert classify_emotion(text) is emotion


def test_an_explicit_tag_wins_and_is_not_spoken() -> None:
    assert sentence_emotion("[serious] Great news, everyone.") == (
        Emotion.SERIOUS, "Great news, everyone.")
    assert sentence_emotion("(happy) Hello.") == (Emotion.HAPPY, "Hello.")
