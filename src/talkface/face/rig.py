"""The face rig: everything about one avatar that does not change from frame to frame.

Built once per prepared avatar from its 468 landmarks, it holds

* **deformation bases** over the lower-face region: for each control (jaw open, upper lip
  raise, lip closure, rounding, spreading, smile, brow raise) a dense backward
  displacement field for one unit of that control. A frame's warp is a linear mix of
  them (one small matrix product) followed by one ``cv2.remap``;
* **head-motion bases** over the head region: a weight that is 1 on the head and hair
  and fades to 0 on the body and background, pre-multiplied by the pixel coordinates, so
  a small rotation + translation about the neck is again one matrix product and a remap;
* **mouth geometry** for painting the mouth's interior where the lips part;
* **eye patches**: each eye as it is, and closed (its opening filled with lid skin and a
  lash line), for blinks.

Coordinates: "u" runs along the eye line (towards the image's right), "v" is
perpendicular to it pointing down the face, both in pixels, so tilted faces open their
mouths along their own axis. A backward field D means ``output(q) = portrait(q + D(q))``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from talkface.face import topology as T
from talkface.face.avatar import PreparedAvatar

# The order of the deformation controls in FaceRig.deform_bases.
DEFORM_CONTROLS = ("jaw", "upper_lip", "close", "round", "spread", "smile", "brow")
_BORDER_TAPER_PX = 6.0


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _curve(points_uv: np.ndarray, u: np.ndarray) -> np.ndarray:
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
            x0=max(0, int(np.floor(xs.min()))),
            y0=max(0, int(np.floor(ys.min()))),
            x1=min(size_px, int(np.ceil(xs.max())) + 1),
            y1=min(size_px, int(np.ceil(ys.max())) + 1),
        )


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
class MouthRig:
    """Where the lips part, in a box around the mouth, for painting the mouth's interior."""

    box: Box
    v: np.ndarray  # HxW, v relative to the mouth centre
    v_mid: np.ndarray  # HxW, v of the lips' meeting line at each pixel's u
    profile: np.ndarray  # HxW, opening shape across the mouth: 1 centre, 0 corners
    u_norm: np.ndarray  # HxW, u over the mouth's half-width
    lip_rgb: np.ndarray  # (3,) the lips' median colour
    width_px: float
    rest_gap_px: float  # inner-lip gap of the portrait at the mouth centre
    shows_teeth: bool  # the portrait's own mouth is open enough to show its interior


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class FaceRig:
    """All per-avatar data the renderer needs (see module docstring)."""

    portrait: np.ndarray  # HxWx3 uint8
    face_box: Box
    deform_bases: np.ndarray  # (2 + n_controls, 2*H*W): rows 0/1 are the identity grid
    head_box: Box
    head_bases: np.ndarray  # (5, H*W): GX, GY, W*X, W*Y, W
    mouth: MouthRig
    eyes: tuple[EyeRig, EyeRig]
    mouth_width_px: float
    face_height_px: float


@dataclass(frozen=True, slots=True)
class _Frame:
    """The face-aligned coordinate frame."""

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


def _grid(box: Box) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[box.y0 : box.y1, box.x0 : box.x1].astype(np.float32)
    return xs, ys


def _border_taper(shape: tuple[int, int]) -> np.ndarray:
    height, width = shape
    ty = np.minimum(np.arange(height), np.arange(height)[::-1]) / _BORDER_TAPER_PX
    tx = np.minimum(np.arange(width), np.arange(width)[::-1]) / _BORDER_TAPER_PX
    return (_smoothstep(ty)[:, None] * _smoothstep(tx)[None, :]).astype(np.float32)


def build_rig(avatar: PreparedAvatar) -> FaceRig:
    """Precompute the rig of a prepared avatar (tens of milliseconds)."""
    points = avatar.landmarks[:, :2].astype(np.float64)
    size = avatar.size_px
    eye_line = points[263] - points[33]
    ex = eye_line / np.linalg.norm(eye_line)
    ey = np.array([-ex[1], ex[0]])
    mouth_centre = (points[T.MOUTH_CORNER_RIGHT] + points[T.MOUTH_CORNER_LEFT]) / 2
    frame = _Frame(origin=mouth_centre, ex=ex, ey=ey)

    oval = points[list(T.FACE_OVAL)]
    oval_uv = frame.points_uv(oval)
    face_width = float(np.ptp(oval_uv[:, 0]))
    face_height = float(np.linalg.norm(points[T.FOREHEAD_TOP] - points[T.CHIN]))
    inner_upper = frame.points_uv(points[list(T.LIPS_INNER_UPPER)])
    inner_lower = frame.points_uv(points[list(T.LIPS_INNER_LOWER)])
    outer_upper = frame.points_uv(points[list(T.LIPS_OUTER_UPPER)])
    outer_lower = frame.points_uv(points[list(T.LIPS_OUTER_LOWER)])
    half_width = float(np.ptp(inner_upper[:, 0])) / 2
    mouth_width = float(np.linalg.norm(points[T.MOUTH_CORNER_LEFT] - points[T.MOUTH_CORNER_RIGHT]))
    zero = np.zeros(1, np.float32)
    upper_thickness = max(2.0, float(_curve(inner_upper, zero)[0] - _curve(outer_upper, zero)[0]))
    lower_thickness = max(2.0, float(_curve(outer_lower, zero)[0] - _curve(inner_lower, zero)[0]))
    chin_v = float(frame.points_uv(points[[T.CHIN]])[0, 1])
    jaw_half_width = float(np.ptp(frame.points_uv(points[list(T.JAW)])[:, 0])) / 2

    # --- deformation region: the face from the brows down past the chin -----------------
    margin = 0.15 * face_width
    face_box = Box.around(
        np.array([oval[:, 0].min() - margin, oval[:, 0].max() + margin]),
        np.array([points[list(T.RIGHT_BROW + T.LEFT_BROW)][:, 1].min() - 0.25 * face_height,
                  points[T.CHIN, 1] + 0.4 * face_height]),
        size,
    )
    gx, gy = _grid(face_box)
    u, v = frame.uv(gx, gy)
    v_upper, v_lower = _curve(inner_upper, u), _curve(inner_lower, u)
    v_mid = (v_upper + v_lower) / 2
    rest_gap = np.maximum(v_lower - v_upper, 0.0)
    outside = np.maximum(np.abs(u) - half_width, 0.0)
    profile = np.clip(1.0 - (u / half_width) ** 2, 0.0, 1.0) ** 0.6
    # A sharp step across the lips' meeting line inside the mouth (the lips part), which
    # softens beside the corners (the cheeks stretch instead).
    sigma = 0.7 + 1.2 * outside
    below = 0.5 * (1.0 + np.tanh((v - v_mid) / sigma))
    above = 1.0 - below
    jaw_across = 1.0 - _smoothstep((np.abs(u) - 0.35 * jaw_half_width) / (0.65 * jaw_half_width))
    under_chin = 1.0 - _smoothstep((v - chin_v) / (0.3 * face_height))
    lip_to_jaw = _smoothstep((v - v_mid) / (1.5 * lower_thickness))
    jaw = below * ((1.0 - lip_to_jaw) * profile + lip_to_jaw * jaw_across) * under_chin
    upper_lip = above * profile * (1.0 - _smoothstep((v_mid - v) / (1.6 * upper_thickness)))
    half_gap = rest_gap / 2
    close_lower = below * (1.0 - _smoothstep((v - v_mid) / (1.5 * lower_thickness + half_gap)))
    close_upper = above * (1.0 - _smoothstep((v_mid - v) / (1.5 * upper_thickness + half_gap)))
    lips_height = upper_thickness + lower_thickness + float(rest_gap.max())
    mouth_blob = np.exp(-(((u / (1.4 * half_width)) ** 2 + (v / (1.3 * lips_height)) ** 2) ** 2))
    corner_blob = np.zeros_like(u)
    for corner in (T.MOUTH_CORNER_RIGHT, T.MOUTH_CORNER_LEFT):
        cu, cv = frame.points_uv(points[[corner]])[0]
        corner_blob += np.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * (0.45 * half_width) ** 2))
    brow_blob = np.zeros_like(u)
    for brow in (T.RIGHT_BROW, T.LEFT_BROW):
        brow_uv = frame.points_uv(points[list(brow)])
        bu, bv = brow_uv.mean(axis=0)
        half_len = np.ptp(brow_uv[:, 0]) / 2 + 0.05 * face_width
        dv = v - bv
        # Reaches up into the forehead, but stops short of the eye below.
        reach = np.where(dv < 0, 0.12 * face_height, 0.035 * face_height)
        brow_blob += np.exp(-(((u - bu) / half_len) ** 4 + (dv / reach) ** 2))

    taper = _border_taper(face_box.shape)
    sign_u = np.sign(u)
    # One unit of each control, as (du, dv) backward displacement in face coordinates.
    controls_uv = {
        "jaw": (0.0, -jaw),  # 1 px down at the chin
        "upper_lip": (0.0, upper_lip),  # 1 px up at the upper lip's centre
        "close": (0.0, half_gap * (close_lower - close_upper)),  # lips meet, gap closed
        "round": (0.25 * u * mouth_blob, 0.0),  # corners 20 % closer together
        "spread": (-0.12 * u * mouth_blob, 0.0),  # corners 12 % further apart
        "smile": (-sign_u * 0.06 * mouth_width * corner_blob, 0.09 * mouth_width * corner_blob),
        "brow": (0.0, 0.035 * face_height * brow_blob),  # brows up
    }
    # Rows 0 and 1 are the identity grid, so the warp map is one product: [1, 1, c...] @ bases.
    bases = [
        np.concatenate([gx.ravel(), np.zeros(gx.size, np.float32)]),
        np.concatenate([np.zeros(gx.size, np.float32), gy.ravel()]),
    ]
    for name in DEFORM_CONTROLS:
        du, dv = controls_uv[name]
        du = np.broadcast_to(np.asarray(du, np.float32), u.shape) * taper
        dv = np.broadcast_to(np.asarray(dv, np.float32), u.shape) * taper
        dx = du * ex[0] + dv * ey[0]
        dy = du * ex[1] + dv * ey[1]
        bases.append(np.concatenate([dx.ravel(), dy.ravel()]).astype(np.float32))
    deform_bases = np.stack(bases).astype(np.float32)

    mouth = _mouth_rig(avatar, frame, half_width, mouth_width, upper_thickness,
                       lower_thickness, inner_upper, inner_lower)
    head_box, head_bases = _head_rig(points, frame, face_width, face_height, size)
    eyes = (
        _eye_rig(avatar, frame, T.RIGHT_EYE_UPPER, T.RIGHT_EYE_LOWER),
        _eye_rig(avatar, frame, T.LEFT_EYE_UPPER, T.LEFT_EYE_LOWER),
    )
    return FaceRig(
        portrait=avatar.image,
        face_box=face_box,
        deform_bases=deform_bases,
        head_box=head_box,
        head_bases=head_bases,
        mouth=mouth,
        eyes=eyes,
        mouth_width_px=mouth_width,
        face_height_px=face_height,
    )


def _mouth_rig(
    avatar: PreparedAvatar,
    frame: _Frame,
    half_width: float,
    mouth_width: float,
    upper_thickness: float,
    lower_thickness: float,
    inner_upper: np.ndarray,
    inner_lower: np.ndarray,
) -> MouthRig:
    points = avatar.landmarks[:, :2]
    lips = points[list(T.LIPS_OUTER_UPPER + T.LIPS_OUTER_LOWER)]
    reach = 0.45 * mouth_width  # the widest the jaw opens, plus margin
    box = Box.around(
        np.array([lips[:, 0].min() - 2, lips[:, 0].max() + 2]),
        np.array([lips[:, 1].min() - 2, lips[:, 1].max() + reach]),
        avatar.size_px,
    )
    gx, gy = _grid(box)
    u, v = frame.uv(gx, gy)
    v_upper, v_lower = _curve(inner_upper, u), _curve(inner_lower, u)
    profile = (np.clip(1.0 - (u / half_width) ** 2, 0.0, 1.0) ** 0.6).astype(np.float32)
    rest_gap = float(_curve(inner_lower, np.zeros(1, np.float32))[0]
                     - _curve(inner_upper, np.zeros(1, np.float32))[0])
    lip_mask = np.zeros(avatar.image.shape[:2], np.uint8)
    cv2.fillPoly(lip_mask, [np.round(points[list(T.LIPS_OUTER_UPPER)]).astype(np.int32)], 1)
    cv2.fillPoly(lip_mask, [np.round(points[list(T.LIPS_OUTER_LOWER)]).astype(np.int32)], 1)
    cv2.fillPoly(lip_mask, [np.round(points[list(T.LIPS_INNER_UPPER + T.LIPS_INNER_LOWER[::-1])]).astype(np.int32)], 0)
    lip_pixels = avatar.image[lip_mask.astype(bool)]
    lip_rgb = np.median(lip_pixels, axis=0) if len(lip_pixels) else np.array([150.0, 80.0, 80.0])
    return MouthRig(
        box=box,
        v=v,
        v_mid=((v_upper + v_lower) / 2).astype(np.float32),
        profile=profile,
        u_norm=(u / half_width).astype(np.float32),
        lip_rgb=lip_rgb.astype(np.float32),
        width_px=mouth_width,
        rest_gap_px=max(rest_gap, 0.0),
        shows_teeth=rest_gap > 0.06 * mouth_width,
    )


def _head_rig(
    points: np.ndarray, frame: _Frame, face_width: float, face_height: float, size: int
) -> tuple[Box, np.ndarray]:
    oval = points[list(T.FACE_OVAL)]
    centre = oval.mean(axis=0) - 0.12 * face_height * frame.ey  # up: the hair
    axis_u, axis_v = 0.68 * face_width, 0.78 * face_height
    falloff = 0.5
    corners_u = np.array([-1, 1, -1, 1]) * axis_u * (1 + falloff)
    corners_v = np.array([-1, -1, 1, 1]) * axis_v * (1 + falloff)
    xs = centre[0] + corners_u * frame.ex[0] + corners_v * frame.ey[0]
    ys = centre[1] + corners_u * frame.ex[1] + corners_v * frame.ey[1]
    box = Box.around(xs, ys, size)
    gx, gy = _grid(box)
    head_frame = _Frame(origin=centre, ex=frame.ex, ey=frame.ey)
    u, v = head_frame.uv(gx, gy)
    radius = np.sqrt((u / axis_u) ** 2 + (v / axis_v) ** 2)
    weight = (1.0 - _smoothstep((radius - 1.0) / falloff)) * _border_taper(box.shape)
    # The head turns about the neck, below the chin.
    pivot = points[T.CHIN] + 0.35 * face_height * frame.ey
    rel_x, rel_y = gx - pivot[0], gy - pivot[1]
    bases = np.stack([gx, gy, weight * rel_x, weight * rel_y, weight]).reshape(5, -1)
    return box, bases.astype(np.float32)


def _eye_rig(
    avatar: PreparedAvatar, frame: _Frame, upper: tuple[int, ...], lower: tuple[int, ...]
) -> EyeRig:
    points = avatar.landmarks[:, :2]
    contour = points[list(upper) + list(lower[::-1])]
    centre = contour.mean(axis=0)
    eye_frame = _Frame(origin=centre, ex=frame.ex, ey=frame.ey)
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
    gx, gy = _grid(box)
    u, v = eye_frame.uv(gx, gy)
    v_upper, v_lower = _curve(upper_uv, u), _curve(lower_uv, u)
    # The shut lid is the skin just above the open lid, brought down over the eye: its
    # median colour, with the texture inpainting gives, darker towards the lashes.
    # Skin colour from above the lid crease and below the lower lid (lids are a bit darker).
    skin = (np.abs(u) < width / 2) & (
        ((v < v_upper - 0.6 * height) & (v > v_upper - 1.2 * height))
        | ((v > v_lower + 0.3 * height) & (v < v_lower + 0.8 * height))
    )
    lid_rgb = 0.93 * (np.median(patch[skin], axis=0) if skin.any() else patch.reshape(-1, 3).mean(0))
    inpainted = cv2.inpaint(patch, mask, 3, cv2.INPAINT_TELEA).astype(np.float32)
    opening = np.clip(1.4 * cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (5, 5), 0), 0, 1)[..., None]
    lid = 0.8 * lid_rgb.astype(np.float32) + 0.2 * inpainted
    closed = inpainted * (1 - opening) + lid * opening
    towards_lashes = np.clip((v - v_upper) / max(v_lower.max() - v_upper.min(), 1.0), 0, 1)
    closed *= (1.0 - 0.12 * towards_lashes * (opening[..., 0] > 0.1))[..., None]
    # The lash line where the shut lid meets the lower lid.
    lash = np.exp(-(((v - v_lower) / 0.9) ** 2)) * (np.abs(u) < width / 2)
    closed *= (1.0 - 0.45 * lash)[..., None]
    inside_u = 1.0 - _smoothstep((np.abs(u) - width / 2) / 2.0)
    return EyeRig(
        box=box,
        closed=closed.astype(np.float32),
        v=v,
        v_upper=v_upper,
        v_lower=v_lower,
        inside_u=inside_u.astype(np.float32),
    )
