"""Matching a question to a FAQ entry by cosine similarity of sentence embeddings.

An entry's score for a question is the mean of two cosine similarities: to the entry's
closest phrasing, and to the centroid of all its phrasings (one lucky phrasing alone
matches too much; the centroid alone misses paraphrases of one phrasing). A question is
a hit when its best entry scores at least ``min_similarity`` and leads by ``min_margin``
the best of its rivals: the runner-up entry, and the background questions (small talk,
neighbouring shop topics) scored the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from talkface.faq.background import BACKGROUND_QUESTIONS
from talkface.faq.base import Embedder, FAQEntry, FAQMatch

# A background question this close to a phrasing of the FAQ is left out: the FAQ
# answers it, so it must not stand as the FAQ's rival.
_BACKGROUND_MAX_SIMILARITY = 0.92


@dataclass(frozen=True, slots=True, kw_only=True)
class FAQScores:
    """How a question scored against the FAQ (for tuning and benchmarks).

    Attributes:
        entry_index: the best entry.
        question_index: its closest phrasing (index into the flat list of phrasings).
        best: the best entry's score.
        rival: the best score of the runner-up entry and the background questions.
    """

    entry_index: int
    question_index: int
    best: float
    rival: float

    @property
    def margin(self) -> float:
        """``best`` minus ``rival``: how clearly the best entry wins."""
        return self.best - self.rival


def _unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=-1, keepdims=True), 1e-12)


class FAQMatcher:
    """A FAQ with its phrasings embedded once; :meth:`match` embeds only the question.

    Blocking: build and call it in the embedder's worker thread.

    Args:
        entries: the FAQ.
        embedder: the loaded embedding model.
        min_similarity: lowest score of a hit.
        min_margin: least lead of the best entry over its best rival.
        background: questions the FAQ does not answer (default: a built-in set).
    """

    def __init__(self, entries: tuple[FAQEntry, ...], embedder: Embedder, *,
                 min_similarity: float, min_margin: float,
                 background: tuple[str, ...] = BACKGROUND_QUESTIONS) -> None:
        if not entries:
            raise ValueError("a FAQ needs at least one entry")
        self.entries = entries
        self.min_similarity = min_similarity
        self.min_margin = min_margin
        self._embedder = embedder
        self._questions = [q for entry in entries for q in entry.questions]
        self._owner = np.array([i for i, entry in enumerate(entries) for _ in entry.questions])
        self._matrix = embedder.embed(self._questions)  # (phrasings, dim), unit rows
        self._centroids = _unit(np.stack([self._matrix[self._owner == i].mean(axis=0)
                                          for i in range(len(entries))]))
        if background:
            rivals = embedder.embed(list(background))
            far = (rivals @ self._matrix.T).max(axis=1) < _BACKGROUND_MAX_SIMILARITY
            self._background = rivals[far]
        else:
            self._background = np.zeros((0, self._matrix.shape[1]), np.float32)

    def scores(self, text: str) -> FAQScores:
        """How ``text`` scores against every entry and its best rival."""
        query = self._embedder.embed([text])[0]
        similarity = self._matrix @ query
        closest = np.full(len(self.entries), -np.inf)
        np.maximum.at(closest, self._owner, similarity)
        per_entry = (closest + self._centroids @ query) / 2
        order = np.argsort(per_entry)[::-1]
        best_entry = int(order[0])
        runner_up = float(per_entry[order[1]]) if len(order) > 1 else -1.0
        # A background question is scored as an entry of one phrasing (its own centroid).
        background = float((self._background @ query).max()) if len(self._background) else -1.0
        mine = np.flatnonzero(self._owner == best_entry)
        return FAQScores(entry_index=best_entry,
                         question_index=int(mine[np.argmax(similarity[mine])]),
                         best=float(per_entry[best_entry]),
                         rival=max(runner_up, background))

    def is_hit(self, scores: FAQScores) -> bool:
        """Whether ``scores`` reach both ``min_similarity`` and ``min_margin``."""
        return scores.best >= self.min_similarity and scores.margin >= self.min_margin

    def match(self, text: str) -> FAQMatch | None:
        """The entry that answers ``text``, or None (the question goes to the LLM)."""
        scores = self.scores(text)
        if not self.is_hit(scores):
            return None
        return FAQMatch(entry_index=scores.entry_index,
                        answer=self.entries[scores.entry_index].answer,
                        question=self._questions[scores.question_index],
                        similarity=scores.best, margin=scores.margin)
