"""The FAQ matcher and file format, with a bag-of-words embedder (the real model is in
test_faq_model.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from talkface.errors import ConfigError
from talkface.faq import FAQEntry, FAQMatcher, load_faq_file
from talkface.faq.testing import WordsEmbedder

pytestmark = pytest.mark.unit

ENTRIES = (
    FAQEntry(questions=("what are your opening hours", "when is the shop open"),
             answer="Ten to nine, every day."),
    FAQEntry(questions=("how long does delivery take",), answer="Two to four days."),
    FAQEntry(questions=("how much does delivery cost",), answer="Free over 50 dollars."),
)


def matcher(min_similarity: float = 0.5, min_margin: float = 0.1,
            background: tuple[str, ...] = ()) -> FAQMatcher:
    return FAQMatcher(ENTRIES, WordsEmbedder(), min_similarity=min_similarity,
                      min_margin=min_margin, background=background)


def test_a_paraphrase_gets_its_entrys_answer_and_an_unrelated_question_none() -> None:
    faq = matcher()
    hit = faq.match("When is the shop open today?")
    assert hit is not None and hit.answer == "Ten to nine, every day."
    assert hit.question == "when is the shop open" and hit.entry_index == 0
    assert faq.match("Tell me a joke about penguins") is None


def test_a_question_two_entries_answer_equally_well_is_left_to_the_llm() -> None:
    """'delivery' alone scores the same against both delivery entries: no margin."""
    faq = matcher(min_similarity=0.1)
    scores = faq.scores("delivery")
    assert scores.best == pytest.approx(scores.rival)
    assert faq.match("delivery") is None
    assert faq.match("how long does delivery take please") is not None


def test_a_background_question_closer_than_any_entry_stops_a_hit() -> None:
    question = "how much does a delivery van cost"
    assert matcher(min_margin=0.0).match(question) is not None
    blocked = matcher(min_margin=0.0, background=("how much does a van cost",))
    assert blocked.match(question) is None


def test_a_background_question_the_faq_itself_answers_is_left_out() -> None:
    faq = matcher(background=("how long does delivery take",))
    assert faq.match("how long does delivery take") is not None


def test_phrasings_are_embedded_once_and_each_question_once() -> None:
    WordsEmbedder.calls.clear()
    faq = matcher(background=("a b c", "d e f"))
    assert WordsEmbedder.calls == [4, 2]  # the FAQ's phrasings, the background
    for _ in range(3):
        faq.match("when is the shop open")
    assert WordsEmbedder.calls == [4, 2, 1, 1, 1]


def test_a_faq_file_is_read_with_any_language(tmp_path: Path) -> None:
    path = tmp_path / "faq.yaml"
    path.write_text("- questions: [\"营业时间是什么？\", \"When are you open?\"]\n"
                    "  answer: 每天十点到晚上九点。\n", encoding="utf-8")
    (entry,) = load_faq_file(path)
    assert entry.questions == ("营业时间是什么？", "When are you open?")
    assert entry.answer == "每天十点到晚上九点。"


@pytest.mark.parametrize(("text", "expected"), [
    ("", "expected a non-empty list"),
    ("questions: [a]\nanswer: b\n", "expected a non-empty list"),
    ("- questions: [a]\n", "expected exactly the keys 'questions' and 'answer'"),
    ("- questions: [a]\n  answer: b\n  extra: c\n", "exactly the keys"),
    ("- questions: []\n  answer: b\n", "entry 1: an entry needs at least one"),
    ("- questions: [a]\n  answer: ''\n", "non-empty answer"),
    ("- questions: [a]\n  answer: [b]\n", "'answer' must be a string"),
    ("- questions: [a\n", "not valid YAML"),
])
def test_a_bad_faq_file_says_what_is_wrong(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "faq.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=expected):
        load_faq_file(path)


def test_a_missing_faq_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist \(faq.file / --faq\)"):
        load_faq_file(tmp_path / "nope.yaml")
