"""The mouth as a user sees it: the lips stay lips, the inside looks like a mouth.

Two portraits: the bundled one, smiling with its upper teeth showing, and the same photo
with its mouth shut (made by the rig's own lip closure, then prepared afresh, so the
landmark model sees a closed mouth and the animator has no teeth to borrow).
"""

from __future__ import annotations

import numpy as np
import pytest

from talkface.face import topology as T
from talkface.face.avatar import PreparedAvatar, prepare_avatar
from talkface.face.base import ANIMATOR_AUDIO_RATE_HZ, AnimationRequest, AnimatorSettings, Framing
from talkface.face.landmark_warp import LandmarkWarpAnimator
from talkface.face.portrait import load_portrait
from talkface.face.render import FacePose, render_frame
from talkface.face.rig import FaceRig, build_rig

pytestmark = pytest.mark.integration
LUMA = np.array([0.299, 0.587, 0.114])


@pytest.fixture(scope="module")
def shut_mouth_photo() -> np.ndarray:
    """The bundled photo with its lips closed (the whole photo: it is 512 px square)."""
    whole = prepare_avatar(load_portrait(), 512, Framing.FULL)
    return render_frame(build_rig(whole), FacePose(mouth_open=0.0))


@pytest.fixture(scope="module", params=["smiling", "shut"])
def photo(request: pytest.FixtureRequest, shut_mouth_photo: np.ndarray) -> np.ndarray:
    return load_portrait() if request.param == "smiling" else shut_mouth_photo


@pytest.fixture(scope="module")
def avatar(photo: np.ndarray) -> PreparedAvatar:
    """The photo framed as the animator frames it by default."""
    return prepare_avatar(photo, 512)


@pytest.fixture(scope="module")
def rig(avatar: PreparedAvatar) -> FaceRig:
    return build_rig(avatar)


def mouth_width(avatar: PreparedAvatar) -> float:
    points = avatar.landmarks[:, :2]
    return float(np.linalg.norm(points[T.MOUTH_CORNER_LEFT] - points[T.MOUTH_CORNER_RIGHT]))


def centre_column(frame: np.ndarray, avatar: PreparedAvatar) -> tuple[np.ndarray, int]:
    """Luminance and colour down the middle of the mouth, from below the nose to the chin."""
    points = avatar.landmarks[:, :2]
    x = round((points[T.INNER_LIP_UPPER_CENTRE, 0] + points[T.INNER_LIP_LOWER_CENTRE, 0]) / 2)
    top = round(points[T.NOSE_TIP, 1]) + 5
    column = frame[top : round(points[T.CHIN, 1]), x - 1 : x + 2].astype(float).mean(axis=1)
    return column, top


def cheek_luminance(frame: np.ndarray, avatar: PreparedAvatar) -> float:
    """The skin's brightness: the median of both cheeks (mesh points 50 and 280)."""
    points = avatar.landmarks[:, :2]
    patches = [frame[y - 4 : y + 5, x - 4 : x + 5].reshape(-1, 3)
               for x, y in np.round(points[[50, 280]]).astype(int)]
    return float(np.median(np.concatenate(patches) @ LUMA))


def opening_px(rig: FaceRig, mouth_open: float) -> float:
    """How much wider the lips part at ``mouth_open`` than in the photo."""
    return mouth_open * rig.mouth_width_px - rig.lips.rest_gap_px


def dark_run(luma: np.ndarray, threshold: float) -> slice:
    """The longest run of pixels darker than ``threshold``."""
    dark = np.concatenate([[0], (luma < threshold).astype(int), [0]])
    edges = np.flatnonzero(np.diff(dark))
    starts, ends = edges[::2], edges[1::2]
    if not len(starts):
        return slice(0, 0)
    longest = int(np.argmax(ends - starts))
    return slice(int(starts[longest]), int(ends[longest]))


def test_the_shut_mouth_photo_really_is_shut(shut_mouth_photo: np.ndarray) -> None:
    avatar = prepare_avatar(shut_mouth_photo, 512)
    points = avatar.landmarks[:, :2]
    gap = np.linalg.norm(points[T.INNER_LIP_LOWER_CENTRE] - points[T.INNER_LIP_UPPER_CENTRE])
    assert gap < 0.05 * mouth_width(avatar)  # the landmark model sees the lips together


def best_match(patch: np.ndarray, frame: np.ndarray, y0: int, x0: int,
               shifts_y: range, shifts_x: range) -> tuple[float, int, float]:
    """(normalised cross-correlation, vertical shift, mean colour difference) of the best
    place for ``patch`` (found at y0, x0 in the still) in ``frame``."""
    height, width = patch.shape[:2]
    flat = patch.astype(float).ravel()
    flat = flat - flat.mean()
    best = (-1.0, 0, 255.0)
    for dy in shifts_y:
        for dx in shifts_x:
            window = frame[y0 + dy : y0 + dy + height, x0 + dx : x0 + dx + width].astype(float)
            other = window.ravel() - window.mean()
            score = float(flat @ other / (np.linalg.norm(flat) * np.linalg.norm(other) + 1e-9))
            if score > best[0]:
                best = (score, dy, float(np.abs(window - patch).mean()))
    return best


def test_the_lips_keep_their_own_texture_and_colour_as_the_mouth_opens(
    avatar: PreparedAvatar, rig: FaceRig
) -> None:
    still = render_frame(rig, FacePose())
    wide = render_frame(rig, FacePose(mouth_open=0.3))
    points = avatar.landmarks[:, :2]
    width = mouth_width(avatar)
    x0 = round(points[T.INNER_LIP_UPPER_CENTRE, 0] - 0.12 * width)
    x1 = round(points[T.INNER_LIP_UPPER_CENTRE, 0] + 0.12 * width)
    lips = {
        # (top row, bottom row, how far it may have moved down)
        "upper": (T.OUTER_LIP_UPPER_CENTRE, T.INNER_LIP_UPPER_CENTRE, range(-8, 3)),
        "lower": (T.INNER_LIP_LOWER_CENTRE, T.OUTER_LIP_LOWER_CENTRE, range(0, round(0.4 * width))),
    }
    moved = {}
    for name, (top, bottom, shifts) in lips.items():
        y0, y1 = round(points[top, 1]) + 1, round(points[bottom, 1]) - 1
        assert y1 - y0 >= 3, (name, y0, y1)
        patch = still[y0:y1, x0:x1]
        score, shift, difference = best_match(patch, wide, y0, x0, shifts, range(-2, 3))
        # The lip is found again, whole: the same pixels, moved, not painted over.
        assert score > 0.95, (name, score)
        assert difference < 5, (name, difference)
        moved[name] = shift
    assert moved["lower"] - moved["upper"] > 0.8 * opening_px(rig, 0.3), moved  # it opened


def test_the_inside_of_the_mouth_is_shaded_darkest_at_the_back(
    avatar: PreparedAvatar, rig: FaceRig
) -> None:
    wide = render_frame(rig, FacePose(mouth_open=0.3))
    column, _ = centre_column(wide, avatar)
    luma = column @ LUMA
    skin = cheek_luminance(wide, avatar)
    inside = dark_run(luma, 0.55 * skin)
    depth = inside.stop - inside.start
    assert depth > 0.6 * opening_px(rig, 0.3), (inside, luma.round())
    cavity, cavity_rgb = luma[inside], column[inside]
    assert cavity.min() > 15  # shaded, not black
    assert (cavity_rgb[:, 0] > cavity_rgb[:, 2]).all()  # a mouth's inside is reddish, not grey
    third = max(1, depth // 3)
    middle = cavity[third : depth - third].min()
    assert middle < min(cavity[:2].mean(), cavity[-2:].mean())  # darkest at the back


def test_the_edges_of_the_open_mouth_are_feathered(avatar: PreparedAvatar, rig: FaceRig) -> None:
    wide = render_frame(rig, FacePose(mouth_open=0.3))
    column, _ = centre_column(wide, avatar)
    luma = column @ LUMA
    inside = dark_run(luma, 0.55 * cheek_luminance(wide, avatar))
    # From the lower lip up into the mouth: a ramp over a few pixels, not one hard step.
    edge = luma[inside.stop - 4 : inside.stop + 4]
    drop = edge.max() - edge.min()
    assert drop > 40  # the lip stands out from the mouth's inside...
    assert np.abs(np.diff(edge)).max() < 0.6 * drop, edge.round()  # ...through a soft edge


def test_a_smiling_photo_keeps_its_own_teeth_when_the_mouth_opens() -> None:
    avatar = prepare_avatar(load_portrait(), 512)
    rig = build_rig(avatar)
    assert rig.lips.shows_teeth
    wide = render_frame(rig, FacePose(mouth_open=0.3))
    luma = centre_column(wide, avatar)[0] @ LUMA
    skin = cheek_luminance(wide, avatar)
    inside = dark_run(luma, 0.55 * skin)
    above = luma[max(0, inside.start - round(0.15 * mouth_width(avatar))) : inside.start]
    # The upper teeth stay with the upper jaw, bright above the opened mouth.
    assert np.count_nonzero(above > 1.05 * skin) >= 0.05 * mouth_width(avatar), above.round()


def test_speech_opens_a_dark_mouth_in_the_animators_output(
    tmp_path_factory: pytest.TempPathFactory, photo: np.ndarray, avatar: PreparedAvatar
) -> None:
    settings = AnimatorSettings(cache_dir=tmp_path_factory.mktemp("mouth"), head_motion=0.0)
    animator = LandmarkWarpAnimator.load(settings)
    avatar_id = animator.prepare_avatar_sync(photo)
    t = np.arange(2 * ANIMATOR_AUDIO_RATE_HZ) / ANIMATOR_AUDIO_RATE_HZ
    vowel = sum(np.sin(2 * np.pi * 140 * h * t) / h for h in range(1, 12))
    audio = (0.9 * vowel / np.abs(vowel).max()).astype(np.float32)
    frame = animator.animate_sync(AnimationRequest(
        avatar_id=avatar_id, first_frame_index=12, num_frames=1, fps=25, audio=audio,
        audio_start_ns=0,
    ))[0]
    luma = centre_column(frame, avatar)[0] @ LUMA
    inside = dark_run(luma, 0.55 * cheek_luminance(frame, avatar))
    assert inside.stop - inside.start > 0.1 * mouth_width(avatar), luma.round()
