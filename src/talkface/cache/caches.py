"""The caches a process uses, opened once per folder."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from talkface.cache.clips import ClipCache
from talkface.cache.settings import CacheSettings
from talkface.cache.store import DiskCache
from talkface.cache.tts import TTSCache
from talkface.cache.videos import VideoCache

_open: dict[tuple[Path, int, int, int], Caches] = {}
_open_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class Caches:
    """The TTS, clip and video caches of one folder (None where caching is off)."""

    tts: TTSCache | None
    clips: ClipCache | None
    videos: VideoCache | None = None


def open_caches(settings: CacheSettings, *, force: bool = False) -> Caches:
    """The caches ``settings`` name, shared by every session of this process.

    Args:
        settings: the ``cache`` section.
        force: open them even when ``settings.enabled`` is off (``talkface cache``).
    """
    if not (settings.enabled or force):
        return Caches(None, None, None)
    root = settings.root()
    ident = (root, settings.max_bytes, settings.clip_seed, settings.max_clip_chars)
    with _open_lock:
        caches = _open.get(ident)
        if caches is None:
            caches = Caches(
                TTSCache(DiskCache(root / "tts", max_bytes=settings.max_bytes, name="tts")),
                ClipCache(DiskCache(root / "clips", max_bytes=settings.max_bytes, name="clips"),
                          seed=settings.clip_seed, max_chars=settings.max_clip_chars),
                VideoCache(DiskCache(root / "videos", max_bytes=settings.max_bytes, name="videos"),
                           clip_seed=settings.clip_seed, max_clip_chars=settings.max_clip_chars),
            )
            _open[ident] = caches
        return caches
