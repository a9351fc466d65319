"""The mouth's pixels: where the lips part, and what shows between them.

The lips are never painted. The rig's warp moves the portrait's own lip pixels (the
upper lip up a little, the lower lip and jaw down), so the lips keep their texture and
colour however wide the mouth opens. Only the band that opens between them is new, and
it is built from the portrait:

* where the portrait shows teeth, they stay attached to the jaw they belong to (the
  lips part along the dark line between upper and lower teeth, or below the upper teeth
  when they rest on the lower lip), and the band that opens is the portrait's own
  darkest mouth colour;
* where the portrait's mouth is shut, the interior is shaded from the lips' colour:
  darkest at the back, lighter on the inner sides of the lips, darker towards the
  corners, lit from the side the face is lit from, with the edge of the upper teeth
  (coloured after the skin's highlights) and, wide open, a tongue.

Every edge of the band is feathered over a pixel or two, so it blends into the lips.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import cv2
import numpy as np

from talkface.face import topology as T
from talkface.face._geometry import Box, FaceFrame, curve, grid, smoothstep
from talkface.face.mouth import WIDEST_OPEN

# The widest the mouth opens (inner-lip gap over mouth width), with a margin: the rig
# makes room for it.
MAX_OPEN_FRACTION = WIDEST_OPEN + 0.01
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class LipGeometry:
    """The lips' contours in the face frame centred on the mouth, and where they part."""

    inner_upper: np.ndarray  # (n, 2) u, v
    inner_lower: np.ndarray
    outer_upper: np.ndarray
    outer_lower: np.ndarray
    half_width_px: float  # of the inner contour
    width_px: float  # corner to corner
    upper_thickness_px: float
    lower_thickness_px: float
    split: float  # where in the portrait's inner-lip gap the lips part (0 top, 1 bottom)

    def v_upper(self, u: np.ndarray) -> np.ndarray:
        """v of the upper inner lip at each u (the mouth-centred face frame)."""
        return curve(self.inner_upper, u)

    def v_lower(self, u: np.ndarray) -> np.ndarray:
        """v of the lower inner lip at each u (the mouth-centred face frame)."""
        return curve(self.inner_lower, u)

    def rest_gap(self, u: np.ndarray) -> np.ndarray:
        """Gap between the inner lips in the portrait at each u (0 where they touch)."""
        return np.maximum(self.v_lower(u) - self.v_upper(u), 0.0)

    def v_split(self, u: np.ndarray) -> np.ndarray:
        """v of the line along which the lips part, at each u."""
        return (self.v_upper(u) + self.split * self.rest_gap(u)).astype(np.float32)

    def profile(self, u: np.ndarray) -> np.ndarray:
        """How far each column opens: 1 at the centre, 0 at the corners."""
        return (np.clip(1.0 - (u / self.half_width_px) ** 2, 0.0, 1.0) ** 0.6).astype(np.float32)

    @property
    def rest_gap_px(self) -> float:
        """The portrait's inner-lip gap at the mouth's centre (u = 0), in pixels."""
        return float(self.rest_gap(np.zeros(1, np.float32))[0])

    @property
    def shows_teeth(self) -> bool:
        """The portrait's own mouth is open enough to show its interior."""
        return self.rest_gap_px > 0.06 * self.width_px


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class MouthRig:
    """What :func:`paint_mouth` needs, over a box around the mouth and below it."""

    box: Box
    v: np.ndarray  # HxW, v relative to the mouth centre
    v_split: np.ndarray  # HxW, v of the parting line at each pixel's u
    profile: np.ndarray  # HxW
    u_norm: np.ndarray  # HxW, u over the mouth's half-width
    light: np.ndarray  # HxW, the portrait's lighting across the mouth (about 1)
    row_min: np.ndarray  # (H,) least v - v_split in each row
    row_max: np.ndarray  # (H,) greatest v - v_split in each row
    cavity_rgb: np.ndarray  # (3,) the back of the mouth
    lip_rgb: np.ndarray  # (3,) the lips' median colour
    tongue_rgb: np.ndarray  # (3,)
    teeth_rgb: np.ndarray | None  # (3,) drawn upper teeth, for a portrait with a shut mouth
    width_px: float
    feather_px: float


def lip_geometry(image: np.ndarray, points: np.ndarray, frame: FaceFrame) -> LipGeometry:
    """The lips of a prepared portrait (``frame`` centred on the mouth)."""
    inner_upper = frame.points_uv(points[list(T.LIPS_INNER_UPPER)])
    inner_lower = frame.points_uv(points[list(T.LIPS_INNER_LOWER)])
    outer_upper = frame.points_uv(points[list(T.LIPS_OUTER_UPPER)])
    outer_lower = frame.points_uv(points[list(T.LIPS_OUTER_LOWER)])
    zero = np.zeros(1, np.float32)
    upper_thickness = float(curve(inner_upper, zero)[0] - curve(outer_upper, zero)[0])
    lower_thickness = float(curve(outer_lower, zero)[0] - curve(inner_lower, zero)[0])
    geometry = LipGeometry(
        inner_upper=inner_upper,
        inner_lower=inner_lower,
        outer_upper=outer_upper,
        outer_lower=outer_lower,
        half_width_px=max(2.0, float(np.ptp(inner_upper[:, 0])) / 2),
        width_px=float(np.linalg.norm(points[T.MOUTH_CORNER_LEFT] - points[T.MOUTH_CORNER_RIGHT])),
        upper_thickness_px=max(2.0, upper_thickness),
        lower_thickness_px=max(2.0, lower_thickness),
        split=0.5,
    )
    if geometry.shows_teeth:
        geometry = dataclasses.replace(geometry, split=_teeth_split(image, frame, geometry))
    return geometry


def _teeth_split(image: np.ndarray, frame: FaceFrame, geometry: LipGeometry) -> float:
    """Where an open mouth's content divides between the upper and the lower jaw.

    Down the middle of the mouth: a dark line with bright teeth on both sides is where
    the upper teeth meet the lower ones; without one, whatever shows (upper teeth resting
    on the lower lip, or darkness) stays with the upper jaw and the lips part at the
    lower lip.
    """
    hw = geometry.half_width_px
    u = np.linspace(-0.35 * hw, 0.35 * hw, 9, dtype=np.float32)
    rows = max(8, int(2 * geometry.rest_gap_px))
    t = np.linspace(0.0, 1.0, rows, dtype=np.float32)
    v = geometry.v_upper(u)[None, :] + t[:, None] * geometry.rest_gap(u)[None, :]
    uu = np.broadcast_to(u[None, :], v.shape)
    xs = (frame.origin[0] + uu * frame.ex[0] + v * frame.ey[0]).astype(np.float32)
    ys = (frame.origin[1] + uu * frame.ex[1] + v * frame.ey[1]).astype(np.float32)
    samples = cv2.remap(image, xs, ys, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    luma = np.convolve(np.pad((samples.astype(np.float32) @ _LUMA).mean(axis=1), 1, mode="edge"),
                       [0.25, 0.5, 0.25], mode="valid")
    inside = np.flatnonzero((t >= 0.2) & (t <= 0.85))
    darkest = int(inside[np.argmin(luma[inside])])
    above, below = luma[:darkest].max(initial=0.0), luma[darkest + 1 :].max(initial=0.0)
    if min(above, below) * 0.75 > luma[darkest]:
        return float(t[darkest])
    return 1.0


def mouth_rig(image: np.ndarray, points: np.ndarray, frame: FaceFrame,
              geometry: LipGeometry) -> MouthRig:
    """Precompute the mouth's interior painting for a prepared portrait."""
    size = image.shape[0]
    width = geometry.width_px
    lips = points[list(T.LIPS_OUTER_UPPER + T.LIPS_OUTER_LOWER)]
    reach = MAX_OPEN_FRACTION * width + 4  # the widest the jaw drops, plus the feather
    box = Box.around(
        np.array([lips[:, 0].min() - 2, lips[:, 0].max() + 2]),
        np.array([lips[:, 1].min() - 0.08 * width - 2, lips[:, 1].max() + reach]),
        size,
    )
    gx, gy = grid(box)
    u, v = frame.uv(gx, gy)
    v_split = geometry.v_split(u)
    u_norm = (u / geometry.half_width_px).astype(np.float32)
    relative = v - v_split

    lip_mask = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(lip_mask, [np.round(points[list(T.LIPS_OUTER_UPPER)]).astype(np.int32)], 1)
    cv2.fillPoly(lip_mask, [np.round(points[list(T.LIPS_OUTER_LOWER)]).astype(np.int32)], 1)
    inner = np.zeros_like(lip_mask)
    inner_contour = points[list(T.LIPS_INNER_UPPER + T.LIPS_INNER_LOWER[::-1])]
    cv2.fillPoly(inner, [np.round(inner_contour).astype(np.int32)], 1)
    lip_mask[inner.astype(bool)] = 0
    lip_pixels = image[lip_mask.astype(bool)].astype(np.float32)
    lip_rgb = np.median(lip_pixels, axis=0) if len(lip_pixels) else np.array([150.0, 80.0, 80.0])

    # Skin either side of the mouth: the light falling on it, and its highlights.
    half_width = geometry.half_width_px
    reach_v = 3 * max(geometry.upper_thickness_px, geometry.lower_thickness_px)
    near = Box.around(frame.origin[0] + np.array([-2, 2]) * half_width,
                      frame.origin[1] + np.array([-1, 1]) * reach_v, size)
    near_u, near_v = frame.uv(*grid(near))
    around = cv2.dilate(lip_mask | inner, np.ones((5, 5), np.uint8))[near.slices]
    skin_zone = ((np.abs(near_u) < 1.5 * half_width) & (np.abs(near_u) > 0.3 * half_width)
                 & (near_v > -3 * geometry.upper_thickness_px)
                 & (near_v < 3 * geometry.lower_thickness_px) & ~around.astype(bool))
    skin = image[near.slices][skin_zone].astype(np.float32)
    skin_u = near_u[skin_zone]
    if len(skin) >= 20:
        skin_luma = skin @ _LUMA
        middle = float(np.median(skin_luma))
        left = float(np.median(skin_luma[skin_u < 0])) if (skin_u < 0).any() else middle
        right = float(np.median(skin_luma[skin_u > 0])) if (skin_u > 0).any() else middle
        highlight = float(np.percentile(skin_luma, 90))
    else:
        left = right = highlight = float(lip_rgb @ _LUMA) * 1.2
    slope = float(np.clip((right - left) / max(right + left, 1.0), -0.4, 0.4))
    light = np.clip(1.0 + slope * np.clip(u_norm, -1.2, 1.2), 0.6, 1.4).astype(np.float32)

    if geometry.shows_teeth:
        cavity_rgb = _darkest_inside(image, inner.astype(bool), lip_rgb)
        teeth_rgb = None
    else:
        cavity_rgb = lip_rgb * np.array([0.40, 0.22, 0.22], np.float32)
        teeth_rgb = np.clip(0.93 * highlight * np.array([1.0, 0.97, 0.88], np.float32), 0, 245)
    return MouthRig(
        box=box,
        v=v,
        v_split=v_split,
        profile=geometry.profile(u),
        u_norm=u_norm,
        light=light,
        row_min=relative.min(axis=1),
        row_max=relative.max(axis=1),
        cavity_rgb=cavity_rgb.astype(np.float32),
        lip_rgb=lip_rgb.astype(np.float32),
        tongue_rgb=(lip_rgb * np.array([0.80, 0.46, 0.46], np.float32)).astype(np.float32),
        teeth_rgb=None if teeth_rgb is None else teeth_rgb.astype(np.float32),
        width_px=width,
        feather_px=max(1.5, 0.025 * width),
    )


def _darkest_inside(image: np.ndarray, inside: np.ndarray, lip_rgb: np.ndarray) -> np.ndarray:
    """The colour of the darkest fifth of the portrait's open mouth, kept dark."""
    pixels = image[inside].astype(np.float32)
    if len(pixels) < 10:
        return lip_rgb * np.array([0.40, 0.22, 0.22], np.float32)
    luma = pixels @ _LUMA
    dark = pixels[luma <= np.percentile(luma, 20)]
    colour = np.median(dark, axis=0)
    limit = 0.35 * float(lip_rgb @ _LUMA)
    level = float(colour @ _LUMA)
    return colour * min(1.0, limit / max(level, 1.0))


def paint_mouth(frame: np.ndarray, rig: MouthRig, jaw_px: float, raise_px: float) -> None:
    """Draw the mouth's interior in the band the lips opened, in ``frame`` (uint8, in place).

    ``raise_px`` and ``jaw_px`` are how far the upper lip rose and the lower lip dropped
    at the mouth's centre (the rig's warp has already moved them).
    """
    opening = jaw_px + raise_px
    if opening < 0.25:
        return
    feather = rig.feather_px
    # Only the rows the band can reach.
    rows = np.flatnonzero((rig.row_max >= -raise_px - feather) & (rig.row_min <= jaw_px + feather))
    if not len(rows):
        return
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    sl = slice(r0, r1)
    profile, v, u_norm = rig.profile[sl], rig.v[sl], rig.u_norm[sl]
    top = rig.v_split[sl] - raise_px * profile
    gap = opening * profile
    depth = np.minimum(v - top, top + gap - v)
    # Half the feather lies over the lips' inner edges, so they shade into the mouth.
    alpha = smoothstep((depth + 0.5 * feather) / feather) * (gap > 0.3)
    if not alpha.any():
        return
    through = np.clip((v - top) / np.maximum(gap, 1e-3), 0.0, 1.0)
    # The back of the mouth is darkest; the wet inner sides of the lips catch some
    # light; the corners sink into the cheeks' shadow.
    rim = np.exp(-np.maximum(depth, 0.0) / (0.05 * rig.width_px + 0.5))
    shade = (0.75 + 0.9 * rim) * (1.0 - 0.35 * np.minimum(u_norm * u_norm, 1.0)) * rig.light[sl]
    colour = rig.cavity_rgb * shade[..., None]
    wide = float(smoothstep(np.asarray((opening - 0.10 * rig.width_px) / (0.10 * rig.width_px))))
    if wide > 0:
        tongue = (smoothstep((through - 0.55) / 0.35) * (1.0 - rim) * 0.8 * wide)[..., None]
        tongue_shade = rig.light[sl] * (1.0 - 0.4 * np.minimum(np.abs(u_norm), 1.0))
        tongue_colour = rig.tongue_rgb * tongue_shade[..., None]
        colour = colour * (1.0 - tongue) + tongue_colour * tongue
    if rig.teeth_rgb is not None:
        tooth_px = np.minimum(0.085 * rig.width_px, 0.42 * gap)
        showing = float(smoothstep(np.asarray((opening - 0.04 * rig.width_px)
                                              / (0.05 * rig.width_px))))
        teeth = (smoothstep((tooth_px - (v - top)) / 1.5)
                 * np.clip(1.0 - (u_norm / 0.72) ** 2, 0.0, 1.0) ** 0.5 * 0.9 * showing)[..., None]
        # Brightest at the front and lit side; the upper lip shades their roots.
        under_lip = 0.72 + 0.28 * smoothstep((v - top) / np.maximum(0.6 * tooth_px, 0.5))
        teeth_colour = rig.teeth_rgb * (rig.light[sl] * under_lip
                                        * (1.0 - 0.35 * np.minimum(np.abs(u_norm), 1.0)))[..., None]
        colour = colour * (1.0 - teeth) + teeth_colour * teeth
    box = rig.box
    region = frame[box.y0 + r0 : box.y0 + r1, box.x0 : box.x1]
    a = alpha[..., None]
    region[:] = np.clip(region * (1.0 - a) + colour * a, 0, 255).astype(np.uint8)
