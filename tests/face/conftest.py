"""A second, independent face detector for judging the animator's framing.

The animator finds faces with MediaPipe's BlazeFace; its output is measured here with
OpenCV's Haar cascade (Viola-Jones, ``haarcascade_frontalface_default.xml`` from
opencv-python-headless 4.x, kept in ``data/``). OpenCV 5 moved ``CascadeClassifier`` out of
the wheels talkface installs and stopped shipping the cascades, so this file evaluates the
cascade itself, the way OpenCV's ``detectMultiScale`` does (image pyramid, variance-
normalised stumps, ``groupRectangles``); a test checks it against the face it must find.
"""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

_CASCADE = Path(__file__).parent / "data" / "haarcascade_frontalface_default.xml.gz"


@dataclass(frozen=True, slots=True)
class _Stage:
    threshold: float
    offsets: np.ndarray  # (K, 3 rects, 4 corners) offsets into the flat integral image
    weights: np.ndarray  # (K, 3)
    node_thresholds: np.ndarray  # (K,)
    left: np.ndarray  # (K,) leaf value when the feature is below its threshold
    right: np.ndarray  # (K,)


class HaarFaceDetector:
    """OpenCV's stump-based Haar cascade, evaluated with numpy.

    Args:
        min_size_px: smallest face to look for (as ``minSize`` in OpenCV).
    """

    def __init__(self, cascade_path: Path = _CASCADE) -> None:
        root = ET.fromstring(gzip.decompress(cascade_path.read_bytes()))
        cascade = root.find("cascade")
        assert cascade is not None
        self.window_px = int(cascade.findtext("width", "24"))
        self._features: list[list[tuple[int, int, int, int, float]]] = []
        for feature in cascade.find("features") or ():
            rects = []
            for rect in feature.find("rects") or ():
                x, y, w, h, weight = rect.text.split()  # type: ignore[union-attr]
                rects.append((int(x), int(y), int(w), int(h), float(weight)))
            self._features.append(rects)
        self._by_stride: dict[int, list[_Stage]] = {}
        self._stages_raw = []
        for stage in cascade.find("stages") or ():
            nodes = []
            for weak in stage.find("weakClassifiers") or ():
                inner = weak.findtext("internalNodes", "").split()
                leaves = weak.findtext("leafValues", "").split()
                nodes.append((int(inner[2]), float(inner[3]), float(leaves[0]), float(leaves[1])))
            self._stages_raw.append((float(stage.findtext("stageThreshold", "0")), nodes))

    def _stages(self, stride: int) -> list[_Stage]:
        """The cascade with its rectangles as offsets into an integral image ``stride`` wide."""
        if stride in self._by_stride:
            return self._by_stride[stride]
        stages = []
        for threshold, nodes in self._stages_raw:
            offsets = np.zeros((len(nodes), 3, 4), np.int64)
            weights = np.zeros((len(nodes), 3), np.float64)
            for k, (feature, _, _, _) in enumerate(nodes):
                for r, (x, y, w, h, weight) in enumerate(self._features[feature]):
                    offsets[k, r] = (y * stride + x, y * stride + x + w,
                                     (y + h) * stride + x, (y + h) * stride + x + w)
                    weights[k, r] = weight
            stages.append(_Stage(
                threshold=threshold, offsets=offsets, weights=weights,
                node_thresholds=np.array([n[1] for n in nodes]),
                left=np.array([n[2] for n in nodes]), right=np.array([n[3] for n in nodes]),
            ))
        self._by_stride[stride] = stages
        return stages

    def _raw(self, gray: np.ndarray, min_size_px: int,
             scale_factor: float) -> list[tuple[int, ...]]:
        win = self.window_px
        found: list[tuple[int, ...]] = []
        factor = 1.0
        while True:
            size = round(win * factor)
            scaled_w, scaled_h = round(gray.shape[1] / factor), round(gray.shape[0] / factor)
            if scaled_w - win <= 0 or scaled_h - win <= 0:
                break
            if size >= min_size_px:
                scaled = cv2.resize(gray, (scaled_w, scaled_h), interpolation=cv2.INTER_LINEAR)
                step = 1 if factor > 2 else 2
                for x, y in self._scan(scaled, step):
                    found.append((round(x * factor), round(y * factor), size, size))
            factor *= scale_factor
        return found

    def _scan(self, image: np.ndarray, step: int) -> list[tuple[int, int]]:
        win = self.window_px
        integral, squares = cv2.integral2(image, sdepth=cv2.CV_64F, sqdepth=cv2.CV_64F)
        stride = integral.shape[1]
        flat, flat_sq = integral.ravel(), squares.ravel()
        ys, xs = np.mgrid[0 : image.shape[0] - win : step, 0 : image.shape[1] - win : step]
        base = (ys * stride + xs).ravel()
        # Variance over the window less a 1 px border, as OpenCV normalises.
        corners = np.array([stride + 1, stride + win - 1, (win - 1) * stride + 1,
                            (win - 1) * stride + win - 1])
        def box(values: np.ndarray, at: np.ndarray) -> np.ndarray:
            return (values[at + corners[3]] - values[at + corners[1]]
                    - values[at + corners[2]] + values[at + corners[0]])
        area = float((win - 2) ** 2)
        norm = area * box(flat_sq, base) - box(flat, base) ** 2
        keep = norm > 0
        base, norm = base[keep], np.sqrt(norm[keep])
        keep = area / norm < 0.1
        base, norm = base[keep], norm[keep]
        for stage in self._stages(stride):
            if not len(base):
                break
            at = base[:, None, None, None] + stage.offsets[None]
            sums = flat[at[..., 3]] - flat[at[..., 1]] - flat[at[..., 2]] + flat[at[..., 0]]
            value = (sums * stage.weights[None]).sum(axis=2) / norm[:, None]
            below = value < stage.node_thresholds[None]
            votes = np.where(below, stage.left, stage.right).sum(axis=1)
            keep = votes >= stage.threshold
            base, norm = base[keep], norm[keep]
        return [(int(b % stride), int(b // stride)) for b in base]

    def detect(self, rgb: np.ndarray, *, min_size_px: int = 40, scale_factor: float = 1.1,
               min_neighbours: int = 3) -> list[tuple[int, int, int, int]]:
        """Faces as (x, y, w, h), largest first (``detectMultiScale`` with these options)."""
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        return _group(self._raw(gray, min_size_px, scale_factor), min_neighbours, 0.2)


def _group(rects: list[tuple[int, ...]], threshold: int,
           eps: float) -> list[tuple[int, int, int, int]]:
    """OpenCV's ``groupRectangles``: cluster similar boxes, average, drop weak and nested ones."""
    labels = list(range(len(rects)))

    def find(i: int) -> int:
        while labels[i] != i:
            labels[i] = labels[labels[i]]
            i = labels[i]
        return i

    for i, a in enumerate(rects):
        for j in range(i):
            b = rects[j]
            delta = eps * (min(a[2], b[2]) + min(a[3], b[3])) * 0.5
            if (abs(a[0] - b[0]) <= delta and abs(a[1] - b[1]) <= delta
                    and abs(a[0] + a[2] - b[0] - b[2]) <= delta
                    and abs(a[1] + a[3] - b[1] - b[3]) <= delta):
                labels[find(i)] = find(j)
    clusters: dict[int, list[tuple[int, ...]]] = {}
    for i, rect in enumerate(rects):
        clusters.setdefault(find(i), []).append(rect)
    averaged = [(tuple(round(v) for v in np.mean(members, axis=0)), len(members))
                for members in clusters.values() if len(members) > threshold]
    kept = []
    for i, (r1, n1) in enumerate(averaged):
        nested = False
        for j, (r2, n2) in enumerate(averaged):
            dx, dy = round(r2[2] * eps), round(r2[3] * eps)
            if (i != j and r1[0] >= r2[0] - dx and r1[1] >= r2[1] - dy
                    and r1[0] + r1[2] <= r2[0] + r2[2] + dx and r1[1] + r1[3] <= r2[1] + r2[3] + dy
                    and (n2 > max(3, n1) or n1 < 3)):
                nested = True
                break
        if not nested:
            kept.append(r1)
    return sorted(kept, key=lambda r: r[2] * r[3], reverse=True)  # type: ignore[return-value]


@pytest.fixture(scope="session")
def haar() -> HaarFaceDetector:
    """OpenCV's Haar frontal-face cascade: a detector the animator does not use."""
    return HaarFaceDetector()
