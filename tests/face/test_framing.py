"""Framing: how big the face is in the picture, judged by a detector the animator does not use.

The animator finds faces with MediaPipe's BlazeFace; these tests measure its output with
OpenCV's Haar cascade (see conftest.py), so a framing bug cannot hide behind the same
model that made it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from talkface.face import topology as T
from talkface.face.avatar import AvatarStore, avatar_key, prepare_avatar
from talkface.face.base import ANIMATOR_AUDIO_RATE_HZ, AnimationRequest, AnimatorSettings, Framing
from talkface.face.landmark_warp import LandmarkWarpAnimator
from talkface.face.landmarks import FaceTracker
from talkface.face.lipsync import decode_video
from talkface.face.portrait import load_portrait

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return load_portrait()


def face_height_fraction(haar, image: np.ndarray) -> float:
    faces = haar.detect(image, min_size_px=image.shape[0] // 8)
    assert faces, "the Haar cascade found no face"
    return faces[0][3] / image.shape[0]


def test_the_haar_cascade_finds_the_face_where_opencv_does(haar, portrait: np.ndarray) -> None:
    # opencv-python-headless 4.14's CascadeClassifier.detectMultiScale(gray, 1.1, 3,
    # minSize=(40, 40)) on the bundled portrait answers [[177, 66, 95, 95]].
    faces = haar.detect(portrait, min_size_px=40)
    assert len(faces) == 1
    assert np.abs(np.array(faces[0]) - (177, 66, 95, 95)).max() <= 3, faces


@pytest.fixture(scope="module")
def say_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`talkface say` run as a user runs it: by default, and with --framing full."""
    out = tmp_path_factory.mktemp("framing")
    videos = {}
    for name, extra in {"default": [], "full": ["--framing", "full"]}.items():
        path = out / f"{name}.mp4"
        result = subprocess.run(
            [sys.executable, "-m", "talkface.cli", "say", "Hello there, nice to meet you.",
             "-o", str(path), "--seed", "2", "-q", *extra],
            capture_output=True, text=True, timeout=300, check=False,
        )
        assert result.returncode == 0, result.stderr
        videos[name] = path
    return videos


def test_by_default_say_shows_the_face_at_a_third_of_the_frame_or_more(
    haar, say_videos: dict[str, Path]
) -> None:
    frames, _, _, _ = decode_video(say_videos["default"])
    picks = np.linspace(0, len(frames) - 1, 6).round().astype(int)
    fractions = [face_height_fraction(haar, frames[i]) for i in picks]
    assert min(fractions) >= 1 / 3, fractions


def test_say_framing_full_shows_the_whole_photo(haar, say_videos: dict[str, Path]) -> None:
    frames, _, _, _ = decode_video(say_videos["full"])
    # The bundled photo is square: shown whole, its face is under a fifth of the height.
    assert face_height_fraction(haar, frames[0]) < 0.22


def test_framing_modes_give_the_expected_face_sizes(haar, portrait: np.ndarray) -> None:
    fractions = {framing: face_height_fraction(haar, prepare_avatar(portrait, 512, framing).image)
                 for framing in Framing}
    assert fractions[Framing.FACE] >= 0.45, fractions
    assert 0.34 <= fractions[Framing.BUST] <= 0.45, fractions
    assert fractions[Framing.FULL] < 0.22, fractions


def test_the_framing_is_part_of_the_prepared_avatar(portrait: np.ndarray, tmp_path: Path) -> None:
    keys = {avatar_key(portrait, 512, framing) for framing in Framing}
    assert len(keys) == 3
    store = AvatarStore(tmp_path)
    close = store.prepare(portrait, 512, Framing.FACE)
    whole = store.prepare(portrait, 512, Framing.FULL)
    assert close.avatar_id != whole.avatar_id
    assert not np.array_equal(close.image, whole.image)
    # Read back from disk, each framing is still its own.
    assert np.array_equal(AvatarStore(tmp_path).get(close.avatar_id).image, close.image)


def test_the_animator_frames_portraits_as_its_settings_say(portrait: np.ndarray,
                                                           tmp_path: Path) -> None:
    ids = {}
    for framing in (Framing.BUST, Framing.FACE):
        animator = LandmarkWarpAnimator.load(AnimatorSettings(cache_dir=tmp_path, framing=framing))
        ids[framing] = animator.prepare_avatar_sync(portrait)
    assert ids[Framing.BUST] == avatar_key(portrait, 512, Framing.BUST)
    assert ids[Framing.FACE] == avatar_key(portrait, 512, Framing.FACE)


def test_a_small_crop_is_enlarged_smoothly_not_in_blocks(portrait: np.ndarray) -> None:
    # The close-up enlarges the face about three times: nearest-neighbour enlarging
    # would repeat each pixel in 3x3 blocks, so neighbours would often be equal.
    image = prepare_avatar(portrait, 512, Framing.FACE).image.astype(np.int16)
    face = image[100:400, 100:400]
    equal_right = np.all(face[:, 1:] == face[:, :-1], axis=2).mean()
    equal_down = np.all(face[1:] == face[:-1], axis=2).mean()
    assert max(equal_right, equal_down) < 0.1, (equal_right, equal_down)


def test_the_crop_stays_put_while_the_head_sways(tmp_path: Path, portrait: np.ndarray) -> None:
    animator = LandmarkWarpAnimator.load(AnimatorSettings(cache_dir=tmp_path))
    avatar_id = animator.prepare_avatar_sync(portrait)
    still = AvatarStore(tmp_path).get(avatar_id).image
    silence = np.zeros(8 * ANIMATOR_AUDIO_RATE_HZ, np.float32)
    frames = animator.animate_sync(AnimationRequest(
        avatar_id=avatar_id, first_frame_index=0, num_frames=100, fps=25, audio=silence,
        audio_start_ns=0, seed=4,
    ))
    noses = np.array([FaceTracker().track(f).xy[T.NOSE_TIP] for f in frames[::10]])
    assert np.ptp(noses, axis=0).max() > 1.5  # the head moves...
    top, bottom = slice(0, 48), slice(still.shape[0] - 48, None)
    left, right = slice(0, 48), slice(still.shape[1] - 48, None)
    corners = [(top, left), (top, right), (bottom, left), (bottom, right)]
    for frame in frames:
        for rows, cols in corners:
            # ...but the background and the shoulders, all four corners of the
            # picture, stay exactly where the prepared crop put them.
            np.testing.assert_array_equal(frame[rows, cols], still[rows, cols])
