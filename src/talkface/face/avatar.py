"""Avatar preparation: once per portrait, find the face, frame it, and mark its landmarks.

The result is cached in memory and on disk, keyed by a hash of the portrait's pixels and
the output size, so a portrait is prepared once per machine however often it is used.
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
from talkface.face.detect import FaceDetection, detect_faces
from talkface.face.landmarks import FaceROI, face_mesh

logger = logging.getLogger(__name__)

PREPARATION_VERSION = 1  # bump when the cached data would change
MIN_FACE_WIDTH_PX = 64
# A second face this large (relative to the main one) makes the portrait ambiguous.
SECOND_FACE_RATIO = 0.4
MIN_FACE_FRACTION = 0.20  # the face spans at least this fraction of the framed width
FACE_CENTRE_HEIGHT = 0.40  # the face centre sits this far down the framed picture
_DETECT_MAX_SIDE_PX = 1024


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class PreparedAvatar:
    """A framed portrait and its landmarks, ready to be animated.

    Attributes:
        avatar_id: stable key (hash of pixels, size and preparation version).
        image: size_px x size_px x 3 uint8 RGB, the face framed head-and-shoulders.
        landmarks: 468x3 float32 landmarks in ``image`` pixels.
    """

    avatar_id: str
    image: np.ndarray
    landmarks: np.ndarray

    @property
    def size_px(self) -> int:
        return int(self.image.shape[0])


def avatar_key(image: np.ndarray, size_px: int) -> str:
    """The cache key of ``image`` prepared at ``size_px``."""
    digest = hashlib.sha256()
    digest.update(f"v{PREPARATION_VERSION}:{size_px}:{image.shape}".encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.hexdigest()[:32]


def _main_face(image: np.ndarray) -> FaceDetection:
    scale = min(1.0, _DETECT_MAX_SIDE_PX / max(image.shape[:2]))
    small = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
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


def _framing(image: np.ndarray, face: FaceDetection) -> tuple[float, float, float]:
    """The square crop (x0, y0, side) that frames the face head-and-shoulders."""
    height, width = image.shape[:2]
    side = min(height, width, face.width_px / MIN_FACE_FRACTION)
    centre_x = (face.box[0] + face.box[2]) / 2
    centre_y = (face.box[1] + face.box[3]) / 2
    x0 = float(np.clip(centre_x - side / 2, 0, width - side))
    y0 = float(np.clip(centre_y - FACE_CENTRE_HEIGHT * side, 0, height - side))
    return x0, y0, float(side)


def prepare_avatar(image: np.ndarray, size_px: int) -> PreparedAvatar:
    """Find the one face in ``image``, frame it at ``size_px`` square, mark its landmarks.

    Raises:
        BadInput: no face, several faces, a face too small, or landmarks not found.
    """
    face = _main_face(image)
    x0, y0, side = _framing(image, face)
    scale = size_px / side
    matrix = np.array([[scale, 0, -x0 * scale], [0, scale, -y0 * scale]], np.float64)
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    framed = cv2.warpAffine(image, matrix, (size_px, size_px), flags=interpolation,
                            borderMode=cv2.BORDER_REPLICATE)
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
        avatar_id=avatar_key(image, size_px), image=framed, landmarks=landmarks.points
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

    def prepare(self, image: np.ndarray, size_px: int) -> PreparedAvatar:
        """The prepared avatar for ``image``, preparing and caching it on first use."""
        avatar = self.get(avatar_key(image, size_px))
        if avatar is None:
            avatar = prepare_avatar(image, size_px)
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
