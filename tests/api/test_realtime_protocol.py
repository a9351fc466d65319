"""The live-session machinery without models: messages, the media clock, the send queue.

Every feature here also runs end to end with real models in test_realtime_ws.py,
test_realtime_webrtc.py and test_realtime_browser.py.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from talkface.api.auth import Principal
from talkface.api.errors import ClientTooSlow
from talkface.api.realtime import ice, outgoing
from talkface.api.realtime.media import AvatarMedia
from talkface.api.realtime.outgoing import (
    FMP4Stream,
    SendQueue,
    moov_complete,
    mse_mime,
)
from talkface.api.realtime.session import (
    conversation_options,
    error_event,
    parse_client_message,
)
from talkface.api.schemas import (
    FramePresentedMessage,
    HelloMessage,
    LiveSessionOptions,
    TextMessage,
)
from talkface.api.sessions import SessionRegistry
from talkface.audio import PLAYBACK_RATE_HZ, float32_to_pcm16
from talkface.clock import ManualClock, MonotonicClock
from talkface.config import load_settings
from talkface.conversation import ConversationOptions
from talkface.errors import BadInput, Overloaded, PayloadTooLarge
from talkface.messages import NS_PER_S, EndOfTurn, Interrupt, Message, SpeechAudio, VideoFrame
from talkface.output.mp4 import OutputSettings
from talkface.output.timeline import Timeline
from talkface.runtime import Runtime

pytestmark = pytest.mark.unit
FPS = 25
FRAME_NS = NS_PER_S // FPS


# --- client messages ---------------------------------------------------------------------


def test_good_messages_are_parsed_with_their_defaults() -> None:
    text = parse_client_message('{"type": "text", "v": 1, "text": "hi"}', max_bytes=1024)
    assert isinstance(text, TextMessage) and text.text == "hi"
    hello = parse_client_message('{"type": "hello"}', max_bytes=1024)
    assert isinstance(hello, HelloMessage)
    assert (hello.sample_rate_hz, hello.output, hello.v) == (16_000, "fmp4", 1)
    shown = parse_client_message(b'{"type": "frame_presented", "turn_id": 3, '
                                 b'"presented_at_ms": 1.5}', max_bytes=1024)
    assert isinstance(shown, FramePresentedMessage) and shown.turn_id == 3


@pytest.mark.parametrize(("raw", "expected"), [
    ("{oops", "not valid JSON"),
    (b"\xff\xfe", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    ('{"text": "hi"}', 'has no "type"'),
    ('{"type": "dance"}', "unknown type 'dance'; expected one of: hello, text"),
    ('{"type": "text", "v": 2, "text": "hi"}', "protocol version 2 is not supported"),
    ('{"type": "text"}', "text message: text: Field required"),
    ('{"type": "text", "text": "hi", "mood": "happy"}', "text message: mood: Extra inputs"),
    ('{"type": "hello", "sample_rate_hz": 100}', "hello message: sample_rate_hz:"),
    ('{"type": "hello", "output": "gif"}', "hello message: output:"),
])
def test_bad_messages_say_what_is_wrong(raw: str | bytes, expected: str) -> None:
    with pytest.raises(BadInput, match=None) as caught:
        parse_client_message(raw, max_bytes=1024)
    assert expected in str(caught.value)


def test_oversized_messages_are_refused_before_parsing() -> None:
    with pytest.raises(PayloadTooLarge, match="2000 bytes; the limit is 1024"):
        parse_client_message("x" * 2000, max_bytes=1024)


# --- the media clock: speech, frames, idle face, barge-in ----------------------------------


class FakeConversation:
    """What AvatarMedia reads: an outbox, a timeline, and idle frames."""

    def __init__(self) -> None:
        self.clock = MonotonicClock()
        self.timeline = Timeline(self.clock)
        self.outbox: asyncio.Queue[Message | None] = asyncio.Queue()
        self.read = 0
        self.progress = asyncio.Event()  # set each time a message is read
        self.idle_requests: list[tuple[int, int]] = []

    async def messages(self) -> AsyncIterator[Message]:
        while (message := await self.outbox.get()) is not None:
            self.read += 1
            self.progress.set()
            yield message

    async def idle_frames(self, first_frame_index: int, count: int) -> list[np.ndarray]:
        self.idle_requests.append((first_frame_index, count))
        return [idle_image(first_frame_index + k) for k in range(count)]


def idle_image(index: int) -> np.ndarray:
    return np.full((4, 4, 3), index % 100, np.uint8)


def spoken_image(index: int) -> np.ndarray:
    return np.full((4, 4, 3), 150 + index % 100, np.uint8)


def tone(seconds: float, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    return float32_to_pcm16(0.5 * np.sin(2 * np.pi * 300 * t))


class Harness:
    def __init__(self) -> None:
        self.conversation = FakeConversation()
        self.messages: list[Message] = []
        self.ended = asyncio.Event()
        self.started: list[int] = []
        self.media = AvatarMedia(self.conversation, fps=FPS,  # type: ignore[arg-type]
                                 on_message=self._on_message,
                                 on_first_output=self.started.append)

    def _on_message(self, message: Message) -> None:
        self.messages.append(message)
        if isinstance(message, EndOfTurn):
            self.ended.set()

    async def put(self, *messages: Message) -> None:
        """Give the pump ``messages`` and wait until it has taken them."""
        conversation = self.conversation
        expected = conversation.read + len(messages)
        for message in messages:
            conversation.outbox.put_nowait(message)
        async with asyncio.timeout(5):
            while conversation.read < expected:
                conversation.progress.clear()
                await conversation.progress.wait()
            await asyncio.sleep(0.01)  # and has placed the last one

    def anchor_ns(self, turn_id: int) -> int:
        """Wall time the turn's timeline pts 0 plays at."""
        position = self.conversation.timeline.heard_ns(turn_id)
        assert position is not None
        return self.conversation.clock.now_ns() - position

    def samples_at(self, wall_ns: int) -> int:
        return (wall_ns - self.media.start_clock()) * PLAYBACK_RATE_HZ // NS_PER_S


async def run_media(harness: Harness, body: Callable[[], Any]) -> None:
    await harness.media.prepare()
    # A player starts the stream's clock when it starts streaming, before any turn: a
    # clock first read after a turn was placed put the turn before sample 0 (a loaded
    # machine made that "negative dimensions" in CI).
    harness.media.start_clock()
    task = asyncio.create_task(harness.media.run())
    try:
        await body()
    finally:
        harness.conversation.outbox.put_nowait(None)
        async with asyncio.timeout(5):
            await task


def turn(turn_id: int, seconds: float, first_index: int) -> list[Message]:
    """A turn: its speech, then the frames that cover it."""
    frames = round(seconds * FPS)
    return [SpeechAudio(pcm=tone(seconds), sample_rate_hz=16_000, pts_ns=0, turn_id=turn_id),
            *[VideoFrame(image=spoken_image(first_index + k), pts_ns=k * FRAME_NS,
                         index=first_index + k, turn_id=turn_id) for k in range(frames)]]


async def test_the_listening_face_plays_until_a_turn_and_after_it() -> None:
    harness = Harness()
    media = harness.media

    async def body() -> None:
        start = media.start_clock()
        assert [int(media.video_frame(start + k * FRAME_NS)[0, 0, 0]) for k in range(3)] == [
            0, 1, 2]  # idle frames, rendered ahead, in order
        await harness.put(*turn(1, 0.2, first_index=500), EndOfTurn(turn_id=1, spoken_text="hi"))
        anchor = harness.anchor_ns(1)
        shown = [int(media.video_frame(anchor + k * FRAME_NS)[0, 0, 0]) for k in range(5)]
        assert shown == [150 + (500 + k) % 100 for k in range(5)]
        assert harness.started == [1]
        # After the turn, the listening face goes on from the frame after the last spoken.
        after = media.video_frame(anchor + 6 * FRAME_NS)
        assert int(after[0, 0, 0]) == 505 % 100
        # Speech plays where its turn is due, silence around it, nothing lost.
        begin = harness.samples_at(anchor)
        audio = np.frombuffer(media.audio(0, begin + PLAYBACK_RATE_HZ), np.int16)
        loud = np.flatnonzero(np.abs(audio) > 300)
        assert begin - 5 <= loud[0] <= begin + PLAYBACK_RATE_HZ // 50  # within a chunk
        assert loud[-1] - loud[0] == pytest.approx(0.2 * PLAYBACK_RATE_HZ,
                                                   abs=PLAYBACK_RATE_HZ // 100)
        # The client hears the end of the turn when its media has played.
        await asyncio.wait_for(harness.ended.wait(), 5)

    await run_media(harness, body)


async def test_an_interrupt_silences_the_turn_at_once() -> None:
    harness = Harness()
    media = harness.media

    async def body() -> None:
        await harness.put(*turn(1, 2.0, first_index=100)[:6])  # 2 s of speech + 5 frames
        anchor = harness.anchor_ns(1)
        begin = harness.samples_at(anchor)
        chunk = PLAYBACK_RATE_HZ // 50
        before = np.frombuffer(media.audio(0, begin + 3 * chunk), np.int16)
        assert np.abs(before[begin + chunk :]).max() > 300  # it is talking
        assert int(media.video_frame(anchor + FRAME_NS)[0, 0, 0]) == 150 + 1
        await harness.put(Interrupt(turn_id=1, reason="barge_in"))
        after = np.frombuffer(media.audio(begin + 3 * chunk, 10 * chunk), np.int16)
        assert np.abs(after).max() == 0  # the rest of the sentence is gone
        assert any(isinstance(m, Interrupt) for m in harness.messages)
        # The face listens again, from the frame after the last one it showed.
        assert int(media.video_frame(anchor + 5 * FRAME_NS)[0, 0, 0]) == 102 % 100
        # Late media of the cut turn is not played.
        await harness.put(VideoFrame(image=spoken_image(120), pts_ns=20 * FRAME_NS, index=120,
                                     turn_id=1))
        assert int(media.video_frame(anchor + 20 * FRAME_NS)[0, 0, 0]) != 150 + 20
        # The next answer starts now, not when the cut one would have ended.
        second = turn(2, 0.2, first_index=200)
        await harness.put(*second)
        starts_ns = harness.conversation.timeline.due_ns(second[0])
        assert starts_ns is not None and starts_ns < anchor + NS_PER_S

    await run_media(harness, body)


async def test_a_cut_turn_ends_once_for_the_client_and_says_it_was_cut() -> None:
    harness = Harness()

    async def body() -> None:
        await harness.put(*turn(1, 2.0, first_index=100)[:6])
        # The answer was made (its end was queued) when the user cut in.
        await harness.put(Interrupt(turn_id=1, reason="barge_in"), EndOfTurn(turn_id=1),
                          EndOfTurn(turn_id=1, interrupted=True, spoken_text="Hel"))

    await run_media(harness, body)
    ends = [(m.turn_id, m.interrupted) for m in harness.messages if isinstance(m, EndOfTurn)]
    assert ends == [(1, True)]


async def test_unknown_avatars_fail_at_prepare() -> None:
    class NoAvatar(FakeConversation):
        async def idle_frames(self, first_frame_index: int, count: int) -> list[np.ndarray]:
            raise BadInput("unknown avatar 'x'; upload or prepare the portrait first")

    media = AvatarMedia(NoAvatar(), fps=FPS, on_message=print,  # type: ignore[arg-type]
                        on_first_output=print)
    with pytest.raises(BadInput, match="unknown avatar"):
        await media.prepare()


# --- what goes out to WebSocket clients ---------------------------------------------------


async def test_a_slow_client_loses_old_video_frames_never_audio(monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    monkeypatch.setattr(outgoing, "STALL_TIMEOUT_S", 0.05)
    queue = SendQueue(max_bytes=1000)
    for k in range(5):
        queue.put_droppable(bytes([k]) * 300)
    assert queue.queued_bytes <= 1000 and queue.dropped == 2
    await queue.put(b"A" * 400)  # audio pushes video out rather than waiting
    queue.put_event(json.dumps({"type": "transcript"}))
    kinds = [(await queue.get()).payload[:1] for _ in range(len(queue))]
    assert kinds[-2:] == [b"A", "{"] and b"\x04" in kinds
    await queue.put(b"B" * 900)
    with pytest.raises(ClientTooSlow, match="too slow"):
        await queue.put(b"C" * 900)  # nobody reads: the client is cut off, memory stays bounded


async def test_a_stalled_client_is_seen_by_the_age_of_its_oldest_message() -> None:
    clock = ManualClock()
    queue = SendQueue(max_bytes=10_000_000, clock=clock)
    assert queue.stalled_ns() == 0
    queue.put_event('{"type": "ready"}')
    clock.advance(3 * NS_PER_S)
    await queue.put(b"A" * 100)  # a few bytes: far from full, and still waiting
    assert queue.stalled_ns() == 3 * NS_PER_S
    await queue.get()  # handed to a connection that does not take it (the client stopped)
    clock.advance(8 * NS_PER_S)
    assert queue.stalled_ns() == 11 * NS_PER_S  # the send in progress counts
    queue.sent()
    assert queue.stalled_ns() == 8 * NS_PER_S  # now the next one is the oldest
    await queue.get()
    queue.sent()
    assert queue.stalled_ns() == 0


def test_fmp4_starts_with_an_init_segment_and_fragments_come_every_half_second() -> None:
    stream = FMP4Stream(fps=FPS, size_px=64, settings=OutputSettings())
    made: list[tuple[int, bytes]] = []
    image = np.zeros((64, 64, 3), np.uint8)
    pcm = bytes(2 * PLAYBACK_RATE_HZ // FPS)
    for tick in range(3 * FPS):
        image[:] = tick  # the picture changes, as a face does
        made.append((tick, stream.encode(tick, image, pcm)))
    stream.abort()
    head = b"".join(data for _, data in made)
    assert moov_complete(head) and head[4:8] == b"ftyp"
    assert mse_mime(head).startswith('video/mp4; codecs="avc1.')
    fragments = [tick for tick, data in made if b"moof" in data]
    assert fragments and fragments[0] <= FPS // 2 + 1
    assert max(b - a for a, b in itertools.pairwise(fragments)) <= FPS // 2 + 1


def test_loopback_is_offered_when_the_server_listens_on_it(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    import aioice.ice

    monkeypatch.setattr(ice, "_installed", {})  # a server in this process keeps its policy
    monkeypatch.setattr(aioice.ice, "get_host_addresses",
                        lambda use_ipv4, use_ipv6: ["192.0.2.7"])
    ice.install_candidate_policy(listen_host="127.0.0.1")
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == [
        "192.0.2.7", "127.0.0.1"]
    ice.install_candidate_policy(listen_host="0.0.0.0")
    assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["192.0.2.7"]
    sdp = "a=candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host\r\na=mid:0\r\n"
    assert ice.candidate_addresses(sdp) == ["127.0.0.1"]


# --- refusing a session -------------------------------------------------------------------


async def test_the_session_limit_is_a_retryable_error_with_retry_after() -> None:
    registry = SessionRegistry(Runtime(load_settings()), max_sessions=0)
    with pytest.raises(Overloaded) as caught:
        await registry.create(Principal(key_id="k", scope="key"), ConversationOptions())
    event = error_event(caught.value)
    assert (event.code, event.retryable, event.retry_after_s) == ("overloaded", True, 10.0)
    assert "try again" in event.message


@pytest.mark.parametrize(("options", "expected"), [
    ({"language": "fr"}, "language 'fr' is not supported; talkface speaks en, zh"),
    ({"voice": "joe", "language": "zh"}, "voice 'joe' speaks 'en', but the text is 'zh'"),
])
def test_a_hello_is_checked_by_the_policy_say_uses(options: dict[str, str], expected: str) -> None:
    runtime = Runtime(load_settings())
    with pytest.raises(BadInput, match=expected):
        conversation_options(runtime, LiveSessionOptions(**options))
