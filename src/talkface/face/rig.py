"""The face rig: everything about one avatar that does not change from frame to frame.

Built once per prepared avatar from its 468 landmarks, it holds

* **deformation bases** over two regions of the face: the brows and eyes (controls:
  brow raise, frown, cheek raise) and the lower face (jaw open, upper lip raise, lip
  closure, rounding, spreading, smile). For each control, a dense backward displacement
  field for one unit of it. A frame's warp of a region is a linear mix of them (skipping
  controls at rest) followed by one ``cv2.remap``. The two regions do not overlap and each
  field fades to nothing at its region's border, so they join seamlessly;
* **head-motion bases** over the head region: a weight that is 1 on the head and hair
  and fades to 0 on the body and background, pre-multiplied by the pixel coordinates, so
  a small rotation + translation about the neck is again a linear mix and a remap.
  The field is smooth, so it is mixed at a quarter of the resolution and enlarged. The
  crop itself never moves: only pixels under the weight do;
* **the mouth** (see :mod:`.lips`): where the lips part and what shows between them;
* **eye patches**: each eye as it is, and closed (its opening filled with lid skin and a
  lash line), for blinks and narrowed eyes.

Coordinates: see :mod:`._geometry`. A backward field D means
``output(q) = portrait(q + D(q))``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from talkface.face import topology as T
from talkface.face._geometry import Box, FaceFrame, border_taper, curve, grid, smoothstep
from talkface.face.avatar import PreparedAvatar
from talkface.face.lips import MAX_OPEN_FRACTION, LipGeometry, MouthRig, lip_geometry, mouth_rig

UPPER_CONTROLS = ("brow", "frown", "cheek")
LOWER_CONTROLS = ("jaw", "upper_lip", "close", "round", "spread", "smile")
_HEAD_SUBSAMPLE = 4


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class WarpRegion:
    """A box of the face and its deformation bases.

    The warp map for control weights ``c`` is ``identity + sum(c[k] * bases[k])``, summed
    here row by row rather than as a BLAS product: a product this size would start
    BLAS's worker threads, which fight the other engines for the cores (and, on a
    pinned core, each other).
    """

    box: Box
    controls: tuple[str, ...]
    identity: np.ndarray  # (2*H*W,) float32: x then y of every pixel
    bases: np.ndarray  # (len(controls), 2*H*W) float32

    def maps(self, weights: dict[str, float]) -> np.ndarray:
        """(2, H, W) float32 source coordinates for ``cv2.remap``."""
        maps = self.identity.copy()
        scaled = np.empty_like(maps)
        for row, control in zip(self.bases, self.controls, strict=True):
            weight = weights[control]
            if weight:
                np.multiply(row, np.float32(weight), out=scaled)
                maps += scaled
        return maps.reshape(2, *self.box.shape)


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class HeadRig:
    """The head region: its identity grid and the low-resolution motion bases."""

    box: Box
    grid: np.ndarray  # (2, H, W) float32 pixel coordinates
    bases: np.ndarray  # (3, h, w): W*X, W*Y, W at 1/_HEAD_SUBSAMPLE resolution
    low_shape: tuple[int, int]


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class EyeRig:
    """One eye: its box, its closed look, and the lid curves in the box's (u, v) grid."""

    box: Box
    closed: np.ndarray  # float32 HxWx3, the eye with its lid shut
    v: np.ndarray  # HxW, v of each pixel relative to the eye centre
    v_upper: np.ndarray  # HxW, v of the upper lid at each pixel's u
    v_lower: np.ndarray  # HxW, v of the lower lid at each pixel's u
    inside_u: np.ndarray  # HxW, 1 between the eye corners, fading outside


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class FaceRig:
    """All per-avatar data the renderer needs (see module docstring)."""

    portrait: np.ndarray  # HxWx3 uint8
    upper: WarpRegion
    lower: WarpRegion
    head: HeadRig
    mouth: MouthRig
    lips: LipGeometry
    eyes: tuple[EyeRig, EyeRig]
    mouth_width_px: float
    face_height_px: float


@dataclass(frozen=True, slots=True, kw_only=True)
class _Face:
    """Measures of the face the fields are built from."""

    points: np.ndarray
    frame: FaceFrame  # centred on the mouth
    lips: LipGeometry
    width_px: float
    height_px: float
    size_px: int


def build_rig(avatar: PreparedAvatar) -> FaceRig:
    """Precompute the rig of a prepared avatar (tens of milliseconds)."""
    points = avatar.landmarks[:, :2].astype(np.float64)
    eye_line = points[263] - points[33]
    ex = eye_line / np.linalg.norm(eye_line)
    ey = np.array([-ex[1], ex[0]])
    mouth_centre = (points[T.MOUTH_CORNER_RIGHT] + points[T.MOUTH_CORNER_LEFT]) / 2
    frame = FaceFrame(origin=mouth_centre, ex=ex, ey=ey)
    lips = lip_geometry(avatar.image, points, frame)
    face = _Face(
        points=points,
        frame=frame,
        lips=lips,
        width_px=float(np.ptp(frame.points_uv(points[list(T.FACE_OVAL)])[:, 0])),
        height_px=float(np.linalg.norm(points[T.FOREHEAD_TOP] - points[T.CHIN])),
        size_px=avatar.size_px,
    )
    oval = points[list(T.FACE_OVAL)]
    margin = 0.15 * face.width_px
    xs = np.array([oval[:, 0].min() - margin, oval[:, 0].max() + margin])
    lower_lids = points[list(T.RIGHT_EYE_LOWER + T.LEFT_EYE_LOWER)]
    # The regions meet a little below the eyes: the cheek raise fades out above this
    # line, the smile below it.
    split_y = lower_lids[:, 1].max() + 0.11 * face.height_px
    brows = points[list(T.RIGHT_BROW + T.LEFT_BROW)]
    upper_box = Box.around(xs, np.array([brows[:, 1].min() - 0.2 * face.height_px, split_y]),
                           face.size_px)
    lower_box = Box.around(xs, np.array([upper_box.y1, points[T.CHIN, 1] + 0.4 * face.height_px]),
                           face.size_px)
    return FaceRig(
        portrait=avatar.image,
        upper=_region(upper_box, UPPER_CONTROLS, _upper_fields, face),
        lower=_region(lower_box, LOWER_CONTROLS, _lower_fields, face),
        head=_head_rig(face),
        mouth=mouth_rig(avatar.image, points, frame, lips),
        lips=lips,
        eyes=(
            _eye_rig(avatar, frame, T.RIGHT_EYE_UPPER, T.RIGHT_EYE_LOWER),
            _eye_rig(avatar, frame, T.LEFT_EYE_UPPER, T.LEFT_EYE_LOWER),
        ),
        mouth_width_px=lips.width_px,
        face_height_px=face.height_px,
    )


_Fields = dict[str, tuple[np.ndarray | float, np.ndarray | float]]


def _region(box: Box, controls: tuple[str, ...],
            fields: Callable[[np.ndarray, np.ndarray, _Face], _Fields], face: _Face) -> WarpRegion:
    gx, gy = grid(box)
    u, v = face.frame.uv(gx, gy)
    uv_fields: _Fields = fields(u, v, face)
    taper = border_taper(box.shape)
    ex, ey = face.frame.ex, face.frame.ey
    bases = []
    for name in controls:
        du, dv = uv_fields[name]
        du = np.broadcast_to(np.asarray(du, np.float32), u.shape) * taper
        dv = np.broadcast_to(np.asarray(dv, np.float32), u.shape) * taper
        dx = du * ex[0] + dv * ey[0]
        dy = du * ex[1] + dv * ey[1]
        bases.append(np.concatenate([dx.ravel(), dy.ravel()]).astype(np.float32))
    return WarpRegion(box=box, controls=controls,
                      identity=np.concatenate([gx.ravel(), gy.ravel()]).astype(np.float32),
                      bases=np.stack(bases).astype(np.float32))


def _lower_fields(u: np.ndarray, v: np.ndarray, face: _Face) -> _Fields:
    """One unit of each lower-face control, as (du, dv) in face coordinates."""
    lips, frame, points = face.lips, face.frame, face.points
    half_width, width = lips.half_width_px, lips.width_px
    t_upper, t_lower = lips.upper_thickness_px, lips.lower_thickness_px
    max_open = MAX_OPEN_FRACTION * width
    max_raise, max_jaw = 0.15 * max_open, 0.85 * max_open
    chin_v = float(frame.points_uv(points[[T.CHIN]])[0, 1])
    jaw_half_width = float(np.ptp(frame.points_uv(points[list(T.JAW)])[:, 0])) / 2

    profile = lips.profile(u)
    outside = np.maximum(np.abs(u) - half_width, 0.0)
    # A sharp step across the parting line inside the mouth (the lips part), which
    # softens beside the corners (the cheeks stretch instead).
    sigma = 0.6 + 1.2 * outside
    below = 0.5 * (1.0 + np.tanh((v - lips.v_split(u)) / sigma))
    above = 1.0 - below
    v_outer_upper, v_outer_lower = curve(lips.outer_upper, u), curve(lips.outer_lower, u)

    # Jaw: the lower lip moves whole (its centre the most), so it keeps its shape; below
    # it the skin stretches to the chin, which drops with the jaw.
    jaw_across = 1.0 - smoothstep((np.abs(u) - 0.35 * jaw_half_width) / (0.65 * jaw_half_width))
    under_chin = 1.0 - smoothstep((v - chin_v) / (0.3 * face.height_px))
    # (Every ramp is longer than the travel across it, or the warp would fold over.)
    lip_end = v_outer_lower + 0.8 * max_jaw * profile
    lip_to_jaw = smoothstep((v - lip_end) / (1.5 * t_lower + 1.5 * max_jaw * (1.0 - profile)))
    jaw = below * ((1.0 - lip_to_jaw) * profile + lip_to_jaw * jaw_across) * under_chin
    # Upper lip: rises whole; the skin above it (not the lip) takes up the stretch.
    above_lip = v_outer_upper - v
    upper_lip = above * profile * (1.0 - smoothstep((above_lip - max_raise)
                                                    / (1.2 * t_upper + 1.5 * max_raise)))
    # Closing a parted mouth: each lip moves half the gap and a little more, so they
    # press together and no sliver of teeth is left between them.
    v_mid = (lips.v_upper(u) + lips.v_lower(u)) / 2
    below_mid = 0.5 * (1.0 + np.tanh((v - v_mid) / sigma))
    rest_gap = lips.rest_gap(u)
    parted = smoothstep(rest_gap)
    lower_travel = (0.5 * rest_gap + 0.5 + 0.3 * t_lower) * parted
    upper_travel = (0.5 * rest_gap + 0.5 + 0.3 * t_upper) * parted
    close_lower = below_mid * (1.0 - smoothstep((v - v_outer_lower)
                                                / (1.5 * t_lower + 1.5 * lower_travel)))
    close_upper = (1.0 - below_mid) * (1.0 - smoothstep((v_outer_upper - v)
                                                        / (1.5 * t_upper + 1.5 * upper_travel)))

    lips_height = t_upper + t_lower + lips.rest_gap_px
    mouth_blob = np.exp(-(((u / (1.4 * half_width)) ** 2 + (v / (1.3 * lips_height)) ** 2) ** 2))
    corner_blob = np.zeros_like(u)
    for corner in (T.MOUTH_CORNER_RIGHT, T.MOUTH_CORNER_LEFT):
        cu, cv = frame.points_uv(points[[corner]])[0]
        corner_blob += np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * (0.5 * half_width) ** 2))
    return {
        "jaw": (0.0, -jaw),  # 1 px down at the lower lip's centre
        "upper_lip": (0.0, upper_lip),  # 1 px up at the upper lip's centre
        "close": (0.0, lower_travel * close_lower - upper_travel * close_upper),  # lips meet
        "round": (0.25 * u * mouth_blob, 0.0),  # corners 20 % closer together
        "spread": (-0.12 * u * mouth_blob, 0.0),  # corners 12 % further apart
        # Corners up by a ninth of the mouth's width and out by a sixteenth.
        "smile": (-np.sign(u) * 0.06 * width * corner_blob, 0.11 * width * corner_blob),
    }


def _upper_fields(u: np.ndarray, v: np.ndarray, face: _Face) -> _Fields:
    """One unit of each brow-and-eye control, as (du, dv) in face coordinates."""
    frame, points, height = face.frame, face.points, face.height_px
    brow_blob = np.zeros_like(u)
    frown_blob = np.zeros_like(u)
    frown_side = np.zeros_like(u)
    for brow in (T.RIGHT_BROW, T.LEFT_BROW):
        brow_uv = frame.points_uv(points[list(brow)])
        bu, bv = brow_uv.mean(axis=0)
        half_len = np.ptp(brow_uv[:, 0]) / 2 + 0.05 * face.width_px
        dv = v - bv
        # Reaches up into the forehead, but stops short of the eye below.
        reach = np.where(dv < 0, 0.12 * height, 0.05 * height)
        along = np.exp(-(((u - bu) / half_len) ** 4))
        blob = along * np.exp(-((dv / reach) ** 2))
        brow_blob += blob
        # A frown pulls the inner ends of the brows down and together.
        towards_middle = np.clip((bu - u) * np.sign(bu) / half_len, -1.0, 1.0)
        inner = smoothstep((towards_middle + 0.3) / 1.3)
        frown_reach = np.where(dv < 0, 0.10 * height, 0.05 * height)
        side_blob = (inner * np.exp(-(((u - bu) / (1.3 * half_len)) ** 4))
                     * np.exp(-((dv / frown_reach) ** 2)))
        frown_blob += side_blob
        frown_side += np.sign(bu) * side_blob
    cheek_blob = np.zeros_like(u)
    for upper, lower in ((T.RIGHT_EYE_UPPER, T.RIGHT_EYE_LOWER),
                         (T.LEFT_EYE_UPPER, T.LEFT_EYE_LOWER)):
        lid_uv = frame.points_uv(points[list(lower)])
        top_uv = frame.points_uv(points[list(upper)])
        eu = lid_uv[:, 0].mean()
        eye_width = np.ptp(lid_uv[:, 0])
        eye_height = max(2.0, float(lid_uv[:, 1].max() - top_uv[:, 1].min()))
        dv = v - curve(lid_uv, u)
        # The cheek pushes the lower lid up: the skin under the eye rises, the bottom
        # of the eye's opening narrows.
        spread = np.where(dv > 0, 0.09 * height, 0.5 * eye_height)
        cheek_blob += np.exp(-(((u - eu) / (0.8 * eye_width)) ** 4)) * np.exp(-((dv / spread) ** 2))
    return {
        "brow": (0.0, 0.05 * height * brow_blob),  # brows up by a twentieth of the face
        "frown": (0.025 * height * frown_side, -0.035 * height * frown_blob),
        "cheek": (0.0, 0.014 * height * cheek_blob),
    }


def _head_rig(face: _Face) -> HeadRig:
    points, frame = face.points, face.frame
    oval = points[list(T.FACE_OVAL)]
    centre = oval.mean(axis=0) - 0.12 * face.height_px * frame.ey  # up: the hair
    axis_u, axis_v = 0.68 * face.width_px, 0.78 * face.height_px
    falloff = 0.5
    corners_u = np.array([-1, 1, -1, 1]) * axis_u * (1 + falloff)
    corners_v = np.array([-1, -1, 1, 1]) * axis_v * (1 + falloff)
    xs = centre[0] + corners_u * frame.ex[0] + corners_v * frame.ey[0]
    ys = centre[1] + corners_u * frame.ex[1] + corners_v * frame.ey[1]
    box = Box.around(xs, ys, face.size_px)
    height, width = box.shape
    low_h, low_w = max(2, -(-height // _HEAD_SUBSAMPLE)), max(2, -(-width // _HEAD_SUBSAMPLE))
    # Sample the smooth field where cv2.resize's bilinear enlargement puts each
    # low-resolution pixel's centre, so enlarging it gives the field back.
    gx = box.x0 + (np.arange(low_w, dtype=np.float32) + 0.5) * width / low_w - 0.5
    gy = box.y0 + (np.arange(low_h, dtype=np.float32) + 0.5) * height / low_h - 0.5
    gx, gy = np.meshgrid(gx, gy)
    u, v = frame.moved_to(centre).uv(gx, gy)
    radius = np.sqrt((u / axis_u) ** 2 + (v / axis_v) ** 2)
    taper_y = smoothstep(np.minimum(gy - box.y0, box.y1 - 1 - gy) / 6.0)
    taper_x = smoothstep(np.minimum(gx - box.x0, box.x1 - 1 - gx) / 6.0)
    weight = (1.0 - smoothstep((radius - 1.0) / falloff)) * taper_x * taper_y
    # The head turns about the neck, below the chin.
    pivot = points[T.CHIN] + 0.35 * face.height_px * frame.ey
    rel_x, rel_y = gx - pivot[0], gy - pivot[1]
    bases = np.stack([weight * rel_x, weight * rel_y, weight]).astype(np.float32)
    full_x, full_y = grid(box)
    return HeadRig(box=box, grid=np.stack([full_x, full_y]), bases=bases, low_shape=(low_h, low_w))


def _eye_rig(
    avatar: PreparedAvatar, frame: FaceFrame, upper: tuple[int, ...], lower: tuple[int, ...]
) -> EyeRig:
    points = avatar.landmarks[:, :2]
    contour = points[list(upper) + list(lower[::-1])]
    centre = contour.mean(axis=0)
    eye_frame = frame.moved_to(centre)
    upper_uv = eye_frame.points_uv(points[list(upper)])
    lower_uv = eye_frame.points_uv(points[list(lower)])
    width = float(np.ptp(upper_uv[:, 0]))
    height = float(max(lower_uv[:, 1].max() - upper_uv[:, 1].min(), 2.0))
    box = Box.around(
        np.array([contour[:, 0].min() - 0.3 * width, contour[:, 0].max() + 0.3 * width]),
        np.array([contour[:, 1].min() - 1.2 * height, contour[:, 1].max() + 0.8 * height]),
        avatar.size_px,
    )
    patch = np.ascontiguousarray(avatar.image[box.slices])
    mask = np.zeros(patch.shape[:2], np.uint8)
    local = np.round(contour - (box.x0, box.y0)).astype(np.int32)
    cv2.fillPoly(mask, [local], 255)
    mask = cv2.dilate(mask, np.ones((3, 3), np.uint8))
    gx, gy = grid(box)
    u, v = eye_frame.uv(gx, gy)
    v_upper, v_lower = curve(upper_uv, u), curve(lower_uv, u)
    # The shut lid is the skin just above the open lid, brought down over the eye: its
    # median colour, with the texture inpainting gives, darker towards the lashes.
    # Skin colour from above the lid crease and below the lower lid (lids are a bit darker).
    skin = (np.abs(u) < width / 2) & (
        ((v < v_upper - 0.6 * height) & (v > v_upper - 1.2 * height))
        | ((v > v_lower + 0.3 * height) & (v < v_lower + 0.8 * height))
    )
    lid_rgb = 0.93 * (
        np.median(patch[skin], axis=0) if skin.any() else patch.reshape(-1, 3).mean(0)
    )
    inpainted = cv2.inpaint(patch, mask, 3, cv2.INPAINT_TELEA).astype(np.float32)
    opening = np.clip(1.4 * cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (5, 5), 0), 0, 1)[
        ..., None
    ]
    lid = 0.8 * lid_rgb.astype(np.float32) + 0.2 * inpainted
    closed = inpainted * (1 - opening) + lid * opening
    towards_lashes = np.clip((v - v_upper) / max(v_lower.max() - v_upper.min(), 1.0), 0, 1)
    closed *= (1.0 - 0.12 * towards_lashes * (opening[..., 0] > 0.1))[..., None]
    # The lash line where the shut lid meets the lower lid.
    lash = np.exp(-(((v - v_lower) / 0.9) ** 2)) * (np.abs(u) < width / 2)
    closed *= (1.0 - 0.45 * lash)[..., None]
    inside_u = 1.0 - smoothstep((np.abs(u) - width / 2) / 2.0)
    return EyeRig(
        box=box,
        closed=closed.astype(np.float32),
        v=v,
        v_upper=v_upper,
        v_lower=v_lower,
        inside_u=inside_u.astype(np.float32),
    )
