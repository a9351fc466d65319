"""468 face landmarks with MediaPipe's FaceMesh model, and a tracker for video.

The model reads a 192x192 crop whose centre, size and roll come either from a face
detection or from the previous landmarks (tracking), and returns 468 points in the crop.
Running it twice, the second time on the crop its own first answer suggests, tightens
the crop and so the points; the tracker does the same from frame to frame.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from talkface.face import topology
from talkface.face._tflite import TFLiteModel
from talkface.face.detect import FaceDetection, detect_faces

_ROI_SCALE = 1.5
MIN_PRESENCE = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class FaceROI:
    """A square, rotated region around a face: centre (px), side (px), roll (radians)."""

    centre_x: float
    centre_y: float
    size_px: float
    angle_rad: float

    @classmethod
    def from_detection(cls, detection: FaceDetection) -> FaceROI:
        """The region around a detected face, turned to the line between its eyes."""
        right_eye, left_eye = detection.keypoints[0], detection.keypoints[1]
        angle = math.atan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0])
        x0, y0, x1, y1 = detection.box
        return cls(
            centre_x=(x0 + x1) / 2,
            centre_y=(y0 + y1) / 2,
            size_px=max(x1 - x0, y1 - y0) * _ROI_SCALE,
            angle_rad=angle,
        )

    @classmethod
    def from_landmarks(cls, points: np.ndarray) -> FaceROI:
        """The region around a face's mesh landmarks, turned to the line between its eyes."""
        right_eye, left_eye = points[33], points[263]
        angle = math.atan2(left_eye[1] - right_eye[1], left_eye[0] - right_eye[0])
        # Measure the extent in the face's own rotated frame.
        cos, sin = math.cos(-angle), math.sin(-angle)
        centre = points[:, :2].mean(axis=0)
        rel = points[:, :2] - centre
        rotated = np.stack(
            [rel[:, 0] * cos - rel[:, 1] * sin, rel[:, 0] * sin + rel[:, 1] * cos], 1
        )
        lo, hi = rotated.min(axis=0), rotated.max(axis=0)
        mid = (lo + hi) / 2
        cos_b, sin_b = math.cos(angle), math.sin(angle)
        return cls(
            centre_x=float(centre[0] + mid[0] * cos_b - mid[1] * sin_b),
            centre_y=float(centre[1] + mid[0] * sin_b + mid[1] * cos_b),
            size_px=float(max(hi - lo)) * _ROI_SCALE,
            angle_rad=angle,
        )

    def crop_matrix(self, output_px: int) -> np.ndarray:
        """2x3 affine matrix from image pixels to the ``output_px`` square crop."""
        scale = output_px / self.size_px
        cos, sin = math.cos(-self.angle_rad) * scale, math.sin(-self.angle_rad) * scale
        half = output_px / 2
        return np.array(
            [
                [cos, -sin, half - cos * self.centre_x + sin * self.centre_y],
                [sin, cos, half - sin * self.centre_x - cos * self.centre_y],
            ],
            np.float64,
        )


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class FaceLandmarks:
    """468 landmarks in image pixels (x, y, z; z is relative depth) and presence score."""

    points: np.ndarray
    presence: float

    @property
    def xy(self) -> np.ndarray:
        """The landmarks' x, y in image pixels, shape ``(468, 2)``."""
        return self.points[:, :2]

    def mouth_opening(self) -> float:
        """Inner-lip gap over the face's height: 0 closed, ~0.1 wide open."""
        gap = np.linalg.norm(
            self.xy[topology.INNER_LIP_UPPER_CENTRE] - self.xy[topology.INNER_LIP_LOWER_CENTRE]
        )
        face_height = np.linalg.norm(self.xy[topology.FOREHEAD_TOP] - self.xy[topology.CHIN])
        return float(gap / face_height) if face_height > 0 else 0.0


class FaceMesh:
    """The 468-point landmark model."""

    def __init__(self) -> None:
        self._model = TFLiteModel("face_landmark.tflite")
        self._size = self._model.input_size_px

    def run(self, image: np.ndarray, roi: FaceROI) -> FaceLandmarks:
        """Landmarks of the face in ``roi`` of an RGB image."""
        matrix = roi.crop_matrix(self._size)
        crop = cv2.warpAffine(
            image, matrix, (self._size, self._size), flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        raw, presence_logit = self._model(crop.astype(np.float32) / 255.0)
        points = raw.reshape(468, 3).astype(np.float64)
        inverse = cv2.invertAffineTransform(matrix)
        xy = points[:, :2] @ inverse[:, :2].T + inverse[:, 2]
        scale = roi.size_px / self._size
        points = np.concatenate([xy, points[:, 2:] * scale], axis=1).astype(np.float32)
        presence = 1.0 / (1.0 + math.exp(-float(np.clip(presence_logit.ravel()[0], -50, 50))))
        return FaceLandmarks(points=points, presence=presence)

    def refine(self, image: np.ndarray, roi: FaceROI, passes: int = 2) -> FaceLandmarks:
        """Run, then re-run on the crop the previous answer suggests."""
        landmarks = self.run(image, roi)
        for _ in range(passes - 1):
            landmarks = self.run(image, FaceROI.from_landmarks(landmarks.points))
        return landmarks


@functools.cache
def face_mesh() -> FaceMesh:
    """The process-wide landmark model (loaded once; calls are serialised)."""
    return FaceMesh()


class FaceTracker:
    """Landmarks frame after frame: detect once, then follow the face with its landmarks.

    Used to measure videos (lip-sync checks), independent of how they were made.
    """

    def __init__(self) -> None:
        self._roi: FaceROI | None = None

    def track(self, image: np.ndarray) -> FaceLandmarks | None:
        """Landmarks of the main face in this frame, or None when no face is seen."""
        mesh = face_mesh()
        if self._roi is None:
            faces = detect_faces(image)
            if not faces:
                return None
            self._roi = FaceROI.from_detection(faces[0])
        landmarks = mesh.refine(image, self._roi)
        if landmarks.presence < MIN_PRESENCE:
            self._roi = None
            return None
        self._roi = FaceROI.from_landmarks(landmarks.points)
        return landmarks
