"""The video cache: the finished MP4 of a ``say`` or a text render job, copied on a hit.

Why. A phrase played from the clip cache still has to be encoded to H.264 and AAC, and
on a CPU animator that costs most of what rendering it does (docs/benchmarks.md). The
MP4 file of a turn is decided by what decides its clip (text, voice, speed, portrait,
size, fps, motion, seed) and by how it is encoded (the ``output`` settings, the PyAV
build that bundles FFmpeg and x264), so it is kept under a key of all of those, and a
hit is one file read and one file write: no model is loaded, nothing drawn or encoded.

Which turns. Only those whose frames are known before they are rendered: a turn of a
new session (first frame 0) whose seed is fixed, or left to the cache; a text short
enough for a clip then renders with ``cache.clip_seed``, exactly as the clip cache
renders it. A longer text with no seed renders with a random one and is not kept.

What identical means. A hit is byte for byte the file that was written when the entry
was made, and a fresh render of the turn writes the same bytes when it speaks the same
audio: the animator and the encoder are deterministic. The voice need not be (piper's
noise differs from one process to the next), which is why the TTS cache keeps each
sentence's speech and a warmed phrase's speech comes from it.

The portrait is named by its content: the SHA-256 of the portrait file's bytes
(``say --portrait``, or the bundled portrait), or a prepared avatar's id, which is the
hash of its image (render jobs and ``cache warm --avatar``).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from talkface.cache._keys import cache_key
from talkface.cache.clips import turn_key_parts
from talkface.cache.store import DiskCache, Entry
from talkface.face.base import AnimatorSettings
from talkface.face.portrait import default_portrait_path, read_portrait_bytes
from talkface.messages import Emotion
from talkface.output.mp4 import OutputSettings, WrittenVideo, check_output_path
from talkface.tts.base import VoiceInfo

logger = logging.getLogger(__name__)

VIDEO_CACHE_NAME = "video"
"""What a request served from this cache reports as its ``cache``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class VideoRequest:
    """A turn rendered into an MP4 of its own, as ``say`` and text render jobs do.

    Attributes:
        pieces: the sentences and their expressions (``SpeechText.sentences()``).
        language: the text's language.
        voice: the voice that speaks it.
        speed: speaking rate.
        portrait: the portrait's content (:func:`portrait_identity`, :func:`avatar_identity`).
        seed: the session's seed (None: left to the cache).
    """

    pieces: tuple[tuple[str, Emotion], ...]
    language: str
    voice: VoiceInfo
    speed: float
    portrait: str
    seed: int | None


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class StoredVideo:
    """A cached MP4 file and what it holds."""

    data: bytes = field(repr=False)
    frames: int
    audio_samples: int
    fps: int

    def written(self, path: Path) -> WrittenVideo:
        """What writing this video to ``path`` wrote."""
        return WrittenVideo(path=path, frames=self.frames, audio_samples=self.audio_samples,
                            fps=self.fps)


def _encoder_build() -> str:
    try:
        return version("av")  # PyAV's wheel bundles the FFmpeg, x264 and AAC encoders
    except PackageNotFoundError:
        return "unknown"


@functools.cache
def _default_portrait_identity() -> str:
    return "file:" + hashlib.sha256(read_portrait_bytes(default_portrait_path())).hexdigest()


def portrait_identity(path: Path | None) -> str:
    """The portrait file at ``path`` (None: the bundled one), named by its content.

    Blocking (reads the file). Raises BadInput as ``load_portrait`` does for a file
    that is missing or too big.
    """
    if path is None:
        return _default_portrait_identity()
    return "file:" + hashlib.sha256(read_portrait_bytes(path)).hexdigest()


def avatar_identity(avatar_id: str | None) -> str:
    """A prepared avatar (None: the bundled portrait), named by its content (blocking)."""
    return portrait_identity(None) if avatar_id is None else f"avatar:{avatar_id}"


def video_key(request: VideoRequest, *, seed: int, animator: AnimatorSettings,
              output: OutputSettings) -> str:
    """The key of ``request``'s MP4 rendered with ``seed``."""
    parts = turn_key_parts(request.pieces, language=request.language, voice=request.voice,
                           speed=request.speed, avatar=request.portrait, animator=animator,
                           seed=seed)
    return cache_key("video", {**parts, "output": output.model_dump(mode="json"),
                               "encoder": _encoder_build()})


def write_atomically(data: bytes, path: Path) -> None:
    """Write ``data`` to ``path`` through a hidden temporary file next to it.

    The temporary file is named as :class:`~talkface.output.mp4.MP4Writer` names its
    own (``.<name>.<random>.mp4``), so a killed process's leftover is found and removed
    the same way (:func:`~talkface.output.mp4.partial_files`).
    """
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".mp4")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


class VideoCache:
    """Finished MP4 files on disk, shared by every process that uses the folder.

    Args:
        store: the folder.
        clip_seed: the seed of a turn whose seed is left to the cache.
        max_clip_chars: longest text rendered with ``clip_seed`` when no seed is given.
    """

    def __init__(self, store: DiskCache, *, clip_seed: int, max_clip_chars: int) -> None:
        self.store = store
        self.clip_seed = clip_seed
        self.max_clip_chars = max_clip_chars

    def seed_for(self, request: VideoRequest) -> int | None:
        """The seed ``request`` renders with, or None when it is drawn at random.

        The same rule as :meth:`~talkface.cache.clips.ClipCache.plan`: with no seed, a
        text of at most ``max_clip_chars`` renders with ``clip_seed``.
        """
        if request.seed is not None:
            return request.seed
        if sum(len(text) for text, _ in request.pieces) <= self.max_clip_chars:
            return self.clip_seed
        return None

    def key_for(self, request: VideoRequest, *, animator: AnimatorSettings,
                output: OutputSettings) -> str | None:
        """The key of ``request``'s MP4, or None when its output is not known beforehand."""
        seed = self.seed_for(request)
        if seed is None:
            return None
        return video_key(request, seed=seed, animator=animator, output=output)

    def has(self, key: str) -> bool:
        """Whether an entry is stored under ``key`` (not read, not counted)."""
        return self.store.path_for(key).exists()

    def lookup(self, key: str) -> StoredVideo | None:
        """The stored MP4 (blocking read and check), or None."""
        entry = self.store.get(key)
        if entry is None:
            return None
        try:
            video = StoredVideo(data=entry.body, frames=int(entry.header["frames"]),
                                audio_samples=int(entry.header["audio_samples"]),
                                fps=int(entry.header["fps"]))
        except (KeyError, TypeError, ValueError):
            video = None
        if video is None or entry.body[4:8] != b"ftyp":  # every MP4 we write starts so
            self.store.discard(key)
            return None
        return video

    def keep(self, key: str, written: WrittenVideo) -> None:
        """Store the MP4 file ``written`` describes (blocking read and write).

        A cache that cannot be written (a full or read-only disk) is logged, not raised:
        the video it would have kept is already where the user asked for it.
        """
        assert written.path is not None, "only a video written to a file can be kept"
        try:
            self.store.put(key, Entry(
                {"frames": written.frames, "audio_samples": written.audio_samples,
                 "fps": written.fps},
                written.path.read_bytes(),
            ))
        except OSError as exc:
            logger.warning("could not keep a video in the %s cache: %s", self.store.name, exc)

    @staticmethod
    def copy_to(video: StoredVideo, output: Path) -> WrittenVideo:
        """Write ``video`` to ``output`` (atomically; blocking)."""
        output = check_output_path(output)
        write_atomically(video.data, output)
        return video.written(output)
