"""Reading the portrait a user gives us, safely.

An image is checked before it is decoded: its size in bytes, then its pixel count from
the header (so a decompression bomb is refused without being expanded), then it is
decoded, turned upright by its EXIF orientation and flattened to RGB.
"""

from __future__ import annotations

import io
import warnings
from importlib import resources
from pathlib import Path

import numpy as np

from talkface.errors import BackendUnavailable, BadInput, PayloadTooLarge

MAX_PORTRAIT_BYTES = 25 * 1024 * 1024
MAX_PORTRAIT_PIXELS = 40_000_000
MIN_PORTRAIT_SIDE_PX = 128
DEFAULT_PORTRAIT = "astronaut.png"


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
    """Decode image bytes (JPEG, PNG, WebP, BMP...) to an upright HxWx3 uint8 RGB array.

    Raises:
        PayloadTooLarge: too many bytes or pixels.
        BadInput: not an image, corrupt, or too small.
    """
    try:
        from PIL import Image, ImageOps, UnidentifiedImageError
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
        with warnings.catch_warnings():
            # Pillow warns about large images; the size check below refuses them instead.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
        with image:
            width, height = image.size
            if width * height > MAX_PORTRAIT_PIXELS:
                raise PayloadTooLarge(
                    f"{name} is {width}x{height} px ({width * height / 1e6:.0f} MP); the "
                    f"limit is {MAX_PORTRAIT_PIXELS / 1e6:.0f} MP: downscale it first"
                )
            upright = ImageOps.exif_transpose(image)
            if upright.mode in ("RGBA", "LA", "PA") or "transparency" in upright.info:
                # Transparent parts become white, not black.
                rgba = upright.convert("RGBA")
                canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                upright = Image.alpha_composite(canvas, rgba)
            rgb = np.asarray(upright.convert("RGB"), dtype=np.uint8).copy()
    except PayloadTooLarge:
        raise
    except UnidentifiedImageError:
        raise BadInput(f"{name} is not an image talkface can read (use JPEG, PNG or WebP)") from None
    except Image.DecompressionBombError:
        raise PayloadTooLarge(
            f"{name} has too many pixels; the limit is {MAX_PORTRAIT_PIXELS / 1e6:.0f} MP: "
            "downscale it first"
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise BadInput(f"{name} is corrupt or truncated ({exc}); re-save or re-download it") from None
    if min(rgb.shape[:2]) < MIN_PORTRAIT_SIDE_PX:
        raise BadInput(
            f"{name} is only {rgb.shape[1]}x{rgb.shape[0]} px; use an image of at least "
            f"{MIN_PORTRAIT_SIDE_PX} px on each side"
        )
    return rgb


def load_portrait(path: str | Path | None = None) -> np.ndarray:
    """Read and decode a portrait file (the default portrait when ``path`` is None)."""
    path = default_portrait_path() if path is None else Path(path)
    return decode_portrait(read_portrait_bytes(path), name=f"portrait {Path(path).name}")
