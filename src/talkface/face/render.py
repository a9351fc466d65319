"""Rendering one frame of the landmark-warp avatar from a :class:`FacePose`.

Per frame: lower the eyelids of the portrait by the blink and any narrowing of the eyes;
mix each face region's deformation bases into a warp map and remap it; draw the mouth's
interior in the band the lips opened; then move the head by a small rotation and
translation about the neck (mixed at a quarter of the resolution, enlarged, and a remap
over the head region). Every step touches only the face or head region, never the whole
picture, which keeps a 512x512 frame within a few milliseconds on one core. Regions
whose controls are all at rest are not warped at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from talkface.face.lips import paint_mouth
from talkface.face.rig import EyeRig, FaceRig

_AT_REST = 1e-3


@dataclass(frozen=True, slots=True, kw_only=True)
class FacePose:
    """Everything that changes from frame to frame.

    Attributes:
        mouth_open: inner-lip gap at the mouth centre as a fraction of mouth width
            (0 closed; None keeps the portrait's own gap; ~0.35 wide open).
        lip_round: 0..1, lips pushed together sideways ("oo").
        lip_spread: 0..1, lips stretched sideways ("ee").
        smile: -1..1, mouth corners up and out (negative: down).
        brow_raise: -1..1, brows up by up to a twentieth of the face (negative: down).
        brow_furrow: 0..1, inner ends of the brows down and together (a frown).
        cheek_raise: 0..1, cheeks up, pushing the lower lids up (a real smile's eyes).
        eye_narrow: 0..1, upper lids lowered by this fraction of the eye's opening.
        blink: 0 eyes open .. 1 shut.
        head_roll_rad: head tilt about the neck.
        head_dx_px, head_dy_px: head shift.
        head_scale: 1.0 is the portrait's size.
    """

    mouth_open: float | None = None
    lip_round: float = 0.0
    lip_spread: float = 0.0
    smile: float = 0.0
    brow_raise: float = 0.0
    brow_furrow: float = 0.0
    cheek_raise: float = 0.0
    eye_narrow: float = 0.0
    blink: float = 0.0
    head_roll_rad: float = 0.0
    head_dx_px: float = 0.0
    head_dy_px: float = 0.0
    head_scale: float = 1.0


def _controls(rig: FaceRig, pose: FacePose) -> tuple[dict[str, float], float, float]:
    """Pose to control weights; also the jaw drop and lip raise in px (for the mouth)."""
    rest_gap = rig.lips.rest_gap_px
    target_gap = rest_gap if pose.mouth_open is None else pose.mouth_open * rig.mouth_width_px
    target_gap = max(0.0, target_gap)
    jaw_px = raise_px = close = 0.0
    if target_gap >= rest_gap:
        extra = target_gap - rest_gap
        raise_px = 0.15 * extra
        jaw_px = extra - raise_px
    elif rest_gap > 0:
        close = 1.0 - target_gap / rest_gap
    weights = {
        "jaw": jaw_px,
        "upper_lip": raise_px,
        "close": close,
        "round": pose.lip_round,
        "spread": pose.lip_spread,
        "smile": pose.smile,
        "brow": pose.brow_raise,
        "frown": pose.brow_furrow,
        "cheek": pose.cheek_raise,
    }
    return weights, jaw_px, raise_px


def render_frame(rig: FaceRig, pose: FacePose) -> np.ndarray:
    """The portrait in ``pose``, as a new HxWx3 uint8 RGB frame."""
    weights, jaw_px, raise_px = _controls(rig, pose)

    # 1. Eyelids, on the portrait itself, so the warp below moves them with the face.
    source = rig.portrait
    lids = pose.eye_narrow + (1.0 - pose.eye_narrow) * pose.blink
    if lids > 0.02:
        source = source.copy()
        for eye in rig.eyes:
            region = source[eye.box.slices].astype(np.float32)
            _close_lid(region, eye, lids)
            source[eye.box.slices] = np.clip(region, 0, 255).astype(np.uint8)
    frame = source.copy()

    # 2. Brows and eyes, then the lower face: one mix of bases and one remap each.
    for part in (rig.upper, rig.lower):
        if all(abs(weights[c]) < _AT_REST for c in part.controls):
            continue
        maps = part.maps(weights)
        frame[part.box.slices] = cv2.remap(source, maps[0], maps[1], cv2.INTER_LINEAR,
                                           borderMode=cv2.BORDER_REPLICATE)

    # 3. The mouth's interior where the lips parted.
    paint_mouth(frame, rig.mouth, jaw_px, raise_px)

    # 4. Head motion about the neck; the crop stays put.
    if pose.head_roll_rad or pose.head_dx_px or pose.head_dy_px or pose.head_scale != 1.0:
        cos = np.cos(pose.head_roll_rad) / pose.head_scale
        sin = np.sin(pose.head_roll_rad) / pose.head_scale
        tx, ty = pose.head_dx_px, pose.head_dy_px
        mix = np.array(
            [
                [cos - 1.0, sin, -cos * tx - sin * ty],
                [-sin, cos - 1.0, sin * tx - cos * ty],
            ],
            np.float32,
        )
        head = rig.head
        # (Three terms by hand, not a BLAS product: see WarpRegion.)
        low = np.stack([mix[i, 0] * head.bases[0] + mix[i, 1] * head.bases[1]
                        + mix[i, 2] * head.bases[2] for i in (0, 1)], axis=-1)
        height, width = head.box.shape
        shift = cv2.resize(low, (width, height), interpolation=cv2.INTER_LINEAR)
        map_x = head.grid[0] + shift[..., 0]
        map_y = head.grid[1] + shift[..., 1]
        frame[head.box.slices] = cv2.remap(frame, map_x, map_y, cv2.INTER_LINEAR,
                                           borderMode=cv2.BORDER_REPLICATE)
    return frame


def _close_lid(region: np.ndarray, eye: EyeRig, amount: float) -> None:
    """Bring the upper lid down by ``amount`` (0 open, 1 shut), in place."""
    edge = eye.v_upper + amount * (eye.v_lower - eye.v_upper)
    alpha = (np.clip(edge - eye.v + 0.5, 0.0, 1.0) * eye.inside_u)[..., None]
    lash = np.exp(-(((eye.v - edge) / 0.9) ** 2)) * eye.inside_u * min(1.0, amount / 0.3)
    # The moving lid's lashes: a dark line along its edge.
    lash = lash * (eye.v > eye.v_upper - 1.0)
    region *= 1.0 - alpha
    region += eye.closed * alpha
    region *= (1.0 - 0.35 * lash)[..., None]
