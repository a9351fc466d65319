"""API keys and session tokens never reach the server's logs, even when a client puts
them in a URL, and the WebSocket endpoint takes no API key in its URL."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from talkface.api.log_redaction import MASK, RedactCredentials, redact

from .conftest import RunningServer

_SERVER_LOGGERS = ("uvicorn", "uvicorn.access", "")  # uvicorn.error propagates to uvicorn


@pytest.fixture
def server_log(server: RunningServer) -> Iterator[io.StringIO]:
    """Everything the server logs at INFO and above during the test, as text."""
    text = io.StringIO()
    handler = logging.StreamHandler(text)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    loggers = [logging.getLogger(name) for name in _SERVER_LOGGERS]
    levels = {name: logging.getLogger(name).level for name in ("uvicorn.error", "uvicorn.access")}
    for logger in loggers:
        logger.addHandler(handler)
    for name in levels:
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        yield text
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


async def say_hello(url: str) -> tuple[dict[str, object], int | None]:
    """The server's first message to a WebSocket client's hello, and its close code if it
    closed the connection (a session that started is closed by the client at once)."""
    async with connect(url, max_size=None) as ws:
        with contextlib.suppress(ConnectionClosed):  # it may have refused and closed already
            await ws.send(json.dumps({"type": "hello", "v": 1, "sample_rate_hz": 16_000}))
        first = json.loads(await ws.recv())
        if first["type"] == "ready":
            return first, None
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(30):
                async for _ in ws:
                    pass
    return first, ws.close_code


@pytest.mark.serving
@pytest.mark.integration
async def test_keys_and_tokens_in_urls_are_masked_in_the_server_log(
    server: RunningServer, server_log: io.StringIO
) -> None:
    key = server.api_key
    async with httpx.AsyncClient(base_url=server.base_url, headers=server.headers()) as http:
        token = (await http.post("/v1/tokens")).json()["token"]
        assert (await http.get(f"/healthz?api_key={key}&key={key}")).status_code == 200
        assert (await http.get(f"/v1/voices?token={token}")).status_code == 200
        assert (await http.get(f"/?token={token}")).status_code == 200  # the browser page
    ws_base = server.base_url.replace("http://", "ws://") + "/v1/sessions/ws"
    ready, _ = await say_hello(f"{ws_base}?token={token}")
    assert ready["type"] == "ready", ready
    # An API key in the URL is refused (not even checked), and says what to do instead.
    refused, code = await say_hello(f"{ws_base}?token={key}")
    assert code == 4401 and refused["code"] == "unauthorized"
    assert "POST /v1/tokens" in str(refused["message"])
    logging.getLogger("talkface.api.routes").warning("fetched %s", f"/x?token={token}")

    log = server_log.getvalue()
    assert f'"GET /?token={MASK} HTTP/1.1" 200' in log  # the lines are there, masked
    assert f'"WebSocket /v1/sessions/ws?token={MASK}" [accepted]' in log
    assert f"fetched /x?token={MASK}" in log
    assert key not in log
    assert token not in log
    assert token.split(".")[2] not in log  # not even the signature


@pytest.mark.unit
@pytest.mark.parametrize(("text", "masked"), [
    ("GET /?token=tft1.eyJr.c2ln HTTP/1.1", f"GET /?token={MASK} HTTP/1.1"),
    ("/v1/x?a=1&api_key=k-123&b=2", f"/v1/x?a=1&api_key={MASK}&b=2"),
    ("/cb?access_token=abc#frag", f"/cb?access_token={MASK}#frag"),
    ("{'authorization': 'Bearer sk-xyz'}", f"{{'authorization': '{MASK}'}}"),
    ("Authorization: Basic dXNlcjpwdw==", f"Authorization: {MASK}"),
    ("retrying with bearer abc.def", f"retrying with bearer {MASK}"),
    ("key tfk_0123456789abcdef leaked", f"key {MASK} leaked"),
    # Not credentials: left alone.
    ("max_tokens=5 monkey=3 token count", "max_tokens=5 monkey=3 token count"),
    ("send 'Authorization: Bearer <API key>'", "send 'Authorization: Bearer <API key>'"),
])
def test_credentials_are_masked_and_nothing_else(text: str, masked: str) -> None:
    assert redact(text) == masked


@pytest.mark.unit
def test_access_log_arguments_keep_their_places() -> None:
    # uvicorn's access formatter unpacks the five arguments by position.
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "GET", "/?token=tft1.a.b", "1.1", 200), None)
    assert RedactCredentials().filter(record)
    assert record.args == ("127.0.0.1:5", "GET", f"/?token={MASK}", "1.1", 200)
    assert record.getMessage() == f'127.0.0.1:5 - "GET /?token={MASK} HTTP/1.1" 200'
