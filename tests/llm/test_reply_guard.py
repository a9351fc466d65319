"""The reply guard: loops are stopped, and a reply cut by its budget ends at a sentence."""

from __future__ import annotations

import doctest
import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talkface.llm import guard as guard_module
from talkface.llm.emotion import sentence_emotion
from talkface.llm.guard import PhraseCounter, ReplyGuard, repeated_phrase
from talkface.messages import Emotion
from talkface.text.sentences import ends_sentence

pytestmark = pytest.mark.unit

LOOP = "I can also help with your personal projects. "


def tokens(text: str) -> list[str]:
    """``text`` in word-sized deltas, as a model streams it (leading spaces attached)."""
    return re.findall(r"\s*\S+", text)


def run(deltas: list[str], finish: str) -> tuple[list[str], str, ReplyGuard]:
    """What a backend does: feed, stop when told, finish; returns (handed on, reason, guard)."""
    guard = ReplyGuard()
    handed = []
    for delta in deltas:
        if out := guard.feed(delta):
            handed.append(out)
        if guard.stop_reason is not None:
            break
    rest, reason = guard.finish(finish)
    if rest:
        handed.append(rest)
    return handed, reason, guard


# --- the n-gram guard ---------------------------------------------------------------------


def test_a_six_word_phrase_said_three_times_is_found() -> None:
    assert repeated_phrase("Sure! " + LOOP * 3) == "i can also help with your"
    assert repeated_phrase("Sure! " + LOOP * 2) is None  # twice is not three times
    assert repeated_phrase("Sure! " + LOOP * 2, times=2) is not None


def test_short_repeats_and_case_and_punctuation() -> None:
    # A five-word phrase three times is not a six-word phrase.
    assert repeated_phrase("one two three four five. " * 3 + "six") is None
    # Case and punctuation do not hide a loop.
    assert repeated_phrase("We can help you. we CAN help: you! We can help, you?", words=4)


def test_chinese_counts_two_characters_as_a_word() -> None:
    loop = "我可以帮助你完成项目。"  # 10 characters: 5 "words"
    assert repeated_phrase(loop * 4) is not None
    assert repeated_phrase("北京是中国的首都。上海是中国最大的城市。") is None


def test_a_word_split_across_deltas_counts_once() -> None:
    counter = PhraseCounter(words=2)
    assert counter.feed("pro")[1] == 0
    assert counter.feed("jects are")[1] == 0
    assert counter.feed(" great. projects are")[1] == 1  # "projects are" is not complete yet
    assert counter.feed(" ")[1] == 2


def test_a_loop_is_stopped_at_its_second_time_and_that_sentence_dropped() -> None:
    handed, reason, guard = run(tokens("Of course! " + LOOP * 5), finish="length")
    text = "".join(handed)
    assert reason == "repetition"
    assert text == "Of course! " + LOOP.rstrip()
    assert text == guard.text  # what is spoken is what the history keeps
    assert repeated_phrase(text, times=2) is None


def test_a_loop_inside_one_sentence_is_stopped_too() -> None:
    run_on = "Hello. We offer " + "tea and cake and coffee and juice and " * 5
    handed, reason, _ = run(tokens(run_on), finish="length")
    assert reason == "repetition"
    assert "".join(handed) == "Hello."


# --- whole sentences at the end of the budget ---------------------------------------------


def test_the_unfinished_last_sentence_is_never_handed_on() -> None:
    reply = "Paris is the capital of France. It has many museums. The most famous one is"
    handed, reason, guard = run(tokens(reply), finish="length")
    assert reason == "length"
    assert "".join(handed) == "Paris is the capital of France. It has many museums."
    assert guard.text == "".join(handed)


def test_a_reply_cut_right_after_its_full_stop_keeps_that_sentence() -> None:
    handed, _, _ = run(tokens("Hi there. It is sunny today."), finish="length")
    assert "".join(handed) == "Hi there. It is sunny today."


def test_the_first_sentence_streams_and_later_ones_come_whole() -> None:
    handed, _, _ = run(tokens("The museum opens at nine. The cafe opens at ten."), finish="stop")
    assert handed[:4] == ["The", " museum", " opens", " at"]
    assert " The cafe opens at ten." in handed


def test_a_decimal_point_or_title_is_not_a_sentence_end() -> None:
    reply = "Sure! It costs 3.50 dollars, Dr. Smith says. And then"
    handed, _, _ = run(tokens(reply), finish="length")
    assert "".join(handed) == "Sure! It costs 3.50 dollars, Dr. Smith says."


def test_chinese_sentences_end_at_chinese_full_stops() -> None:
    reply = "北京是中国的首都。它有很多博物馆。最有名的是"
    handed, _, _ = run(list(reply), finish="length")
    assert "".join(handed) == "北京是中国的首都。它有很多博物馆。"


def test_a_reply_the_model_ended_itself_is_handed_on_whole() -> None:
    handed, reason, _ = run(tokens("Bonjour! Red, blue and green"), finish="stop")
    assert (reason, "".join(handed)) == ("stop", "Bonjour! Red, blue and green")


def test_a_first_sentence_longer_than_the_budget_is_what_there_is() -> None:
    handed, _, _ = run(tokens("Once upon a time there was a dragon who"), finish="length")
    assert "".join(handed) == "Once upon a time there was a dragon who"


def test_a_cancelled_reply_hands_on_nothing_more() -> None:
    handed, reason, _ = run(tokens("Hello there. And then some"), finish="cancelled")
    assert (reason, "".join(handed)) == ("cancelled", "Hello there.")


@settings(max_examples=200, deadline=None)
@given(
    sentences=st.lists(st.sampled_from([
        "Hello there.", "It costs 3.50 dollars.", "Dr. Smith is here!", "Is it?",
        "我们走吧。", "Well... maybe", "See you at 10 a.m. Bye.", '"Quoted."',
    ]), min_size=1, max_size=6, unique=True),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=30),
    finish=st.sampled_from(["stop", "length"]),
)
def test_how_the_reply_is_cut_into_deltas_never_changes_what_is_handed_on(
    sentences: list[str], cuts: list[int], finish: str
) -> None:
    text = " ".join(sentences)
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    deltas = [text[a:b] for a, b in itertools.pairwise(points) if b > a]
    handed, _, guard = run(deltas, finish)
    whole, _, _ = run([text], finish)
    assert "".join(handed) == "".join(whole) == guard.text
    assert text.startswith(guard.text)
    if finish == "stop":
        assert guard.text == text
    elif guard.text != text:
        assert ends_sentence(guard.text)


def test_stray_expression_tags_are_never_spoken() -> None:
    assert sentence_emotion("[happy] Red, [serious] blue and [neutral] green.") == (
        Emotion.HAPPY, "Red, blue and green.")


def test_the_examples_in_the_module_run() -> None:
    assert doctest.testmod(guard_module).failed == 0
