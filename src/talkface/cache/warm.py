"""Pre-rendering common phrases into the caches (``talkface cache warm``).

Each phrase is rendered once as ``talkface say`` renders it: its sentences go into the
TTS cache, the phrase into the clip cache (live turns and sessions play it from there),
and its finished MP4 into the video cache (``say`` and text render jobs copy it from
there, without loading a model or encoding a frame).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from talkface.cache.caches import open_caches
from talkface.cache.videos import VideoCache, VideoRequest, avatar_identity
from talkface.engines import ModelThread
from talkface.errors import ConfigError
from talkface.messages import SpeechAudio, VideoFrame
from talkface.output.mp4 import MP4Writer
from talkface.runtime import Runtime
from talkface.session import Session, SessionOptions
from talkface.text.policy import choose_voice, speech_text


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
    """Render each phrase once through a session of its own, so the caches keep it.

    A phrase already cached is played from the clip cache (cheap), and encoded only
    when its MP4 is not in the video cache yet. One too long for a clip
    (``cache.max_clip_chars``) is only spoken, which still fills the TTS cache.

    Raises:
        ConfigError: caching is off in ``runtime``'s settings.
        BadInput, BackendError: as :meth:`Session.say`.
    """
    settings = runtime.settings.cache
    if not settings.enabled:
        raise ConfigError("the cache is off (cache.enabled = false); turn it on to warm it")
    session_options = SessionOptions(
        voice=options.voice, language=options.language, avatar_id=options.avatar_id,
        speed=options.speed,
    )
    videos = open_caches(settings).videos
    portrait = await asyncio.to_thread(avatar_identity, options.avatar_id)
    encoder = ModelThread("warm-encoder")
    try:
        for done, phrase in enumerate(phrases, start=1):
            # A session per phrase: its first frame is 0, as in `say` and render jobs.
            session = Session(runtime, session_options)
            key = None if videos is None else _video_key(runtime, videos, phrase, options,
                                                         portrait)
            if videos is None or key is None or videos.has(key):
                async for _ in session.say(phrase):
                    pass
            else:
                await _say_and_keep_video(session, phrase, videos, key, encoder)
            if on_phrase is not None:
                on_phrase(done)
    finally:
        encoder.shutdown()


def _video_key(runtime: Runtime, videos: VideoCache, phrase: str, options: WarmOptions,
               portrait: str) -> str | None:
    settings = runtime.settings
    checked = speech_text(phrase, language=options.language,
                          limit_chars=settings.limits.max_text_chars)
    voice = choose_voice(runtime.resolve_voice, options.voice, checked.language)
    return videos.key_for(VideoRequest(
        pieces=tuple(checked.sentences()), language=checked.language, voice=voice,
        speed=options.speed, portrait=portrait, seed=None,
    ), animator=settings.animator, output=settings.output)


async def _say_and_keep_video(session: Session, phrase: str, videos: VideoCache, key: str,
                              encoder: ModelThread) -> None:
    """Say ``phrase``, encoding it as ``talkface say`` does, and keep the MP4."""
    settings = session.runtime.settings
    with tempfile.TemporaryDirectory(prefix="talkface-warm-") as folder:
        writer = MP4Writer(Path(folder) / "phrase.mp4", fps=settings.animator.fps,
                           size_px=settings.animator.size_px, settings=settings.output)
        try:
            async for message in session.say(phrase):
                if isinstance(message, SpeechAudio):
                    await encoder.run(writer.write_speech, message)
                elif isinstance(message, VideoFrame):
                    await encoder.run(writer.write_frame, message)
            written = await encoder.run(writer.close)
        except BaseException:
            encoder.call(writer.abort)
            raise
        await asyncio.to_thread(videos.keep, key, written)
