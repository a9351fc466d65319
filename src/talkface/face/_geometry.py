"""Small geometry helpers shared by the rig's parts: pixel boxes, the face-aligned frame.

Coordinates: "u" runs along the eye line (towards the image's right), "v" is
perpendicular to it pointing down the face, both in pixels, so a tilted face opens its
mouth along its own axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BORDER_TAPER_PX = 6.0


def smoothstep(x: np.ndarray) -> np.ndarray:
    """0 below 0, 1 above 1, a smooth S between."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def curve(points_uv: np.ndarray, u: np.ndarray) -> np.ndarray:
    """v of a lip/lid contour at each u (linear, flat beyond its ends)."""
    order = np.argsort(points_uv[:, 0])
    return np.interp(u, points_uv[order, 0], points_uv[order, 1]).astype(np.float32)


@dataclass(frozen=True, slots=True, kw_only=True)
class Box:
    """An integer pixel box [y0:y1, x0:x1]."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)

    @property
    def shape(self) -> tuple[int, int]:
        return self.y1 - self.y0, self.x1 - self.x0

    @classmethod
    def around(cls, xs: np.ndarray, ys: np.ndarray, size_px: int) -> Box:
        return cls(
            x0=max(0, int(np.floor(np.min(xs)))),
            y0=max(0, int(np.floor(np.min(ys)))),
            x1=min(size_px, int(np.ceil(np.max(xs))) + 1),
            y1=min(size_px, int(np.ceil(np.max(ys))) + 1),
        )


@dataclass(frozen=True, slots=True)
class FaceFrame:
    """The face-aligned coordinate frame: an origin and the (u, v) unit vectors."""

    origin: np.ndarray
    ex: np.ndarray
    ey: np.ndarray

    def uv(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = xs - self.origin[0], ys - self.origin[1]
        return (
            (dx * self.ex[0] + dy * self.ex[1]).astype(np.float32),
            (dx * self.ey[0] + dy * self.ey[1]).astype(np.float32),
        )

    def points_uv(self, points: np.ndarray) -> np.ndarray:
        u, v = self.uv(points[:, 0], points[:, 1])
        return np.stack([u, v], axis=1)

    def moved_to(self, origin: np.ndarray) -> FaceFrame:
        return FaceFrame(origin=np.asarray(origin, np.float64), ex=self.ex, ey=self.ey)


def grid(box: Box) -> tuple[np.ndarray, np.ndarray]:
    """Pixel x and y coordinates of every pixel of ``box`` (float32)."""
    ys, xs = np.mgrid[box.y0 : box.y1, box.x0 : box.x1].astype(np.float32)
    return xs, ys


def border_taper(shape: tuple[int, int]) -> np.ndarray:
    """1 inside, easing to 0 over the outermost pixels, so a warp joins its surroundings."""
    height, width = shape
    ty = np.minimum(np.arange(height), np.arange(height)[::-1]) / BORDER_TAPER_PX
    tx = np.minimum(np.arange(width), np.arange(width)[::-1]) / BORDER_TAPER_PX
    return (smoothstep(ty)[:, None] * smoothstep(tx)[None, :]).astype(np.float32)
