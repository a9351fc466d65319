"""Avatar preparation: once per portrait, find the face, frame it, and mark its landmarks.

This is the one place where a portrait is framed: every frame of every session, ``say``,
``chat`` and render job shows the square crop chosen here (see :class:`Framing`). The
crop is fixed for the avatar's life; head motion moves the head inside it.

The result is cached in memory and on disk, keyed by a hash of the portrait's pixels,
the output size and the framing, so a portrait is prepared once per machine however
often it is used.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from talkface.errors import BadInput
from talkface.face.base import Framing
from talkface.face.detect import FaceDetection, detect_faces
from talkface.face.landmarks import FaceROI, face_mesh

logger = logging.getLogger(__name__)

PREPARATION_VERSION = 2  # bump when the cached data would change
MIN_FACE_WIDTH_PX = 64
# A second face this large (relative to the main one) makes the portrait ambiguous.
SECOND_FACE_RATIO = 0.4
MIN_FACE_FRACTION = 0.20  # "full": the face spans at least this fraction of the width
FACE_CENTRE_HEIGHT = 0.40  # "full": the face centre sits this far down the picture
# For "face" and "bust": the fraction of the frame's height that the detected face box
# (brows to chin) fills, and how far down the frame its centre sits. A face box of 0.42
# is a head-and-shoulders shot with room above the hair for the head to sway.
FACE_BOX_HEIGHT = {Framing.FACE: 0.60, Framing.BUST: 0.42}
FACE_BOX_CENTRE = {Framing.FACE: 0.47, Framing.BUST: 0.46}
_DETECT_MAX_SIDE_PX = 1024


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class PreparedAvatar:
    """A framed portrait and its landmarks, ready to be animated.

    Attributes:
        avatar_id: stable key (hash of pixels, size, framing and preparation version).
        image: size_px x size_px x 3 uint8 RGB, the face framed as asked.
        landmarks: 468x3 float32 landmarks in ``image`` pixels.
    """

    avatar_id: str
    image: np.ndarray
    landmarks: np.ndarray

    @property
    def size_px(self) -> int:
        """Side of the square prepared image, in pixels."""
        return int(self.image.shape[0])


def avatar_key(image: np.ndarray, size_px: int, framing: Framing = Framing.BUST) -> str:
    """The cache key of ``image`` prepared at ``size_px`` with ``framing``."""
    digest = hashlib.sha256()
    digest.update(f"v{PREPARATION_VERSION}:{size_px}:{Framing(framing).value}:{image.shape}".encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()[:32]


def _main_face(image: np.ndarray) -> FaceDetection:
    scale = min(1.0, _DETECT_MAX_SIDE_PX / max(image.shape[:2]))
    small = (
        cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if scale < 1
        else image
    )
    faces = detect_faces(small)
    if not faces:
        raise BadInput(
            "no face found in the portrait; use a sharp, well-lit, front-facing photo of one person"
        )
    faces.sort(key=lambda f: f.width_px, reverse=True)
    main = faces[0]
    others = [f for f in faces[1:] if f.width_px >= SECOND_FACE_RATIO * main.width_px]
    if others:
        raise BadInput(
            f"found {len(others) + 1} faces in the portrait; crop it to the one person "
            "who should speak"
        )
    if scale < 1:
        main = FaceDetection(
            box=tuple(v / scale for v in main.box),  # type: ignore[arg-type]
            score=main.score,
            keypoints=main.keypoints / scale,
        )
    if main.width_px < MIN_FACE_WIDTH_PX:
        raise BadInput(
            f"the face is only {main.width_px:.0f} px wide; use a photo where the face is "
            f"at least {MIN_FACE_WIDTH_PX} px wide (closer, or higher resolution)"
        )
    return main


def frame_face(image_shape: tuple[int, ...], face: FaceDetection,
               framing: Framing) -> tuple[int, int, int]:
    """The square crop (x0, y0, side), in whole pixels of the portrait, that frames ``face``.

    The crop stays inside the portrait: a face near its edge is framed off-centre rather
    than beside invented pixels, and a portrait too small for the framing is shown whole
    across its shorter side.
    """
    height, width = image_shape[:2]
    centre_x = (face.box[0] + face.box[2]) / 2
    centre_y = (face.box[1] + face.box[3]) / 2
    if framing == Framing.FULL:
        side = min(height, width, face.width_px / MIN_FACE_FRACTION)
        top = centre_y - FACE_CENTRE_HEIGHT * side
    else:
        side = min(height, width, face.height_px / FACE_BOX_HEIGHT[framing])
        top = centre_y - FACE_BOX_CENTRE[framing] * side
    side_px = max(1, round(side))
    x0 = int(np.clip(round(centre_x - side_px / 2), 0, width - side_px))
    y0 = int(np.clip(round(top), 0, height - side_px))
    return x0, y0, side_px


def _crop_and_scale(image: np.ndarray, crop: tuple[int, int, int], size_px: int) -> np.ndarray:
    x0, y0, side = crop
    square = image[y0 : y0 + side, x0 : x0 + side]
    if side == size_px:
        return np.ascontiguousarray(square)
    if side > size_px:
        return cv2.resize(square, (size_px, size_px), interpolation=cv2.INTER_AREA)
    # Enlarging a small crop: Lanczos keeps edges clean where nearest or bilinear would
    # look blocky or soft, and a light unsharp mask gives back some of the lost detail.
    enlarged = cv2.resize(square, (size_px, size_px), interpolation=cv2.INTER_LANCZOS4)
    sigma = 0.5 * size_px / side
    blurred = cv2.GaussianBlur(enlarged, (0, 0), sigma)
    return cv2.addWeighted(enlarged, 1.35, blurred, -0.35, 0)


def prepare_avatar(image: np.ndarray, size_px: int,
                   framing: Framing = Framing.BUST) -> PreparedAvatar:
    """Find the one face in ``image``, frame it at ``size_px`` square, mark its landmarks.

    Raises:
        BadInput: no face, several faces, a face too small, or landmarks not found.
    """
    face = _main_face(image)
    crop = frame_face(image.shape, face, Framing(framing))
    x0, y0, side = crop
    scale = size_px / side
    framed = _crop_and_scale(image, crop, size_px)
    moved = FaceDetection(
        box=(
            (face.box[0] - x0) * scale,
            (face.box[1] - y0) * scale,
            (face.box[2] - x0) * scale,
            (face.box[3] - y0) * scale,
        ),
        score=face.score,
        keypoints=((face.keypoints - (x0, y0)) * scale).astype(np.float32),
    )
    landmarks = face_mesh().refine(framed, FaceROI.from_detection(moved), passes=3)
    if landmarks.presence < 0.5:
        raise BadInput(
            "no clear face found in the portrait (something face-like was detected, but not "
            "its eyes, nose and mouth); use a sharp, well-lit, front-facing photo"
        )
    return PreparedAvatar(
        avatar_id=avatar_key(image, size_px, framing), image=framed, landmarks=landmarks.points
    )


def default_cache_dir() -> Path:
    """``$TALKFACE_CACHE_DIR`` or ``~/.cache/talkface``."""
    return Path(os.environ.get("TALKFACE_CACHE_DIR") or Path.home() / ".cache" / "talkface")


class AvatarStore:
    """Prepared avatars in memory (LRU) and on disk (one ``.npz`` per avatar).

    Args:
        cache_dir: folder for the disk cache; None keeps avatars in memory only.
        max_in_memory: most avatars kept in memory.
    """

    def __init__(self, cache_dir: Path | None, *, max_in_memory: int = 64) -> None:
        self._dir = cache_dir / "avatars" if cache_dir is not None else None
        self._memory: collections.OrderedDict[str, PreparedAvatar] = collections.OrderedDict()
        self._max = max_in_memory
        self._lock = threading.Lock()

    def get(self, avatar_id: str) -> PreparedAvatar | None:
        """A prepared avatar by id, from memory or disk; None when unknown."""
        with self._lock:
            avatar = self._memory.get(avatar_id)
            if avatar is not None:
                self._memory.move_to_end(avatar_id)
                return avatar
        avatar = self._read(avatar_id)
        if avatar is not None:
            self._remember(avatar)
        return avatar

    def prepare(self, image: np.ndarray, size_px: int,
                framing: Framing = Framing.BUST) -> PreparedAvatar:
        """The prepared avatar for ``image``, preparing and caching it on first use."""
        avatar = self.get(avatar_key(image, size_px, framing))
        if avatar is None:
            avatar = prepare_avatar(image, size_px, framing)
            self._write(avatar)
            self._remember(avatar)
        return avatar

    def _remember(self, avatar: PreparedAvatar) -> None:
        with self._lock:
            self._memory[avatar.avatar_id] = avatar
            self._memory.move_to_end(avatar.avatar_id)
            while len(self._memory) > self._max:
                self._memory.popitem(last=False)

    def _path(self, avatar_id: str) -> Path | None:
        if self._dir is None or not avatar_id.isalnum():
            return None
        return self._dir / f"{avatar_id}.npz"

    def _read(self, avatar_id: str) -> PreparedAvatar | None:
        path = self._path(avatar_id)
        if path is None or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                return PreparedAvatar(
                    avatar_id=avatar_id, image=data["image"], landmarks=data["landmarks"]
                )
        except (OSError, KeyError, ValueError) as exc:
            logger.warning("ignoring unreadable avatar cache file %s: %s", path, exc)
            return None

    def _write(self, avatar: PreparedAvatar) -> None:
        path = self._path(avatar.avatar_id)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # Write then rename, so a crash never leaves a half-written cache file.
            with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
                np.savez_compressed(f, image=avatar.image, landmarks=avatar.landmarks)
            os.replace(f.name, path)
        except OSError as exc:
            logger.warning("could not cache avatar in %s: %s", path.parent, exc)
