"""Starting and stopping live sessions under load, with fakes (no models): a slow start
never holds up the others and never goes on unbounded, a bad WebRTC offer is refused
before any work, and a shutdown lets answers finish, then ends what is left.

The same paths run with real models in test_realtime_ws.py, test_realtime_webrtc.py and
test_serve_cli.py (a real ``talkface serve`` stopped with SIGTERM mid-answer).
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator

import httpx
import pytest

from talkface.api.app import create_app
from talkface.api.auth import Principal
from talkface.api.realtime.webrtc import check_offer
from talkface.api.sessions import SHUTDOWN_REASON, SessionRegistry
from talkface.api.shutdown import DrainOnSignal
from talkface.conversation import ConversationOptions
from talkface.errors import BadInput, Overloaded
from talkface.runtime import Runtime
from talkface.testing import fake_settings, register_fakes

pytestmark = pytest.mark.unit

KEY = "tfk_unit_test_key_0001"
OWNER = Principal(key_id="k", scope="key")


class SlowPriming(Runtime):
    """A runtime whose LLM priming waits until released (an LLM busy with others)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.hold = 0  # how many of the next primings wait (forever)
        self.holding = asyncio.Event()
        self.primed = 0

    async def prime_llm(self, persona: str) -> None:
        self.primed += 1
        if self.hold:
            self.hold -= 1
            self.holding.set()
            await asyncio.Event().wait()


@pytest.fixture
async def runtime(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[SlowPriming]:
    register_fakes(monkeypatch.setitem)
    settings = fake_settings(server={"api_keys": (KEY,)})
    async with SlowPriming(settings) as runtime:
        yield runtime


async def test_a_slow_start_holds_no_lock_and_gives_up_with_a_retryable_503(
        runtime: SlowPriming) -> None:
    registry = SessionRegistry(runtime, max_sessions=2, start_timeout_s=0.5)
    runtime.hold = 1
    stuck = asyncio.create_task(registry.create(OWNER, ConversationOptions()))
    await asyncio.wait_for(runtime.holding.wait(), 5)  # its slot reserved, it is priming
    other = await asyncio.wait_for(registry.create(OWNER, ConversationOptions()), 5)
    assert len(registry) == 1  # served while the first one still starts
    # The slot the stuck start reserved counts: the server is full meanwhile.
    with pytest.raises(Overloaded, match="limit of 2 live sessions"):
        await registry.create(OWNER, ConversationOptions())
    with pytest.raises(Overloaded, match="too busy to start a session") as caught:
        await asyncio.wait_for(stuck, 5)
    assert caught.value.retry_after_s and caught.value.retryable
    # Its slot is free again.
    third = await asyncio.wait_for(registry.create(OWNER, ConversationOptions()), 5)
    assert len(registry) == 2
    for live in (other, third):
        await registry.close(live.session_id)


async def test_a_shutdown_refuses_new_sessions_and_ends_the_live_ones(
        runtime: SlowPriming) -> None:
    registry = SessionRegistry(runtime, max_sessions=4)
    finishing = await registry.create(OWNER, ConversationOptions())
    stuck = await registry.create(OWNER, ConversationOptions())
    stopped: list[str] = []
    closing: list[asyncio.Task[None]] = []

    def stop(reason: str) -> None:  # what a transport does when told to stop
        stopped.append(reason)
        closing.append(asyncio.create_task(registry.close(stuck.session_id)))

    async def transport_ends_it() -> None:  # what a transport does once its media has played
        await finishing.conversation.finished()
        await registry.close(finishing.session_id)

    ends = asyncio.create_task(transport_ends_it())
    stuck.stop = stop  # this one would go on: its client keeps talking
    await registry.drain(grace_s=0.2)
    await ends
    await asyncio.gather(*closing)
    assert stuck.ended.is_set()
    assert finishing.ended.is_set() and finishing.end_reason == SHUTDOWN_REASON
    assert stopped == [SHUTDOWN_REASON]  # cut only once the grace was over
    with pytest.raises(Overloaded, match="shutting down") as caught:
        await registry.create(OWNER, ConversationOptions())
    assert caught.value.retry_after_s
    await registry.close_all(0.0)
    assert len(registry) == 0


# --- WebRTC offers ------------------------------------------------------------------------


async def client_offer() -> str:
    from aiortc import RTCPeerConnection

    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="sendrecv")
        pc.createDataChannel("events")
        await pc.setLocalDescription(await pc.createOffer())
        return pc.localDescription.sdp
    finally:
        await pc.close()


async def test_a_usable_offer_passes_the_check() -> None:
    check_offer(await client_offer())


@pytest.mark.parametrize(("mangle", "expected"), [
    (lambda sdp: "v=0 " + "x" * 20, "could not be used \\(it does not parse"),
    (lambda sdp: "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "no audio or video"),
    (lambda sdp: "\r\n".join(line for line in sdp.split("\r\n")
                             if not line.startswith("a=ice-pwd")), "no ICE credentials"),
    (lambda sdp: "\r\n".join(line for line in sdp.split("\r\n")
                             if not line.startswith("a=fingerprint")), "no DTLS fingerprint"),
    (lambda sdp: sdp.replace("a=rtcp-mux\r\n", ""), "does not multiplex RTCP"),
])
async def test_an_unusable_offer_is_refused_with_the_reason(mangle: object, expected: str
                                                            ) -> None:
    offer = mangle(await client_offer())  # type: ignore[operator]
    with pytest.raises(BadInput, match=expected):
        check_offer(offer)


async def test_a_bad_offer_is_refused_before_any_session_work(runtime: SlowPriming) -> None:
    app = create_app(runtime.settings, runtime=runtime)
    state = app.state.talkface
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://talkface.test",
                                 headers={"Authorization": f"Bearer {KEY}"}) as http:
        response = await http.post("/v1/sessions/webrtc",
                                   json={"type": "offer", "sdp": "v=0 " + "x" * 20})
    assert response.status_code == 400, response.text
    assert "could not be used" in response.json()["error"]["message"]
    assert runtime.primed == 0 and len(state.sessions) == 0  # no conversation was started


# --- SIGTERM: drain first, then the server's own handler ---------------------------------


async def test_a_signal_drains_first_then_reaches_the_server_and_a_second_does_not_wait(
        ) -> None:
    server_got: list[int] = []
    drained = asyncio.Event()
    release = asyncio.Event()

    async def drain() -> None:
        drained.set()
        await release.wait()  # answers still playing

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: server_got.append(signum))
    try:
        hook = DrainOnSignal(drain)
        assert hook.install()
        signal.raise_signal(signal.SIGTERM)
        await asyncio.wait_for(drained.wait(), 5)
        assert server_got == []  # the server does not know yet: connections stay open
        release.set()
        for _ in range(100):  # the drain ends, then the server is told
            if server_got:
                break
            await asyncio.sleep(0.01)
        assert server_got == [signal.SIGTERM]
        await hook.aclose()
        # A second signal while draining is passed on at once.
        release.clear()
        server_got.clear()
        hook = DrainOnSignal(drain)
        assert hook.install()
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)
        assert server_got == [signal.SIGTERM]
        await hook.aclose()  # the cut drain is stopped, and not passed on again
        assert server_got == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
