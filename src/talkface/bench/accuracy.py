"""How close a transcript is to what was said: word and Chinese-character error rates.

Used by the ASR benchmark and by the tests that check real speech end to end. The
normalisation is deliberately small: lower case, no punctuation, the few digits and
contractions Whisper writes for words our test sentences spell out.
"""

from __future__ import annotations

import re

_NUMBERS = {"3": "three", "4": "four", "6": "six"}
_CONTRACTIONS = {"what's": "what is", "where's": "where is", "it's": "it is"}
_HAN = re.compile(r"[\u4e00-\u9fff]")


def words(text: str) -> list[str]:
    """Lower-case words without punctuation; digits and contractions spelled out."""
    out: list[str] = []
    for token in re.sub(r"[^\w\s']", " ", text.lower()).split():
        out.extend(_CONTRACTIONS.get(token, _NUMBERS.get(token, token)).split())
    return out


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    """Levenshtein distance between two token lists (insertions, deletions, substitutions)."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (r != h))
    return row[-1]


def word_error_rate(ref: str, hyp: str) -> float:
    """Word error rate of ``hyp`` against ``ref`` (0 is perfect; can exceed 1)."""
    return edit_distance(words(ref), words(hyp)) / max(1, len(words(ref)))


def han_error_rate(ref: str, hyp: str) -> float:
    """Character error rate over Chinese characters only."""
    ref_han, hyp_han = _HAN.findall(ref), _HAN.findall(hyp)
    return edit_distance(ref_han, hyp_han) / max(1, len(ref_han))
