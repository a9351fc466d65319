"""Disk caches in front of the engines: speech per sentence, rendered clips per phrase,
and the finished MP4 of a ``say`` or text render job.

They live in one folder (``cache.dir``, default ``$TALKFACE_CACHE_DIR`` or
``~/.cache/talkface``), in ``tts/``, ``clips/`` and ``videos/``, bounded by
``cache.max_mb`` each, and are safe to share between processes. They run wherever
sessions run (the gateway under the Ray host), in front of the engines, so a hit costs
no engine call (and a video hit no encoding either).
"""

from talkface.cache.caches import Caches, open_caches
from talkface.cache.clips import CLIP_HIT_MARK, Clip, ClipCache, ClipPlan, speak_clip_turn
from talkface.cache.settings import CacheSettings
from talkface.cache.store import CacheStats, DiskCache, Entry
from talkface.cache.tts import TTS_HIT_MARK, TTSCache
from talkface.cache.videos import (
    VIDEO_CACHE_NAME,
    StoredVideo,
    VideoCache,
    VideoRequest,
    avatar_identity,
    portrait_identity,
)

__all__ = [
    "CLIP_HIT_MARK",
    "TTS_HIT_MARK",
    "VIDEO_CACHE_NAME",
    "CacheSettings",
    "CacheStats",
    "Caches",
    "Clip",
    "ClipCache",
    "ClipPlan",
    "DiskCache",
    "Entry",
    "StoredVideo",
    "TTSCache",
    "VideoCache",
    "VideoRequest",
    "avatar_identity",
    "open_caches",
    "portrait_identity",
    "speak_clip_turn",
]
