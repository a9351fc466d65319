"""Portraits: what the real face models accept, what they refuse and why."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from talkface.errors import BadInput, Overloaded, PayloadTooLarge
from talkface.face import avatar as avatar_module
from talkface.face import portrait as portrait_module
from talkface.face import topology as T
from talkface.face.avatar import AvatarStore, prepare_avatar
from talkface.face.portrait import DecodeWorkers, decode_portrait, load_portrait

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def portrait() -> np.ndarray:
    return load_portrait()


def encode(image: np.ndarray, fmt: str = "PNG", **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def test_the_bundled_portrait_is_framed_and_its_landmarks_sit_on_the_face(
    portrait: np.ndarray,
) -> None:
    avatar = prepare_avatar(portrait, 512)
    assert avatar.image.shape == (512, 512, 3)
    points = avatar.landmarks[:, :2]
    # The face is upright: eyes above the nose above the mouth above the chin.
    eyes_y = points[[33, 263], 1].mean()
    assert eyes_y < points[T.NOSE_TIP, 1] < points[T.INNER_LIP_UPPER_CENTRE, 1] < points[T.CHIN, 1]
    # The landmarks sit on skin-coloured pixels, not the background.
    cheek = avatar.image[int(points[T.NOSE_TIP, 1]), int(points[T.NOSE_TIP, 0])]
    assert cheek[0] > cheek[2]  # skin is redder than it is blue


def test_a_picture_without_a_face_is_refused(portrait: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    with pytest.raises(BadInput, match=r"no (clear )?face found"):
        prepare_avatar(noise, 512)
    with pytest.raises(BadInput, match="no face found"):
        prepare_avatar(np.full((400, 400, 3), 128, np.uint8), 512)


def test_a_picture_with_two_faces_is_refused(portrait: np.ndarray) -> None:
    pair = np.concatenate([portrait, portrait[:, ::-1]], axis=1)
    with pytest.raises(BadInput, match="found 2 faces"):
        prepare_avatar(pair, 512)


def test_a_tiny_face_is_refused_with_its_size(portrait: np.ndarray) -> None:
    small = np.asarray(Image.fromarray(portrait).resize((220, 220), Image.LANCZOS))
    canvas = np.full((600, 600, 3), 200, np.uint8)
    canvas[190:410, 190:410] = small
    with pytest.raises(BadInput, match=r"the face is only \d+ px wide"):
        prepare_avatar(canvas, 512)


def test_a_huge_image_is_refused_before_it_is_decoded() -> None:
    # 9000 x 9000 one-bit pixels: a small file that would expand to 243 MB of RGB.
    buffer = io.BytesIO()
    Image.new("1", (9000, 9000)).save(buffer, format="PNG")
    assert len(buffer.getvalue()) < 1_000_000
    with pytest.raises(PayloadTooLarge, match=r"9000x9000 px .* downscale it"):
        decode_portrait(buffer.getvalue())


def test_corrupt_empty_and_non_image_files_are_refused(portrait: np.ndarray) -> None:
    jpeg = encode(portrait, "JPEG")
    with pytest.raises(BadInput, match="corrupt or truncated"):
        decode_portrait(jpeg[: len(jpeg) // 3])
    with pytest.raises(BadInput, match="empty"):
        decode_portrait(b"")
    with pytest.raises(BadInput, match="not an image"):
        decode_portrait(b"%PDF-1.4 hello")


def test_a_phone_photo_stored_sideways_is_turned_upright(portrait: np.ndarray) -> None:
    # Stored rotated, with the EXIF tag that says "rotate 90 degrees clockwise to view".
    sideways = np.ascontiguousarray(np.rot90(portrait, k=1))
    exif = Image.Exif()
    exif[0x0112] = 6
    upright = decode_portrait(encode(sideways, "JPEG", exif=exif.tobytes(), quality=95))
    assert upright.shape == portrait.shape
    assert np.abs(upright.astype(int) - portrait.astype(int)).mean() < 8


def test_a_transparent_png_gets_a_white_background(portrait: np.ndarray) -> None:
    rgba = np.dstack([portrait, np.full(portrait.shape[:2], 255, np.uint8)])
    rgba[:40, :40, 3] = 0
    decoded = decode_portrait(encode(rgba))
    assert (decoded[:40, :40] == 255).all()
    prepare_avatar(decoded, 256)


def test_prepared_avatars_are_cached_on_disk_and_reused(
    portrait: np.ndarray, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = AvatarStore(tmp_path).prepare(portrait, 384)
    assert list((tmp_path / "avatars").glob("*.npz"))

    def no_detection(*_: object) -> None:
        raise AssertionError("the cached avatar should have been used")

    monkeypatch.setattr(avatar_module, "prepare_avatar", no_detection)
    again = AvatarStore(tmp_path).prepare(portrait, 384)  # a new process, same disk
    assert again.avatar_id == first.avatar_id
    np.testing.assert_array_equal(again.landmarks, first.landmarks)
    # A different size is a different avatar.
    monkeypatch.undo()
    other = AvatarStore(tmp_path).prepare(portrait, 256)
    assert other.avatar_id != first.avatar_id


def test_a_large_image_is_decoded_reduced_to_at_most_4_mp() -> None:
    # 12 MP, transparent on the right: reduced in strips, the transparent part white.
    rgba = np.zeros((3000, 4000, 4), np.uint8)
    rgba[:, :2000] = (200, 30, 40, 255)
    decoded = decode_portrait(encode(rgba))
    assert decoded.shape == (1500, 2000, 3)  # by a whole factor (2): the aspect ratio is kept
    assert (decoded[:, :900] == (200, 30, 40)).all()
    assert (decoded[:, 1100:] == 255).all()


def test_a_large_phone_jpeg_is_decoded_reduced_and_upright() -> None:
    # 12 MP stored sideways (EXIF orientation 6): decoded at half scale by the JPEG
    # decoder, then turned upright.
    sideways = np.full((3000, 4000, 3), 90, np.uint8)
    sideways[:, :400] = (250, 250, 250)  # the left edge is the top of the picture
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_portrait(encode(sideways, "JPEG", exif=exif.tobytes(), quality=90))
    assert decoded.shape == (2000, 1500, 3)
    assert decoded[:150].mean() > 240 and decoded[300:].mean() < 100


@pytest.mark.parametrize("max_waiting", [0, 1])
def test_decodes_beyond_the_workers_are_refused_as_overloaded(
    portrait: np.ndarray, monkeypatch: pytest.MonkeyPatch, max_waiting: int
) -> None:
    # One decode thread, kept busy. With no room to wait, a decode is refused at once;
    # with room, it is refused when no thread came free in time (here: at once).
    workers = DecodeWorkers(1, max_waiting=max_waiting, wait_s=0.0)
    monkeypatch.setattr(portrait_module, "DECODE_WORKERS", workers)
    busy, release = threading.Event(), threading.Event()

    def occupy() -> None:
        busy.set()
        release.wait()

    png = encode(portrait)
    with ThreadPoolExecutor(1) as caller:
        occupied = caller.submit(workers.run, occupy)
        assert busy.wait(timeout=30)
        try:
            with pytest.raises(Overloaded, match="decoding 1 images already") as refused:
                decode_portrait(png)
        finally:
            release.set()
        occupied.result()
    assert refused.value.http_status == 503 and refused.value.retry_after_s > 0
    assert decode_portrait(png).shape == portrait.shape  # the thread is free again
