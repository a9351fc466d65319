"""Refusals a client can run into, each with the right status, a JSON error that says
what to do, and a server that goes on serving afterwards."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .conftest import FLOOD_KEY, OTHER_KEY, RunningServer

pytestmark = [pytest.mark.serving, pytest.mark.integration]

KEY_ONLY = [
    ("GET", "/v1/models"),
    ("POST", "/v1/audio/speech"),
    ("POST", "/v1/audio/transcriptions"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/renders"),
    ("GET", "/v1/renders"),
    ("GET", "/v1/renders/r_123/video"),
    ("POST", "/v1/avatars"),
    ("GET", "/metrics"),
]


@pytest.fixture(scope="module")
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


@pytest.fixture
def still_serving(http: httpx.Client) -> Iterator[None]:
    """After the test, a normal request (models and a short speech) still works."""
    yield
    assert http.get("/v1/models").status_code == 200
    speech = http.post("/v1/audio/speech", json={"input": "Still here.", "response_format": "wav"})
    assert speech.status_code == 200 and len(speech.content) > 10_000


def error_of(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"} and error["message"]
    return error


@pytest.mark.parametrize(("method", "path"), KEY_ONLY)
def test_no_key_or_a_wrong_key_is_401(server: RunningServer, method: str, path: str,
                                      still_serving: None) -> None:
    with httpx.Client(base_url=server.base_url) as anonymous:
        assert error_of(anonymous.request(method, path), 401)["code"] == "unauthorized"
        wrong = anonymous.request(method, path, headers={"Authorization": "Bearer tfk_wrong_key"})
        assert "invalid API key" in error_of(wrong, 401)["message"]
        basic = anonymous.request(method, path, headers={"Authorization": "Basic dXNlcjpwdw=="})
        assert error_of(basic, 401)["code"] == "unauthorized"


@pytest.mark.parametrize(("method", "path"), KEY_ONLY)
def test_a_session_token_on_a_key_only_endpoint_is_403(server: RunningServer, http: httpx.Client,
                                                       method: str, path: str,
                                                       still_serving: None) -> None:
    token = http.post("/v1/tokens").json()["token"]
    with httpx.Client(base_url=server.base_url) as browser:
        response = browser.request(method, path, headers={"Authorization": f"Bearer {token}"})
        assert "needs an API key" in error_of(response, 403)["message"]
        # ... while the voices a browser page needs are open to it.
        voices = browser.get("/v1/voices", headers={"Authorization": f"Bearer {token}"})
        assert voices.status_code == 200


def test_a_flooding_key_is_throttled_while_another_is_served(server: RunningServer,
                                                             still_serving: None) -> None:
    burst = server.settings.server.rate_limit.burst
    with server.client(FLOOD_KEY) as flood, server.client(OTHER_KEY) as other, \
            ThreadPoolExecutor(8) as pool:
        statuses: list[int] = []
        throttled: httpx.Response | None = None
        for _ in range(20):  # rounds of concurrent requests, until the bucket is empty
            responses = list(pool.map(lambda _: flood.get("/v1/models"), range(2 * burst)))
            statuses += [r.status_code for r in responses]
            throttled = next((r for r in responses if r.status_code == 429), None)
            if throttled is not None:
                break
        assert throttled is not None, "a flood was never throttled"
        assert statuses.count(200) >= burst  # the burst itself was served
        assert error_of(throttled, 429)["code"] == "rate_limited"
        assert int(throttled.headers["Retry-After"]) >= 1
        assert other.get("/v1/models").status_code == 200  # other keys are not affected


def test_oversize_uploads_are_413_before_they_are_read(server: RunningServer, http: httpx.Client,
                                                       still_serving: None) -> None:
    limit = server.settings.server.limits.max_upload_bytes
    big = b"\0" * (limit + 200_000)
    for path in ("/v1/audio/transcriptions", "/v1/avatars", "/v1/renders"):
        response = http.post(path, files={"file": ("big.wav", big)}, data={"model": "whisper-1"})
        error = error_of(response, 413)
        assert error["code"] == "payload_too_large"
        assert "limits.max_upload_bytes" in error["message"]


@pytest.mark.parametrize("path", ["/v1/audio/transcriptions", "/v1/avatars", "/v1/renders"])
def test_an_oversize_upload_without_a_length_is_cut_off_with_413(http: httpx.Client,
                                                                 server: RunningServer, path: str,
                                                                 still_serving: None) -> None:
    limit = server.settings.server.limits.max_upload_bytes
    boundary = "talkfaceboundary"

    def chunked() -> Iterator[bytes]:  # no Content-Length: the server counts as it reads
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
               f"filename=\"big.wav\"\r\n\r\n").encode()
        for _ in range(limit // 65536 + 8):
            yield b"\0" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    response = http.post(path, content=chunked(),
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert "max_upload_bytes" in error_of(response, 413)["message"]


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/v1/audio/speech", {"input": "Hi", "speed": "fast"}, "speed"),
    ("/v1/audio/speech", {"input": "Hi", "response_format": "ogg"}, "response_format"),
    ("/v1/audio/speech", {"input": "Hi", "volume": 11}, "volume"),
    ("/v1/audio/speech", {"voice": "alloy"}, "input"),
    ("/v1/chat/completions", {"model": "x", "messages": [{"role": "robot", "content": "hi"}]},
     "messages.0.role"),
    ("/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": "hi"}],
                              "max_tokens": -1}, "max_tokens"),
    ("/v1/chat/completions", {"model": "x", "messages": [{"role": "user", "content": "hi"}],
                              "tools": []}, "tools"),
    ("/v1/renders", {"text": "Hi", "speed": [1]}, "speed"),
    ("/v1/renders", {"text": "Hi", "portrait": "me.jpg"}, "portrait"),
])
def test_bad_fields_are_400_naming_the_field(http: httpx.Client, path: str, body: dict[str, object],
                                             field: str, still_serving: None) -> None:
    error = error_of(http.post(path, json=body), 400)
    assert error["message"].startswith(f"{field}:"), error


@pytest.mark.parametrize("path", ["/v1/audio/speech", "/v1/chat/completions", "/v1/renders"])
def test_malformed_json_is_400(http: httpx.Client, path: str, still_serving: None) -> None:
    response = http.post(path, content=b'{"input": "Hi",',
                         headers={"Content-Type": "application/json"})
    assert "JSON" in error_of(response, 400)["message"]


def test_unknown_form_fields_are_400_naming_the_field(http: httpx.Client,
                                                       still_serving: None) -> None:
    response = http.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"RIFF")},
                         data={"model": "whisper-1", "diarize": "true"})
    assert error_of(response, 400)["message"].startswith("diarize:")
    response = http.post("/v1/audio/transcriptions", files={"file": ("a.wav", b"RIFF")},
                         data={"response_format": "srt"})
    assert error_of(response, 400)["message"].startswith("response_format:")
    assert "file" in error_of(http.post("/v1/audio/transcriptions", data={"model": "w"},
                                        files={"other": ("a.wav", b"x")}), 400)["message"]


@pytest.mark.parametrize(("path", "field"), [
    ("/v1/audio/speech", "input"), ("/v1/renders", "text"), ("/v1/chat/completions", "messages"),
])
def test_text_over_the_limit_is_413(http: httpx.Client, server: RunningServer, path: str,
                                    field: str, still_serving: None) -> None:
    text = "a" * (server.settings.server.limits.max_text_chars + 1)
    body: dict[str, object] = {"input": text} if field == "input" else {"text": text}
    if field == "messages":
        body = {"model": "x", "messages": [{"role": "user", "content": text}]}
    error = error_of(http.post(path, json=body), 413)
    assert "limits.max_text_chars" in error["message"] and str(len(text)) in error["message"]


def test_empty_text_is_400(http: httpx.Client, still_serving: None) -> None:
    error = error_of(http.post("/v1/audio/speech", json={"input": "  ... "}), 400)
    assert "nothing to say" in error["message"]


def chunk(kind: bytes, data: bytes) -> bytes:
    """A PNG chunk: length, kind, data, CRC."""
    crc = struct.pack(">I", zlib.crc32(kind + data))
    return struct.pack(">I", len(data)) + kind + data + crc


def test_a_huge_image_is_refused_without_being_decoded(http: httpx.Client,
                                                        still_serving: None) -> None:
    # A PNG header that claims 10000 x 8000 px: a decompression bomb, 45 bytes long.
    header = struct.pack(">IIBBBBB", 10_000, 8_000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")
    response = http.post("/v1/avatars", files={"file": ("bomb.png", bomb)})
    assert "10000x8000 px" in error_of(response, 413)["message"]


def test_a_complete_decompression_bomb_is_refused_without_being_decoded(
        http: httpx.Client, server: RunningServer, still_serving: None) -> None:
    # A valid 10000 x 10000 RGBA PNG of one colour: 390 kB that would decode to 400 MB.
    row = b"\0" + b"\xff" * 40_000
    deflate = zlib.compressobj(9)
    pixels = b"".join(deflate.compress(row) for _ in range(10_000)) + deflate.flush()
    header = struct.pack(">IIBBBBB", 10_000, 10_000, 8, 6, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(
        b"IEND", b"")
    assert len(bomb) < server.settings.server.limits.max_upload_bytes
    response = http.post("/v1/avatars", files={"file": ("bomb.png", bomb)})
    assert "the limit is 40 MP" in error_of(response, 413)["message"]


@pytest.mark.parametrize("path", ["/v1/audio/transcriptions", "/v1/renders"])
def test_a_wav_header_that_lies_about_its_length_is_400(http: httpx.Client, path: str,
                                                        still_serving: None) -> None:
    # One second of audio under a header that declares 2 GiB of it (18 hours).
    wav = bytearray(b"RIFF" + struct.pack("<I", 36 + 32_000) + b"WAVEfmt "
                    + struct.pack("<IHHIIHH", 16, 1, 1, 16_000, 32_000, 2, 16)
                    + b"data" + struct.pack("<I", 0x7FFF_FFF0) + bytes(32_000))
    response = http.post(path, files={"file": ("lying.wav", bytes(wav))},
                         data={"model": "whisper-1"} if "audio" in path else {})
    message = error_of(response, 400)["message"]
    assert "the WAV header of the uploaded file 'lying.wav' says it holds" in message
    assert "the header is damaged" in message


def test_unknown_paths_and_methods_are_json_errors(http: httpx.Client, still_serving: None) -> None:
    assert error_of(http.get("/v1/nothing-here"), 404)["code"] == "not_found"
    assert error_of(http.delete("/v1/models"), 405)["code"] == "method_not_allowed"
