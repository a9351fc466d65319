"""The landmark-warp animator, judged by the landmark model looking at its frames."""

from __future__ import annotations

import numpy as np
import pytest

from talkface.face import topology as T
from talkface.face.base import ANIMATOR_AUDIO_RATE_HZ, AnimationRequest, AnimatorSettings
from talkface.face.landmark_warp import LandmarkWarpAnimator
from talkface.face.landmarks import FaceROI, FaceTracker, face_mesh
from talkface.face.motion import blink_amount
from talkface.face.portrait import load_portrait

pytestmark = pytest.mark.integration
FPS = 25


@pytest.fixture(scope="module")
def animator(tmp_path_factory: pytest.TempPathFactory) -> LandmarkWarpAnimator:
    settings = AnimatorSettings(cache_dir=tmp_path_factory.mktemp("avatars"))
    return LandmarkWarpAnimator.load(settings)


@pytest.fixture(scope="module")
def avatar_id(animator: LandmarkWarpAnimator) -> str:
    return animator.prepare_avatar_sync(load_portrait())


def tone(seconds: float, amplitude: float) -> np.ndarray:
    t = np.arange(int(seconds * ANIMATOR_AUDIO_RATE_HZ)) / ANIMATOR_AUDIO_RATE_HZ
    # A vowel-like buzz: a 140 Hz fundamental with harmonics.
    wave = sum(np.sin(2 * np.pi * 140 * h * t) / h for h in range(1, 12))
    return (amplitude * wave / np.abs(wave).max()).astype(np.float32)


def request(avatar_id: str, audio: np.ndarray, first: int, count: int, seed: int = 3,
            audio_start_ns: int = 0) -> AnimationRequest:
    return AnimationRequest(
        avatar_id=avatar_id, first_frame_index=first, num_frames=count, fps=FPS,
        audio=audio, audio_start_ns=audio_start_ns, seed=seed,
    )


def landmarks_of(frame: np.ndarray):
    return FaceTracker().track(frame)


def dark_eye_pixels(frame: np.ndarray, points: np.ndarray) -> int:
    """Pixels of iris and pupil (dark) inside both eye openings of ``points``."""
    import cv2

    mask = np.zeros(frame.shape[:2], np.uint8)
    for upper, lower in (
        (T.RIGHT_EYE_UPPER, T.RIGHT_EYE_LOWER),
        (T.LEFT_EYE_UPPER, T.LEFT_EYE_LOWER),
    ):
        contour = points[list(upper) + list(lower[::-1])].round().astype(np.int32)
        cv2.fillPoly(mask, [contour], 1)
    luminance = frame.astype(float) @ [0.299, 0.587, 0.114]
    return int(np.count_nonzero((luminance < 60) & mask.astype(bool)))


def test_loud_speech_opens_the_mouth_and_silence_closes_it(
    animator: LandmarkWarpAnimator, avatar_id: str
) -> None:
    loud = animator.animate_sync(request(avatar_id, tone(2.0, 0.8), 10, 5))
    quiet = animator.animate_sync(
        request(avatar_id, np.zeros(2 * ANIMATOR_AUDIO_RATE_HZ, np.float32), 10, 5)
    )
    open_gap = np.mean([landmarks_of(f).mouth_opening() for f in loud])
    rest_gap = np.mean([landmarks_of(f).mouth_opening() for f in quiet])
    # The portrait smiles with its teeth showing, so at rest the lips are already apart.
    assert open_gap > rest_gap * 1.2, (open_gap, rest_gap)


def test_blinks_close_the_eyes(animator: LandmarkWarpAnimator, avatar_id: str) -> None:
    seed = 5
    times = np.arange(0, 30, 1 / FPS)
    shut = blink_amount(seed, times, 14.0)
    blink_frame = int(np.argmax(shut > 0.95))
    assert shut[blink_frame] > 0.95
    silence = np.zeros(40 * ANIMATOR_AUDIO_RATE_HZ, np.float32)
    frames = animator.animate_sync(request(avatar_id, silence, blink_frame - 6, 7, seed=seed))
    # Where the open eyes are, the shut ones show lid skin instead of dark iris.
    eyes = landmarks_of(frames[0]).xy
    open_dark, shut_dark = dark_eye_pixels(frames[0], eyes), dark_eye_pixels(frames[-1], eyes)
    assert open_dark > 15
    assert shut_dark < 0.25 * open_dark, (open_dark, shut_dark)


def test_the_head_sways_a_little_when_idle(animator: LandmarkWarpAnimator, avatar_id: str) -> None:
    silence = np.zeros(10 * ANIMATOR_AUDIO_RATE_HZ, np.float32)
    frames = animator.animate_sync(request(avatar_id, silence, 0, 100))
    noses = np.array([landmarks_of(f).xy[T.NOSE_TIP] for f in frames[::10]])
    travel = np.ptp(noses, axis=0).max()
    assert 0.7 < travel < 15, travel  # alive, but not wobbling


def test_rendering_is_repeatable_and_chunks_join_seamlessly(
    animator: LandmarkWarpAnimator, avatar_id: str
) -> None:
    audio = tone(3.0, 0.6)
    whole = animator.animate_sync(request(avatar_id, audio, 20, 8))
    again = animator.animate_sync(request(avatar_id, audio, 20, 8))
    halves = animator.animate_sync(request(avatar_id, audio, 20, 4)) + animator.animate_sync(
        request(avatar_id, audio, 24, 4)
    )
    for a, b, c in zip(whole, again, halves, strict=True):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


def test_sessions_with_different_seeds_blink_at_different_times() -> None:
    times = np.arange(0, 60, 1 / FPS)
    a, b = blink_amount(1, times, 14.0), blink_amount(2, times, 14.0)
    assert not np.array_equal(a > 0.5, b > 0.5)
    blinks_per_min = np.count_nonzero(np.diff((a > 0.5).astype(int)) == 1)
    assert 6 <= blinks_per_min <= 25


def test_an_unknown_avatar_is_a_clear_error(animator: LandmarkWarpAnimator) -> None:
    from talkface.errors import BadInput

    with pytest.raises(BadInput, match="unknown avatar"):
        animator.animate_sync(request("0" * 32, np.zeros(1000, np.float32), 0, 1))


def test_landmarks_of_the_untouched_portrait_match_preparation(
    avatar_id: str, animator: LandmarkWarpAnimator
) -> None:
    # The measuring instrument agrees with itself: re-measuring a still frame finds the
    # face where preparation put it.
    still = np.zeros(ANIMATOR_AUDIO_RATE_HZ, np.float32)
    frame = animator.animate_sync(request(avatar_id, still, 0, 1))[0]
    measured = face_mesh().refine(frame, FaceROI.from_landmarks(landmarks_of(frame).points)).xy
    assert np.abs(measured - landmarks_of(frame).xy).max() < 3.0
