"""Rendering one frame of the landmark-warp avatar from a :class:`FacePose`.

Per frame: mix the rig's deformation bases into a warp map for the lower face and brows
(one matrix product) and remap; paint the mouth's interior where the lips have parted;
close the eyelids by the blink amount; then move the head by a small rotation and
translation about the neck (a second product and remap over the head region). Every
step touches only the face or head region, never the whole picture, which keeps a
512x512 frame within a few milliseconds on one core.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from talkface.face.rig import DEFORM_CONTROLS, EyeRig, FaceRig, MouthRig

_TEETH_RGB = np.array([226.0, 221.0, 210.0], np.float32)
# The mouth's interior and tongue: the lips' own colour, darker and redder.
_CAVITY_TINT = np.array([0.42, 0.22, 0.22], np.float32)
_TONGUE_TINT = np.array([0.85, 0.5, 0.5], np.float32)


@dataclass(frozen=True, slots=True, kw_only=True)
class FacePose:
    """Everything that changes from frame to frame.

    Attributes:
        mouth_open: inner-lip gap at the mouth centre as a fraction of mouth width
            (0 closed; the portrait's own gap is its rest pose; ~0.35 wide open).
        lip_round: 0..1, lips pushed together sideways ("oo").
        lip_spread: 0..1, lips stretched sideways ("ee").
        smile: -1..1, mouth corners up and out (negative: down).
        brow_raise: -1..1, brows up (negative: down, a frown).
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
    blink: float = 0.0
    head_roll_rad: float = 0.0
    head_dx_px: float = 0.0
    head_dy_px: float = 0.0
    head_scale: float = 1.0


def _controls(rig: FaceRig, pose: FacePose) -> tuple[dict[str, float], float, float]:
    """Pose to control weights; also the jaw drop and lip raise in px (for the mouth)."""
    rest_gap = rig.mouth.rest_gap_px
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
    }
    return weights, jaw_px, raise_px


def _paint_mouth(region: np.ndarray, rig: MouthRig, jaw_px: float, raise_px: float) -> None:
    """Fill the gap between the parted lips with the mouth's interior, in place."""
    if jaw_px + raise_px < 0.3:
        return
    top = rig.v_mid - raise_px * rig.profile
    bottom = rig.v_mid + jaw_px * rig.profile
    depth = np.minimum(rig.v - top, bottom - rig.v)
    alpha = np.clip(depth + 0.5, 0.0, 1.0) * (rig.profile > 0)
    if not alpha.any():
        return
    gap = np.maximum(bottom - top, 1e-3)
    through = np.clip((rig.v - top) / gap, 0.0, 1.0)  # 0 at the upper lip, 1 at the lower
    # The interior: the lips' colour, darker, darkest at the back between the teeth.
    shade = 0.55 + 0.5 * np.abs(through - 0.5) + 0.15 * np.abs(rig.u_norm)
    interior = (rig.lip_rgb * _CAVITY_TINT)[None, None, :] * shade[..., None]
    # A tongue rises from the floor of a wide-open mouth.
    opening = min(1.0, (jaw_px + raise_px) / (0.2 * rig.width_px))
    tongue = (_smooth((through - 0.55) / 0.45) * opening)[..., None]
    interior = interior * (1 - 0.7 * tongue) + (rig.lip_rgb * _TONGUE_TINT) * (0.7 * tongue)
    if not rig.shows_teeth:
        # The portrait's mouth is shut, so it has no teeth to show: draw the upper ones.
        teeth_px = min(0.1 * rig.width_px, 0.4 * float(gap.max()))
        teeth = (rig.v - top < teeth_px) * np.clip(1.0 - (rig.u_norm / 0.7) ** 2, 0.0, 1.0)
        teeth_shade = 0.72 + 0.28 * np.clip(1.0 - np.abs(rig.u_norm) / 0.7, 0.0, 1.0)
        teeth_alpha = np.clip(teeth * 1.6, 0.0, 1.0)[..., None]
        interior = interior * (1 - teeth_alpha) + (_TEETH_RGB * teeth_shade[..., None]) * teeth_alpha
    a = alpha[..., None]
    region[:] = region * (1.0 - a) + interior * a


def _smooth(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def render_frame(rig: FaceRig, pose: FacePose) -> np.ndarray:
    """The portrait in ``pose``, as a new HxWx3 uint8 RGB frame."""
    weights, jaw_px, raise_px = _controls(rig, pose)
    frame = rig.portrait.copy()

    # 1. Lower face and brows: one mix of bases, one remap.
    coefficients = np.array([1.0, 1.0, *(weights[n] for n in DEFORM_CONTROLS)], np.float32)
    maps = (coefficients @ rig.deform_bases).reshape(2, *rig.face_box.shape)
    face = cv2.remap(rig.portrait, maps[0], maps[1], cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)
    frame[rig.face_box.slices] = face

    # 2. The mouth's interior where the lips parted.
    mouth_region = frame[rig.mouth.box.slices].astype(np.float32)
    _paint_mouth(mouth_region, rig.mouth, jaw_px, raise_px)
    frame[rig.mouth.box.slices] = np.clip(mouth_region, 0, 255).astype(np.uint8)

    # 3. Eyelids.
    if pose.blink > 0.02:
        for eye in rig.eyes:
            region = frame[eye.box.slices].astype(np.float32)
            _close_lid(region, eye, pose.blink)
            frame[eye.box.slices] = np.clip(region, 0, 255).astype(np.uint8)

    # 4. Head motion about the neck.
    if pose.head_roll_rad or pose.head_dx_px or pose.head_dy_px or pose.head_scale != 1.0:
        cos = np.cos(pose.head_roll_rad) / pose.head_scale
        sin = np.sin(pose.head_roll_rad) / pose.head_scale
        tx, ty = pose.head_dx_px, pose.head_dy_px
        mix = np.array(
            [
                [1.0, 0.0, cos - 1.0, sin, -cos * tx - sin * ty],
                [0.0, 1.0, -sin, cos - 1.0, sin * tx - cos * ty],
            ],
            np.float32,
        )
        head_maps = (mix @ rig.head_bases).reshape(2, *rig.head_box.shape)
        source = frame.copy()
        frame[rig.head_box.slices] = cv2.remap(
            source, head_maps[0], head_maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
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
