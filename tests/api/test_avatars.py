"""Portraits uploaded as avatars, used by renders; voices listed."""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from talkface.face.portrait import default_portrait_path, load_portrait

from .conftest import OTHER_KEY, RunningServer

pytestmark = [pytest.mark.serving, pytest.mark.integration]


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def jpeg(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def avatar_id(http: httpx.Client) -> str:
    response = http.post("/v1/avatars", files={"file": ("astronaut.png",
                                                        default_portrait_path().read_bytes())})
    assert response.status_code == 201, response.text
    return response.json()["avatar_id"]


def test_a_portrait_becomes_an_avatar_once(http: httpx.Client, avatar_id: str) -> None:
    portrait = default_portrait_path().read_bytes()
    again = http.post("/v1/avatars", files={"file": ("same.png", portrait)})
    assert again.status_code == 201 and again.json() == {"avatar_id": avatar_id, "object": "avatar"}


def first_frame(http: httpx.Client, avatar_id: str | None) -> np.ndarray:
    """The first video frame of a short render with ``avatar_id``."""
    import av

    body = {"text": "Hello.", "avatar_id": avatar_id, "seed": 1}
    job = http.post("/v1/renders", json=body).json()
    deadline = time.monotonic() + 120
    while job["status"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.2)
        job = http.get(f"/v1/renders/{job['id']}").json()
    assert job["status"] == "done", job
    with av.open(io.BytesIO(http.get(job["video_url"]).content)) as container:
        return next(container.decode(video=0)).to_ndarray(format="rgb24").astype(int)


def test_a_render_with_an_avatar_shows_that_face(http: httpx.Client, avatar_id: str) -> None:
    flipped_portrait = jpeg(load_portrait()[:, ::-1].copy())
    mirrored = http.post("/v1/avatars", files={"file": ("mirror.jpg", flipped_portrait)})
    assert mirrored.status_code == 201 and mirrored.json()["avatar_id"] != avatar_id
    default = first_frame(http, None)  # the bundled portrait, which is what was uploaded
    uploaded = first_frame(http, avatar_id)
    flipped = first_frame(http, mirrored.json()["avatar_id"])
    assert np.abs(default - uploaded).mean() < 3
    assert np.abs(default - flipped).mean() > 20
    assert np.abs(default - flipped[:, ::-1]).mean() < np.abs(default - flipped).mean()


def test_another_key_cannot_use_the_avatar(server: RunningServer, avatar_id: str) -> None:
    with server.client(OTHER_KEY) as other:
        response = other.post("/v1/renders", json={"text": "Hi.", "avatar_id": avatar_id})
    assert response.status_code == 404
    assert "POST /v1/avatars" in response.json()["error"]["message"]


def test_a_picture_without_one_clear_face_is_refused_with_the_reason(http: httpx.Client) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    response = http.post("/v1/avatars", files={"file": ("noise.jpg", jpeg(noise))})
    assert response.status_code == 400 and "face" in response.json()["error"]["message"]
    portrait = load_portrait()
    pair = np.concatenate([portrait, portrait[:, ::-1]], axis=1)
    response = http.post("/v1/avatars", files={"file": ("pair.jpg", jpeg(pair))})
    assert response.status_code == 400
    assert "found 2 faces" in response.json()["error"]["message"]


def test_files_that_are_not_usable_images_are_400(http: httpx.Client) -> None:
    response = http.post("/v1/avatars", files={"file": ("me.jpg", b"not a picture at all")})
    assert response.status_code == 400 and "not an image" in response.json()["error"]["message"]
    tiny = jpeg(np.full((64, 64, 3), 200, np.uint8))
    response = http.post("/v1/avatars", files={"file": ("tiny.jpg", tiny)})
    assert response.status_code == 400 and "64x64" in response.json()["error"]["message"]
    truncated = jpeg(load_portrait())[:5000]
    response = http.post("/v1/avatars", files={"file": ("cut.jpg", truncated)})
    assert response.status_code == 400
    assert http.post("/v1/avatars", files={"file": ("x.jpg", b"x")},
                     data={"name": "me"}).json()["error"]["message"].startswith("name:")


def flat_png(width: int, height: int, rgba: tuple[int, int, int, int]) -> bytes:
    """A valid RGBA PNG of one colour, made a row at a time (never whole in memory)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    row = b"\0" + bytes(rgba) * width  # filter type 0, then the pixels
    deflate = zlib.compressobj(9)
    pixels = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)  # 8-bit RGBA
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
            + chunk(b"IEND", b""))


class PeakMemory:
    """This process's peak resident memory (the test server runs in it) since ``start``."""

    _STATUS = Path("/proc/self/status")

    def start(self) -> None:
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to VmRSS
        except OSError:
            pytest.skip("measuring peak memory needs Linux's /proc/self/clear_refs")
        self._base_kib = self._read("VmRSS")

    def rise_mb(self) -> float:
        return (self._read("VmHWM") - self._base_kib) / 1024

    def _read(self, field: str) -> int:
        for line in self._STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} in {self._STATUS}")


def test_parallel_40_mp_uploads_are_decoded_in_bounded_memory(server: RunningServer) -> None:
    # 6300 x 6300 RGBA, just under the 40 MP limit: 160 kB of PNG, 160 MB of pixels.
    # Decoded whole, four at once took ~3.7 GB; reduced and two at a time, ~0.4 GB.
    big = flat_png(6300, 6300, (200, 190, 180, 255))
    assert len(big) < server.settings.server.limits.max_upload_bytes
    peak = PeakMemory()
    peak.start()
    with server.client() as http, ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(
            lambda i: http.post("/v1/avatars", files={"file": (f"big{i}.png", big)}), range(4)))
    rise_mb = peak.rise_mb()
    for response in responses:  # each was decoded, and found to have no face
        assert response.status_code == 400, response.text
        assert "no face found" in response.json()["error"]["message"]
    assert rise_mb < 600, f"four uploads raised the peak memory by {rise_mb:.0f} MB"
    with server.client() as http:  # still serving
        again = http.post("/v1/avatars", files={"file": ("me.png",
                                                         default_portrait_path().read_bytes())})
    assert again.status_code == 201, again.text


def test_voices_are_listed_for_keys_and_session_tokens(server: RunningServer,
                                                       http: httpx.Client) -> None:
    voices = http.get("/v1/voices").json()
    names = {v["name"] for v in voices["data"]}
    assert {"joe", "espeak-zh"} <= names and "alloy" in voices["openai_voices"]
    token = http.post("/v1/tokens").json()["token"]
    with httpx.Client(base_url=server.base_url,
                      headers={"Authorization": f"Bearer {token}"}) as page:
        assert page.get("/v1/voices").json() == voices
