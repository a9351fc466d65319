"""A fake FAQ embedder for unit tests of orchestration (as :mod:`talkface.testing` holds
the other stages' fakes): questions sharing words are similar."""

from __future__ import annotations

import hashlib
import re
from typing import ClassVar, Self

import numpy as np

from talkface.faq.base import Embedder, FAQSettings

DIM = 256


class WordsEmbedder(Embedder):
    """Each word lights one of 256 dimensions; the vector is normalised."""

    name = "words"
    calls: ClassVar[list[int]] = []  # texts per embed() call, across instances

    @classmethod
    def load(cls, settings: FAQSettings) -> Self:
        """A new embedder (there is no model to load)."""
        return cls()

    def embed(self, texts: list[str]) -> np.ndarray:
        """An ``(len(texts), 256)`` float32 array of unit vectors; records the call in ``calls``."""
        type(self).calls.append(len(texts))
        out = np.zeros((len(texts), DIM), np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1.0
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
