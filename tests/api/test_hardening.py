"""What a security probe of the server checks, in-process without models: failed logins
throttled per address, security headers, no public API map by default, strict numbers.

A real server gets the same probes in test_api_fuzz.py (schemathesis and floods).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import ValidationError

from talkface.api.app import create_app
from talkface.api.auth import (
    Authenticator,
    KeyRing,
    LoginThrottle,
    RateLimiter,
    TokenSigner,
)
from talkface.api.errors import RateLimited, Unauthorized
from talkface.api.headers import CONTENT_SECURITY_POLICY
from talkface.api.realtime.session import parse_client_message
from talkface.api.schemas import ChatCompletionRequest, RenderForm, SpeechRequest
from talkface.api.settings import LoginLimitSettings, RateLimitSettings
from talkface.config import load_settings
from talkface.errors import BadInput
from talkface.runtime import Runtime

pytestmark = pytest.mark.unit

KEY = "tfk_unit_test_key_0001"


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def authenticator(clock: Clock, max_failures: int = 3) -> Authenticator:
    return Authenticator(
        KeyRing((KEY,)), TokenSigner(), RateLimiter(RateLimitSettings()),
        logins=LoginThrottle(LoginLimitSettings(max_failures=max_failures, window_s=60.0),
                             clock=clock))


def test_failed_logins_are_throttled_per_address_for_a_while() -> None:
    clock = Clock()
    auth = authenticator(clock)
    forged = "tft1.eyJrIjoieCJ9.c2lnbmF0dXJl"
    for wrong in ("tfk_guess_number_1", forged, "tfk_guess_number_3"):
        with pytest.raises(Unauthorized):
            auth.authenticate(wrong, allow_session=True, client="10.0.0.1")
    # Now even the right key is refused from there, with when to retry...
    with pytest.raises(RateLimited, match="too many failed logins") as caught:
        auth.authenticate(KEY, allow_session=True, client="10.0.0.1")
    assert 0 < caught.value.retry_after_s <= 60
    # ...while another address is served, and guessing there counts on its own.
    assert auth.authenticate(KEY, allow_session=True, client="10.0.0.2").scope == "key"
    with pytest.raises(Unauthorized):
        auth.authenticate("tfk_guess_number_4", allow_session=True, client="10.0.0.2")
    # Missing credentials are not guesses.
    for _ in range(5):
        with pytest.raises(Unauthorized):
            auth.authenticate(None, allow_session=True, client="10.0.0.3")
    assert auth.authenticate(KEY, allow_session=True, client="10.0.0.3").key_id
    # Once the failures leave the window, the address may try again.
    clock.now_s += 61
    assert auth.authenticate(KEY, allow_session=True, client="10.0.0.1").key_id


@pytest.fixture
async def app_client() -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two clients of one app (no models loaded), from two addresses."""
    settings = load_settings(server={"api_keys": (KEY,),
                                     "login_limit": {"max_failures": 3, "window_s": 60}})
    app = create_app(settings, runtime=Runtime(settings))

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://talkface.test")

    async with client("192.0.2.1") as first, client("192.0.2.2") as second:
        yield first, second


async def test_an_address_that_keeps_guessing_keys_gets_429(
        app_client: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    guesser, other = app_client
    for n in range(3):
        response = await guesser.post("/v1/tokens", headers={"Authorization": f"Bearer tfk_{n:08}"})
        assert response.status_code == 401
    refused = await guesser.post("/v1/tokens", headers={"Authorization": f"Bearer {KEY}"})
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert "failed logins" in refused.json()["error"]["message"]
    served = await other.post("/v1/tokens", headers={"Authorization": f"Bearer {KEY}"})
    assert served.status_code == 200


async def test_the_page_and_the_api_carry_security_headers(
        app_client: tuple[httpx.AsyncClient, httpx.AsyncClient]) -> None:
    http, _ = app_client
    page = await http.get("/")
    assert page.status_code == 200 and "<video" in page.text
    api = await http.get("/v1/models")  # refused, and still with the headers
    assert api.status_code == 401
    for response in (page, api):
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"  # the page URL has a token
        assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    policy = dict(d.strip().split(" ", 1) for d in CONTENT_SECURITY_POLICY.split(";"))
    # What the web client needs: its own modules, a blob: AudioWorklet, blob: MSE video,
    # fetch and WebSocket to this origin; and nothing inline.
    assert policy["script-src"] == "'self' blob:" and "unsafe" not in CONTENT_SECURITY_POLICY
    assert "blob:" in policy["media-src"] and policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"


async def test_the_api_docs_are_not_public_unless_turned_on() -> None:
    for public, expected in ((False, 404), (True, 200)):
        settings = load_settings(server={"api_keys": (KEY,), "public_docs": public})
        app = create_app(settings, runtime=Runtime(settings))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://talkface.test") as http:
            for path in ("/openapi.json", "/docs", "/redoc"):
                assert (await http.get(path)).status_code == expected, (public, path)


@pytest.mark.parametrize(("raw", "where"), [
    ({"type": "frame_presented", "turn_id": 1, "presented_at_ms": float("nan")},
     "presented_at_ms"),
    ({"type": "frame_presented", "turn_id": 1, "presented_at_ms": float("inf")},
     "presented_at_ms"),
    ({"type": "frame_presented", "turn_id": True, "presented_at_ms": 1.0}, "turn_id"),
    ({"type": "ping", "client_time_ms": True}, "client_time_ms"),
    ({"type": "hello", "sample_rate_hz": True}, "sample_rate_hz"),
    ({"type": "hello", "sample_rate_hz": "16000"}, "sample_rate_hz"),
])
def test_live_messages_take_real_numbers_only(raw: dict[str, object], where: str) -> None:
    with pytest.raises(BadInput, match=where):
        parse_client_message(json.dumps(raw), max_bytes=1024)  # json writes NaN as NaN


@pytest.mark.parametrize(("model", "body"), [
    (SpeechRequest, {"input": "hi", "speed": True}),
    (SpeechRequest, {"input": "hi", "speed": float("nan")}),
    (ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                             "max_tokens": True}),
    (ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": "hi"}],
                             "temperature": False}),
])
def test_json_bodies_refuse_booleans_and_nan_as_numbers(model: type, body: dict[str, object]
                                                        ) -> None:
    with pytest.raises(ValidationError):
        model.model_validate(body)
    numbers = {k: 1 for k, v in body.items() if isinstance(v, (bool, float))}
    assert model.model_validate({**body, **numbers})  # a real number is fine


def test_form_fields_still_parse_numbers_from_text() -> None:
    assert RenderForm.model_validate({"speed": "1.5", "seed": "7"}).speed == 1.5
    with pytest.raises(ValidationError):
        RenderForm.model_validate({"speed": "nan"})
