"""Face detection with BlazeFace (MediaPipe's short- and full-range face detectors).

Both models read a square letterboxed image and regress, for each of a fixed grid of
anchors, a face box and six keypoints (eyes, nose tip, mouth centre, ear tragions).
The short-range model is best for faces that fill much of the picture (a selfie); the
full-range one finds small faces too. A portrait is run through both and their answers
are merged, so "no face" and "two faces" are reliable verdicts.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from talkface.face._tflite import TFLiteModel

MIN_SCORE = 0.5
_NMS_IOU = 0.3


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class FaceDetection:
    """One detected face in image pixel coordinates.

    Attributes:
        box: (x0, y0, x1, y1).
        score: detection confidence in [0, 1].
        keypoints: 6x2 array: subject's right eye, left eye, nose tip, mouth centre,
            right ear tragion, left ear tragion.
    """

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray

    @property
    def width_px(self) -> float:
        """Width of the face box, in pixels."""
        return self.box[2] - self.box[0]

    @property
    def height_px(self) -> float:
        """Height of the face box, in pixels."""
        return self.box[3] - self.box[1]


@dataclass(frozen=True, slots=True)
class _DetectorSpec:
    file_name: str
    # (stride, anchors per grid cell) for each group of anchor layers
    layers: tuple[tuple[int, int], ...]


_SHORT_RANGE = _DetectorSpec("face_detection_short_range.tflite", ((8, 2), (16, 6)))
_FULL_RANGE = _DetectorSpec("face_detection_full_range.tflite", ((4, 1),))


def _anchor_centres(input_size_px: int, layers: tuple[tuple[int, int], ...]) -> np.ndarray:
    centres = []
    for stride, per_cell in layers:
        cells = input_size_px // stride
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        grid = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 2)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


class _BlazeFace:
    def __init__(self, spec: _DetectorSpec) -> None:
        self._model = TFLiteModel(spec.file_name)
        self._size = self._model.input_size_px
        self._anchors = _anchor_centres(self._size, spec.layers)

    def __call__(self, image: np.ndarray) -> list[FaceDetection]:
        height, width = image.shape[:2]
        side = max(height, width)
        # Letterbox: pad to a square so the face keeps its shape.
        pad_x, pad_y = (side - width) / 2, (side - height) / 2
        scale = self._size / side
        matrix = np.array([[scale, 0, pad_x * scale], [0, scale, pad_y * scale]], np.float32)
        square = cv2.warpAffine(image, matrix, (self._size, self._size), flags=cv2.INTER_AREA)
        regressors, scores = self._model(square.astype(np.float32) / 127.5 - 1.0)
        regressors = regressors.reshape(-1, 16)
        logits = np.clip(scores.reshape(-1).astype(np.float64), -80.0, 80.0)
        probability = 1.0 / (1.0 + np.exp(-logits))
        keep = np.flatnonzero(probability >= MIN_SCORE)
        detections = []
        for i in keep:
            raw = regressors[i] / self._size
            cx, cy = raw[0] + self._anchors[i, 0], raw[1] + self._anchors[i, 1]
            w, h = raw[2], raw[3]
            points = raw[4:].reshape(6, 2) + self._anchors[i]
            def to_image(xy):
                return xy * side - np.array([pad_x, pad_y])
            box = to_image(np.array([[cx - w / 2, cy - h / 2], [cx + w / 2, cy + h / 2]]))
            detections.append(
                FaceDetection(
                    box=(box[0, 0], box[0, 1], box[1, 0], box[1, 1]),
                    score=float(probability[i]),
                    keypoints=to_image(points).astype(np.float32),
                )
            )
        return detections


@functools.cache
def _detectors() -> tuple[_BlazeFace, _BlazeFace]:
    return _BlazeFace(_SHORT_RANGE), _BlazeFace(_FULL_RANGE)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detect_faces(image: np.ndarray) -> list[FaceDetection]:
    """All faces in an RGB image, most confident first (both detectors, merged by NMS)."""
    candidates: list[FaceDetection] = []
    for detector in _detectors():
        candidates.extend(detector(image))
    candidates.sort(key=lambda d: d.score, reverse=True)
    kept: list[FaceDetection] = []
    for candidate in candidates:
        if all(_iou(candidate.box, other.box) < _NMS_IOU for other in kept):
            kept.append(candidate)
    return kept
