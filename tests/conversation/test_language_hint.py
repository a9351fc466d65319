"""The system prompt asks for an answer in the user's language where the LLM needs it."""

from __future__ import annotations

import pytest

from talkface.llm.base import ChatMessage
from talkface.pipeline.reply import with_language_hint

pytestmark = pytest.mark.unit

PROMPT = (ChatMessage(role="system", content="You are Ava."),
          ChatMessage(role="user", content="你好"),
          ChatMessage(role="assistant", content="你好！"),
          ChatMessage(role="user", content="今天天气怎么样？"))


def test_a_chinese_turn_asks_for_chinese_in_the_one_system_message() -> None:
    hinted = with_language_hint(PROMPT, "zh")
    assert [m.role for m in hinted] == [m.role for m in PROMPT]
    assert hinted[0].content.startswith("You are Ava.") and "中文" in hinted[0].content
    assert hinted[1:] == PROMPT[1:]
    # The same language gives the same prefix every turn (the LLM's cache stays valid).
    assert with_language_hint(PROMPT[:2], "zh")[0] == hinted[0]


@pytest.mark.parametrize("language", ["en", None])
def test_english_and_unknown_turns_are_left_as_they_are(language: str | None) -> None:
    assert with_language_hint(PROMPT, language) == PROMPT


def test_a_prompt_without_a_system_message_is_left_as_it_is() -> None:
    assert with_language_hint(PROMPT[1:], "zh") == PROMPT[1:]
