"""Pre-rendering common phrases into the clip cache (``talkface cache warm``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from talkface.errors import ConfigError
from talkface.runtime import Runtime
from talkface.session import Session, SessionOptions


@dataclass(frozen=True, slots=True, kw_only=True)
class WarmOptions:
    """Whom the phrases are warmed for: a ``say`` with the same options hits them.

    Attributes:
        voice: voice name (None: the default voice of each phrase's language).
        language: "en" or "zh" (None: detected per phrase).
        avatar_id: a prepared avatar (None: the bundled portrait).
        speed: speaking rate.
    """

    voice: str | None = None
    language: str | None = None
    avatar_id: str | None = None
    speed: float = 1.0


def read_phrases(lines: Iterable[str]) -> list[str]:
    """One phrase a line; blank lines and lines starting with ``#`` are skipped."""
    return [s for line in lines if (s := line.strip()) and not s.startswith("#")]


async def warm_phrases(runtime: Runtime, phrases: list[str], options: WarmOptions, *,
                       on_phrase: Callable[[int], None] | None = None) -> None:
    """Render each phrase once through a session, so the clip cache keeps it.

    A phrase already cached is played from the cache (cheap); one too long for a clip
    (``cache.max_clip_chars``) is only spoken, which still fills the TTS cache.

    Raises:
        ConfigError: caching is off in ``runtime``'s settings.
        BadInput, BackendError: as :meth:`Session.say`.
    """
    settings = runtime.settings.cache
    if not settings.enabled:
        raise ConfigError("the cache is off (cache.enabled = false); turn it on to warm it")
    session = Session(runtime, SessionOptions(
        voice=options.voice, language=options.language, avatar_id=options.avatar_id,
        speed=options.speed,
    ))
    for done, phrase in enumerate(phrases, start=1):
        async for _ in session.say(phrase):
            pass
        if on_phrase is not None:
            on_phrase(done)
