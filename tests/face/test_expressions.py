"""Expressions must read at a glance: brows, eyelids and mouth corners move by several
pixels, measured from the frames with OpenCV's optical flow (not with the rig's own
numbers), with everything else (speech, head motion, blinks) held the same."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from talkface.face import topology as T
from talkface.face.avatar import prepare_avatar
from talkface.face.base import ANIMATOR_AUDIO_RATE_HZ, AnimationRequest, AnimatorSettings
from talkface.face.landmark_warp import LandmarkWarpAnimator
from talkface.face.portrait import load_portrait
from talkface.messages import Emotion

pytestmark = pytest.mark.integration

INNER_BROWS = (107, 336)  # the subject's right and left brow, inner ends
OUTER_BROWS = (70, 300)


@pytest.fixture(scope="module")
def landmarks() -> np.ndarray:
    """Where the face is in every frame (the animator frames the portrait the same way)."""
    return prepare_avatar(load_portrait(), 512).landmarks[:, :2]


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> dict[Emotion, np.ndarray]:
    """The same moment of speech, once per emotion."""
    settings = AnimatorSettings(cache_dir=tmp_path_factory.mktemp("expressions"),
                                head_motion=0.0, blinks_per_min=0.0)
    animator = LandmarkWarpAnimator.load(settings)
    avatar_id = animator.prepare_avatar_sync(load_portrait())
    t = np.arange(2 * ANIMATOR_AUDIO_RATE_HZ) / ANIMATOR_AUDIO_RATE_HZ
    vowel = sum(np.sin(2 * np.pi * 140 * h * t) / h for h in range(1, 12))
    audio = (0.3 * vowel / np.abs(vowel).max()).astype(np.float32)
    return {
        emotion: animator.animate_sync(AnimationRequest(
            avatar_id=avatar_id, first_frame_index=20, num_frames=1, fps=25, audio=audio,
            audio_start_ns=0, emotion=emotion, previous_emotion=emotion, seed=3,
        ))[0]
        for emotion in Emotion
    }


def motion(frames: dict[Emotion, np.ndarray], emotion: Emotion, at: np.ndarray) -> np.ndarray:
    """How far the pixels at ``at`` moved from the neutral face to ``emotion`` (x, y px)."""
    neutral = cv2.cvtColor(frames[Emotion.NEUTRAL], cv2.COLOR_RGB2GRAY)
    other = cv2.cvtColor(frames[emotion], cv2.COLOR_RGB2GRAY)
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(neutral, other, None)
    moved = []
    for x, y in np.round(at).astype(int):
        moved.append(np.median(flow[y - 4 : y + 5, x - 4 : x + 5].reshape(-1, 2), axis=0))
    return np.array(moved)


def visible_eye(frame: np.ndarray, points: np.ndarray) -> int:
    """Dark iris and pupil pixels inside both eyes' openings of the neutral face."""
    mask = np.zeros(frame.shape[:2], np.uint8)
    for upper, lower in ((T.RIGHT_EYE_UPPER, T.RIGHT_EYE_LOWER),
                         (T.LEFT_EYE_UPPER, T.LEFT_EYE_LOWER)):
        contour = points[list(upper) + list(lower[::-1])].round().astype(np.int32)
        cv2.fillPoly(mask, [contour], 1)
    luminance = frame.astype(float) @ [0.299, 0.587, 0.114]
    return int(np.count_nonzero((luminance < 90) & mask.astype(bool)))


def face_height(points: np.ndarray) -> float:
    return float(np.linalg.norm(points[T.FOREHEAD_TOP] - points[T.CHIN]))


def test_happy_lifts_the_mouth_corners_and_the_brows(frames: dict[Emotion, np.ndarray],
                                                     landmarks: np.ndarray) -> None:
    height = face_height(landmarks)
    corners = motion(frames, Emotion.HAPPY, landmarks[[T.MOUTH_CORNER_RIGHT, T.MOUTH_CORNER_LEFT]])
    assert (corners[:, 1] < -0.02 * height).all(), corners  # up by 2 % of the face or more
    assert corners[0, 0] < 0 < corners[1, 0], corners  # and out: a wider mouth
    brows = motion(frames, Emotion.HAPPY, landmarks[list(INNER_BROWS + OUTER_BROWS)])
    assert brows[:, 1].mean() < -0.015 * height, brows


def test_happy_eyes_narrow_from_below(frames: dict[Emotion, np.ndarray],
                                      landmarks: np.ndarray) -> None:
    lids = motion(frames, Emotion.HAPPY, landmarks[[145, 374]])  # lower lids' middles
    assert (lids[:, 1] < -0.006 * face_height(landmarks)).all(), lids


def test_serious_frowns_and_turns_the_mouth_down(frames: dict[Emotion, np.ndarray],
                                                 landmarks: np.ndarray) -> None:
    height = face_height(landmarks)
    inner = motion(frames, Emotion.SERIOUS, landmarks[list(INNER_BROWS)])
    assert (inner[:, 1] > 0.02 * height).all(), inner  # inner brows down...
    assert inner[0, 0] > 0.008 * height and inner[1, 0] < -0.008 * height, inner  # ...and together
    corners = motion(frames, Emotion.SERIOUS,
                     landmarks[[T.MOUTH_CORNER_RIGHT, T.MOUTH_CORNER_LEFT]])
    assert (corners[:, 1] > 0.015 * height).all(), corners


def test_serious_lowers_the_eyelids(frames: dict[Emotion, np.ndarray],
                                    landmarks: np.ndarray) -> None:
    neutral = visible_eye(frames[Emotion.NEUTRAL], landmarks)
    serious = visible_eye(frames[Emotion.SERIOUS], landmarks)
    assert neutral > 40
    assert serious < 0.85 * neutral, (neutral, serious)


def test_every_emotion_has_an_expression() -> None:
    from talkface.face.motion import EXPRESSIONS

    assert set(EXPRESSIONS) == set(Emotion)
