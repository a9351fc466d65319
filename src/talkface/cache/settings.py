"""Settings of the TTS and clip caches (the ``cache`` section)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class CacheSettings(BaseModel):
    """Where the caches live and how big they may grow.

    Attributes:
        enabled: look sentences up in the TTS cache, phrases in the clip cache and whole
            ``say`` outputs and text render jobs in the video cache (``talkface cache
            warm`` fills them either way).
        dir: the caches' folder, holding ``tts/``, ``clips/`` and ``videos/`` (default:
            ``$TALKFACE_CACHE_DIR`` or ``~/.cache/talkface``).
        max_mb: most megabytes each of ``tts/``, ``clips/`` and ``videos/`` may hold; the
            least recently used entries go first.
        clip_seed: the seed every cached clip is rendered with (blinks, head motion),
            and the seed of a ``say`` or render job given none whose text fits a clip.
        max_clip_chars: longest text (after its emotion tag) kept as one clip; longer
            texts are rendered fresh (their sentences still use the TTS cache).
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    dir: Path | None = None
    max_mb: float = Field(1024.0, gt=0)
    clip_seed: int = Field(0, ge=0)
    max_clip_chars: int = Field(160, ge=1)

    def root(self) -> Path:
        """The caches' folder (``dir`` or the default)."""
        if self.dir is not None:
            return self.dir.expanduser()
        return Path(os.environ.get("TALKFACE_CACHE_DIR") or Path.home() / ".cache" / "talkface")

    @property
    def max_bytes(self) -> int:
        """``max_mb`` in bytes."""
        return int(self.max_mb * 1024 * 1024)
