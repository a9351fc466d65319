"""Disk caches in front of the engines: speech per sentence, rendered clips per phrase.

Both live in one folder (``cache.dir``, default ``$TALKFACE_CACHE_DIR`` or
``~/.cache/talkface``), in ``tts/`` and ``clips/``, bounded by ``cache.max_mb`` each,
and are safe to share between processes. They run wherever sessions run (the gateway
under the Ray host), in front of the engines, so a hit costs no engine call.
"""

from talkface.cache.caches import Caches, open_caches
from talkface.cache.clips import Clip, ClipCache, ClipPlan, speak_clip_turn
from talkface.cache.settings import CacheSettings
from talkface.cache.store import CacheStats, DiskCache, Entry
from talkface.cache.tts import TTSCache

__all__ = [
    "CacheSettings", "CacheStats", "Caches", "Clip", "ClipCache", "ClipPlan", "DiskCache",
    "Entry", "TTSCache", "open_caches", "speak_clip_turn",
]
