"""Reading the portrait a user gives us, safely.

Every portrait (``--portrait``, ``POST /v1/avatars``, the bundled one) goes through
:func:`decode_portrait`, which bounds what decoding may cost:

* its size in bytes is checked, then its pixel count from the header, so a
  decompression bomb is refused without being expanded (:data:`MAX_PORTRAIT_PIXELS`);
* an image over :data:`MAX_DECODED_PIXELS` is decoded reduced by a whole factor, to
  between 1 and 4 MP: a JPEG inside the decoder (at 1/2, 1/4 or 1/8 scale), any other
  format in strips, so a large image is held once, at the size of its file's pixels,
  and never converted or copied at full size;
* portraits are decoded on :data:`MAX_CONCURRENT_DECODES` threads of their own, so at
  most that many at once in a process; at most :data:`MAX_WAITING_DECODES` more wait,
  each for at most :data:`DECODE_WAIT_S`; beyond that the caller gets
  :class:`~talkface.errors.Overloaded` (HTTP 503).

So the memory that decoding takes is bounded: at most ~4 bytes per pixel of the largest
image allowed (160 MB at 40 MP) plus ~50 MB, per decode that runs at once.
The image is then turned upright by its EXIF orientation and flattened to RGB.
"""

from __future__ import annotations

import io
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from talkface.errors import BackendUnavailable, BadInput, Overloaded, PayloadTooLarge

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

T = TypeVar("T")

MAX_PORTRAIT_BYTES = 25 * 1024 * 1024
MAX_PORTRAIT_PIXELS = 40_000_000
"""Images with more pixels are refused, from their header, before anything is decoded."""
MAX_DECODED_PIXELS = 4_000_000
"""Larger images are decoded reduced, to between 1 and 4 MP. Framing a face takes ~1-2 MP
(the animator's frames are at most 2048 px, and the face fills a fifth of them or more)."""
MAX_CONCURRENT_DECODES = 2
MAX_WAITING_DECODES = 2
DECODE_WAIT_S = 10.0
MIN_PORTRAIT_SIDE_PX = 128
DEFAULT_PORTRAIT = "astronaut.png"
_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
_STRIP_ROWS = 64  # rows of the reduced image made per strip
_EXIF_ORIENTATION = 0x0112


class DecodeWorkers:
    """Runs decodes on ``workers`` threads of their own; at most ``max_waiting`` more wait,
    each for at most ``wait_s`` until a thread is free.

    Threads of their own, not the callers' (a server's many worker threads): the C
    allocator keeps what a thread freed for that thread's later use, so decoding on a few
    fixed threads bounds the memory that stays allocated between decodes, and the peak.
    """

    def __init__(self, workers: int, *, max_waiting: int, wait_s: float) -> None:
        if workers < 1 or max_waiting < 0 or wait_s < 0:
            raise ValueError("DecodeWorkers needs workers >= 1, max_waiting >= 0, wait_s >= 0")
        self.workers = workers
        self.max_waiting = max_waiting
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._pending = 0  # running or waiting
        self._executor: ThreadPoolExecutor | None = None

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on a decode thread; blocks until it is done.

        Raises:
            Overloaded: every thread is busy and too many callers wait already, or no
                thread came free within ``wait_s``.
        """
        with self._lock:
            if self._pending >= self.workers + self.max_waiting:
                raise self._busy()
            waits = self._pending >= self.workers  # else a thread is free for it now
            self._pending += 1
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="decode")
            executor = self._executor
        try:
            started = threading.Event()

            def job() -> T:
                started.set()
                return fn(*args)

            future = executor.submit(job)
            if waits and not started.wait(self.wait_s) and future.cancel():
                raise self._busy()
            return future.result()
        finally:
            with self._lock:
                self._pending -= 1

    def _busy(self) -> Overloaded:
        return Overloaded(
            f"this server is decoding {self.workers} images already and others are waiting; "
            "send the portrait again in a few seconds",
            retry_after_s=2.0,
        )


DECODE_WORKERS = DecodeWorkers(MAX_CONCURRENT_DECODES, max_waiting=MAX_WAITING_DECODES,
                               wait_s=DECODE_WAIT_S)
"""The threads that decode every portrait in this process."""


def default_portrait_path() -> Path:
    """The portrait shipped with talkface (NASA, public domain; see face/data/CREDITS.md)."""
    return Path(str(resources.files("talkface.face").joinpath("data", DEFAULT_PORTRAIT)))


def read_portrait_bytes(path: str | Path) -> bytes:
    """The bytes of a portrait file, with clear errors for missing or oversized files."""
    path = Path(path).expanduser()
    if not path.exists():
        raise BadInput(f"portrait {path} does not exist")
    if not path.is_file():
        raise BadInput(f"portrait {path} is not a file")
    size = path.stat().st_size
    if size > MAX_PORTRAIT_BYTES:
        raise PayloadTooLarge(
            f"portrait {path.name} is {size / 2**20:.0f} MiB; the limit is "
            f"{MAX_PORTRAIT_BYTES // 2**20} MiB: save it as a smaller JPEG"
        )
    return path.read_bytes()


def decode_portrait(data: bytes, *, name: str = "portrait") -> np.ndarray:
    """Decode image bytes (JPEG, PNG, WebP, BMP, GIF, TIFF) to an upright HxWx3 uint8 RGB
    array of at most :data:`MAX_DECODED_PIXELS` pixels.

    Raises:
        PayloadTooLarge: too many bytes or pixels.
        BadInput: not an image, corrupt, or too small.
        Overloaded: too many portraits are being decoded in this process; try again.
    """
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as exc:
        raise BackendUnavailable("reading portraits needs Pillow; run: pip install pillow") from exc
    if len(data) > MAX_PORTRAIT_BYTES:
        raise PayloadTooLarge(
            f"{name} is {len(data) / 2**20:.0f} MiB; the limit is "
            f"{MAX_PORTRAIT_BYTES // 2**20} MiB: save it as a smaller JPEG"
        )
    if not data:
        raise BadInput(f"{name} is empty")
    try:
        return DECODE_WORKERS.run(_decode, data, name)
    except UnidentifiedImageError:
        raise BadInput(
            f"{name} is not an image talkface can read (use JPEG, PNG or WebP)"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own alarm (over ~90 MP; a warning, or an error where warnings are
        # errors). It is not silenced: catch_warnings is not thread-safe.
        raise PayloadTooLarge(
            f"{name} has too many pixels; the limit is {MAX_PORTRAIT_PIXELS / 1e6:.0f} MP: "
            "downscale it first"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadInput(
            f"{name} is corrupt or truncated ({exc}); re-save or re-download it"
        ) from None


def _decode(data: bytes, name: str) -> np.ndarray:
    from PIL import Image

    image = Image.open(io.BytesIO(data), formats=_FORMATS)
    with image:
        width, height = image.size
        if width * height > MAX_PORTRAIT_PIXELS:
            raise PayloadTooLarge(
                f"{name} is {width}x{height} px ({width * height / 1e6:.0f} MP); the "
                f"limit is {MAX_PORTRAIT_PIXELS / 1e6:.0f} MP: downscale it first"
            )
        if min(width, height) < MIN_PORTRAIT_SIDE_PX:
            raise BadInput(
                f"{name} is only {width}x{height} px; use an image of at least "
                f"{MIN_PORTRAIT_SIDE_PX} px on each side"
            )
        factor = _reduction(width * height)
        if factor > 1:
            # A JPEG is decoded at the largest of 1/2, 1/4, 1/8 scale that is not smaller;
            # other formats ignore this and are reduced in strips below.
            image.draft(None, (-(-width // factor), -(-height // factor)))
        orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
        transparent = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
        reduced = _load_reduced(image, "RGBA" if transparent else "RGB")
    upright = _upright(reduced, orientation)
    if upright.mode == "RGBA":
        # Transparent parts become white, not black.
        canvas = Image.new("RGBA", upright.size, (255, 255, 255, 255))
        upright = Image.alpha_composite(canvas, upright).convert("RGB")
    return np.array(upright, dtype=np.uint8)


def _reduction(pixels: int) -> int:
    """The smallest whole factor that brings ``pixels`` to at most MAX_DECODED_PIXELS."""
    return max(1, math.ceil(math.sqrt(pixels / MAX_DECODED_PIXELS)))


def _load_reduced(image: PILImage, mode: str) -> PILImage:
    """``image`` decoded, in ``mode``, reduced to at most MAX_DECODED_PIXELS.

    The decoded image is the only full-size copy: it is converted and reduced a strip at
    a time (converting or reducing it whole would copy it, and reducing RGBA copies it
    premultiplied).
    """
    from PIL import Image

    image.load()
    width, height = image.size
    factor = _reduction(width * height)
    if factor == 1:
        return image.convert(mode)
    reduced = Image.new(mode, (-(-width // factor), -(-height // factor)))
    rows = _STRIP_ROWS * factor
    for top in range(0, height, rows):
        strip = image.crop((0, top, width, min(height, top + rows))).convert(mode)
        reduced.paste(strip.reduce(factor), (0, top // factor))
    return reduced


def _upright(image: PILImage, orientation: int) -> PILImage:
    """``image`` turned as its EXIF orientation tag (1-8) says it should be viewed."""
    from PIL.Image import Transpose

    method = {
        2: Transpose.FLIP_LEFT_RIGHT,
        3: Transpose.ROTATE_180,
        4: Transpose.FLIP_TOP_BOTTOM,
        5: Transpose.TRANSPOSE,
        6: Transpose.ROTATE_270,
        7: Transpose.TRANSVERSE,
        8: Transpose.ROTATE_90,
    }.get(orientation)
    return image if method is None else image.transpose(method)


def load_portrait(path: str | Path | None = None) -> np.ndarray:
    """Read and decode a portrait file (the default portrait when ``path`` is None)."""
    path = default_portrait_path() if path is None else Path(path)
    return decode_portrait(read_portrait_bytes(path), name=f"portrait {Path(path).name}")
