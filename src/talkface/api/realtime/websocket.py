"""The WebSocket transport, for clients without WebRTC (programs, networks that block UDP).

Protocol (``/v1/sessions/ws?token=<session token>``, or an ``Authorization`` header with
a key or a token; an API key in the URL is refused):

1. The client's first frame is a JSON ``hello``: its microphone rate and the output it
   wants. The server answers ``ready`` (or an ``error`` and a close).
2. Client → server: binary frames are microphone PCM, s16le mono at
   ``hello.sample_rate_hz``, sent in real time; text frames are JSON messages (``text``,
   ``interrupt``, ``ping``, ``frame_presented``, ``end``).
3. Server → client: text frames are JSON events; binary frames are the avatar, a
   continuous stream at the video frame rate:

   * ``output="fmp4"``: a ``stream_init`` event with the MSE type, then the init
     segment, then fragments (H.264 + AAC); append every binary frame, in order, to one
     MSE ``SourceBuffer``;
   * ``output="jpeg"``: each binary frame is a 1-byte kind (``V``: a JPEG image, ``A``:
     s16le mono PCM at ``media.audio_sample_rate_hz``), an 8-byte big-endian
     presentation time in microseconds on the stream clock, then the payload.

Close codes: 1000 the session ended, 1008 a protocol error (bad or missing hello),
1011 a server error, 1013 the client reads too slowly, 4401/4403/4429 credentials and
rate limit, 4503 the server is busy, still loading or shutting down (retry later).

A slow client cannot make the server hoard memory or hold a session slot: see
:class:`~talkface.api.realtime.outgoing.SendQueue`. Once a message has waited
``STALL_TIMEOUT_S`` for a client that stopped reading, the session is closed (1013) and
its slot freed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

import numpy as np
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from talkface.api.auth import websocket_credential
from talkface.api.deps import client_address
from talkface.api.errors import ClientTooSlow, Forbidden, RateLimited, Unauthorized
from talkface.api.realtime import outgoing
from talkface.api.realtime.outgoing import (
    FMP4Stream,
    SendQueue,
    encode_jpeg,
    media_header,
    moov_complete,
    mse_mime,
)
from talkface.api.realtime.quota import watch_live_quota
from talkface.api.realtime.session import (
    RealtimeSession,
    TurnObserver,
    check_avatar,
    conversation_options,
    error_event,
    parse_client_message,
)
from talkface.api.schemas import (
    ClosedEvent,
    HelloMessage,
    ServerEvent,
    StreamInitEvent,
)
from talkface.api.sessions import LiveSession
from talkface.api.state import ServerState
from talkface.audio import PLAYBACK_RATE_HZ
from talkface.engines import ModelThread
from talkface.errors import BadInput, Overloaded, PayloadTooLarge, TalkfaceError
from talkface.messages import NS_PER_S, AudioChunk

logger = logging.getLogger(__name__)

HELLO_TIMEOUT_S = 10.0
CLOSE_TIMEOUT_S = 5.0
PREPARE_TIMEOUT_S = 30.0  # the first idle frames and the encoder
_WATCH_EVERY_S = 0.25
MAX_AUDIO_AHEAD_NS = 1_000_000_000  # microphone audio may run this far ahead of real time

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL = 1008
CLOSE_INTERNAL = 1011
CLOSE_TOO_SLOW = 1013
_CLOSE_CODES = {Unauthorized: 4401, Forbidden: 4403, RateLimited: 4429, Overloaded: 4503}


class WebSocketTransport:
    """One session over a WebSocket (after a good ``hello``).

    Args:
        websocket: the accepted WebSocket.
        state: the server state.
        hello: the client's hello.
        live: the registry session (closed when this transport ends).
        observe_turn: told about each finished turn (metrics).
        count_error: told the code of each error event (metrics).
    """

    def __init__(self, websocket: WebSocket, state: ServerState, hello: HelloMessage,
                 live: LiveSession, *, observe_turn: TurnObserver | None = None,
                 count_error: Callable[[str], None] | None = None) -> None:
        self._ws = websocket
        self._state = state
        self._hello = hello
        self._queue = SendQueue()
        self.session = RealtimeSession(
            live, send=self._send_event, output=hello.output, fps=live.conversation.fps,
            size_px=state.settings.animator.size_px,
            max_message_bytes=state.settings.server.limits.max_ws_message_bytes,
            max_text_chars=state.settings.server.limits.max_text_chars,
            observe_turn=observe_turn, count_error=count_error)
        self.session.on_first_output = self._first_output
        self._encoder = ModelThread(f"ws-{live.session_id}")
        self._fmp4: FMP4Stream | None = None
        self._init_sent = False
        self._head = b""  # the stream's first bytes, until the init segment is complete
        self._tick = 0
        self._first_outputs: list[tuple[int, int]] = []  # (turn id, tick it left at)
        self._audio_received = 0
        self._audio_origin_ns: int | None = None
        self._done = asyncio.Event()
        self._reason = "ended"
        self._close_code = CLOSE_NORMAL
        live.stop = self.close

    @property
    def session_id(self) -> str:
        """The realtime session's id."""
        return self.session.session_id

    async def prepare(self) -> None:
        """Render the first idle frames and open the encoder (a bad avatar fails here)."""
        try:
            async with asyncio.timeout(PREPARE_TIMEOUT_S):
                await self.session.media.prepare()
                if self._hello.output == "fmp4":
                    settings = self._state.settings
                    fps = self.session.media.fps
                    self._fmp4 = await self._encoder.run(lambda: FMP4Stream(
                        fps=fps, size_px=settings.animator.size_px,
                        settings=settings.output))
        except TimeoutError:
            raise Overloaded(f"the server is too busy to start the avatar's stream (more "
                             f"than {PREPARE_TIMEOUT_S:g} s); try again in a little while",
                             retry_after_s=10.0) from None

    def discard(self) -> None:
        """Never run (prepare failed): release the encoder."""
        self._encoder.shutdown()

    def close(self, reason: str, code: int = CLOSE_NORMAL) -> None:
        """End the session with ``reason`` and WebSocket close ``code``; the first call wins."""
        if not self._done.is_set():
            self._reason, self._close_code = reason, code
            self._done.set()

    async def run(self) -> None:
        """Serve until the client leaves, asks to end, or is too slow; then clean up."""
        session = self.session
        try:
            session.send(session.ready_event())
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._receive(), name=f"ws-in-{self.session_id}"),
                    group.create_task(self._send(), name=f"ws-out-{self.session_id}"),
                    group.create_task(self._clock(), name=f"ws-clock-{self.session_id}"),
                    group.create_task(self._run_media(), name=f"ws-media-{self.session_id}"),
                    group.create_task(self._watch_reader(),
                                      name=f"ws-watch-{self.session_id}"),
                    group.create_task(watch_live_quota(session, lambda reason: self.close(
                        reason, _CLOSE_CODES[RateLimited])), name=f"ws-quota-{self.session_id}"),
                ]
                await self._done.wait()
                for task in tasks:
                    task.cancel()
        except Exception:  # a bug ends this session, not the server
            logger.exception("session %s failed", self.session_id)
            self._reason = "internal error: the server failed this session (see its log)"
            self._close_code = CLOSE_INTERNAL
        finally:
            await self._finish()

    # --- in --------------------------------------------------------------------------------

    async def _receive(self) -> None:
        while True:
            try:
                message = await self._ws.receive()
            except (WebSocketDisconnect, RuntimeError):
                message = {"type": "websocket.disconnect"}
            if message["type"] == "websocket.disconnect":
                self.close("the client disconnected")
                return
            data, text = message.get("bytes"), message.get("text")
            if data is not None:
                await self._on_audio(data)
            elif text is not None:
                await self.session.handle_raw(text)

    async def _on_audio(self, data: bytes) -> None:
        limit = self._state.settings.server.limits.max_ws_message_bytes
        if len(data) > limit:
            self.session.send_error(PayloadTooLarge(
                f"audio frame is {len(data)} bytes; the limit is {limit} (send 20-100 ms "
                "per frame)"))
            return
        if len(data) % 2:
            self.session.send_error(BadInput(
                f"audio frame has {len(data)} bytes; s16le PCM needs an even number"))
            return
        if not data:
            return
        rate = self._hello.sample_rate_hz
        clock = self.session.conversation.clock
        now = clock.now_ns()
        if self._audio_origin_ns is None:
            self._audio_origin_ns = now
        pts_ns = self._audio_received * NS_PER_S // rate
        ahead_ns = pts_ns - (now - self._audio_origin_ns)
        if ahead_ns > MAX_AUDIO_AHEAD_NS:
            # Faster than real time: hold the client back (TCP does the rest).
            await asyncio.sleep((ahead_ns - MAX_AUDIO_AHEAD_NS) / NS_PER_S)
        await self.session.conversation.send_audio(
            AudioChunk(pcm=data, sample_rate_hz=rate, pts_ns=pts_ns))
        self._audio_received += len(data) // 2

    # --- out -------------------------------------------------------------------------------

    def _send_event(self, event: ServerEvent) -> None:
        try:
            self._queue.put_event(event.model_dump_json())
        except ClientTooSlow as exc:
            self.close(str(exc), CLOSE_TOO_SLOW)

    async def _send(self) -> None:
        while True:
            item = await self._queue.get()
            try:
                if isinstance(item.payload, str):
                    await self._ws.send_text(item.payload)
                else:
                    await self._ws.send_bytes(item.payload)
            except (WebSocketDisconnect, RuntimeError, OSError):
                self.close("the client disconnected")
                return
            self._queue.sent()
            if item.on_sent is not None:
                item.on_sent()

    async def _watch_reader(self) -> None:
        """A client that stopped reading is let go at the bound, not held until TCP or the
        keepalive gives up: however little its stream needs, its messages age."""
        while True:
            await asyncio.sleep(_WATCH_EVERY_S)
            limit_s = outgoing.STALL_TIMEOUT_S
            if self._queue.stalled_ns() > limit_s * NS_PER_S:
                self.close(f"the client took nothing for {limit_s:g} s; its connection is "
                           "too slow for live video", CLOSE_TOO_SLOW)
                return

    def _first_output(self, turn_id: int) -> None:
        self._first_outputs.append((turn_id, self._tick))

    def _sent_callback(self, tick: int) -> Callable[[], None] | None:
        """Marks the turns whose first media is in the bytes made at ``tick``."""
        if not self._first_outputs:
            return None
        # A fragment made at tick t holds the frames before t; a JPEG frame holds t.
        inside = [(turn, at) for turn, at in self._first_outputs
                  if (at < tick if self._fmp4 is not None else at <= tick)]
        if not inside:
            return None
        self._first_outputs = [item for item in self._first_outputs if item not in inside]

        def sent() -> None:
            for turn, _ in inside:
                self.session.mark_speaking(turn)

        return sent

    async def _clock(self) -> None:
        media = self.session.media
        fps = media.fps
        start = media.start_clock()
        audio_at = 0
        while True:
            tick = self._tick
            due = start + tick * NS_PER_S // fps
            now = media.clock.now_ns()
            if due > now:
                await asyncio.sleep((due - now) / NS_PER_S)
            image = media.video_frame(due)
            audio_end = (tick + 1) * PLAYBACK_RATE_HZ // fps
            pcm = media.audio(audio_at, audio_end - audio_at)
            audio_at = audio_end
            try:
                if self._fmp4 is not None:
                    await self._send_fmp4(tick, image, pcm)
                else:
                    jpeg = media.cached_jpeg(image) or await self._encoder.run(
                        encode_jpeg, image)  # the idle loop's frames are encoded once
                    pts_ns = due - start
                    on_sent = self._sent_callback(tick)
                    self._queue.put_droppable(media_header(b"V", pts_ns) + jpeg, on_sent)
                    await self._queue.put(media_header(b"A", pts_ns) + pcm)
            except ClientTooSlow as exc:
                self.close(str(exc), CLOSE_TOO_SLOW)
                return
            self._tick = tick + 1

    async def _send_fmp4(self, tick: int, image: np.ndarray, pcm: bytes) -> None:
        assert self._fmp4 is not None
        loop = self.session.media.encoded_loop_frame(image)
        data = await self._encoder.run(self._fmp4.encode, tick, image, pcm, loop)
        if not self._init_sent:
            self._head += data
            if not moov_complete(self._head):
                return
            data, self._head, self._init_sent = self._head, b"", True
            self.session.send(StreamInitEvent(mime=mse_mime(data)))
        if data:
            await self._queue.put(data, self._sent_callback(tick))

    async def _run_media(self) -> None:
        await self.session.media.run()
        self.close(self.session.live.end_reason or (
            "ended" if self.session.end_requested else "the session was closed"))

    async def _finish(self) -> None:
        """Last bytes, the close frame, the session and the encoder, whatever happened."""
        ws = self._ws
        try:
            if self._close_code == CLOSE_TOO_SLOW:
                # Its slot is freed first; the close then waits on the client, bounded.
                await self._state.sessions.close(self.session_id)
                if self._fmp4 is not None:
                    await self._encoder.run(self._fmp4.abort)
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await _close_stalled(ws, self._reason)
                return
            # A client that reads nothing must not hold the session open: bounded.
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                tail = b""
                if self._fmp4 is not None:
                    if self._close_code == CLOSE_NORMAL and self._init_sent:
                        tail = await self._encoder.run(self._fmp4.finish)
                    else:
                        await self._encoder.run(self._fmp4.abort)
                if ws.application_state == WebSocketState.CONNECTED:
                    if tail:
                        await ws.send_bytes(tail)
                    await _drain_and_close(ws, self._queue, self._reason, self._close_code)
        except (TimeoutError, WebSocketDisconnect, RuntimeError, OSError):
            pass  # the client is gone, or not listening
        finally:
            await self._state.sessions.close(self.session_id)
            self._encoder.shutdown()
            logger.info("event=session_end session=%s transport=websocket code=%d reason=%s",
                        self.session_id, self._close_code, json.dumps(self._reason))


async def _drain_and_close(ws: WebSocket, queue: SendQueue, reason: str, code: int) -> None:
    """Send the events still queued (not media), a ``closed`` event, and close."""
    while len(queue):
        item = await queue.get()
        if isinstance(item.payload, str):
            await ws.send_text(item.payload)
    await ws.send_text(ClosedEvent(reason=reason).model_dump_json())
    await ws.close(code=code, reason=_close_reason(reason))


async def _close_stalled(ws: WebSocket, reason: str) -> None:
    """Close a client that stopped reading (1013): none of the media or events it has
    not taken is sent, only the ``closed`` event and the close frame, once it reads on."""
    if ws.application_state == WebSocketState.CONNECTED:
        await ws.send_text(ClosedEvent(reason=reason).model_dump_json())
        await ws.close(code=CLOSE_TOO_SLOW, reason=_close_reason(reason))


def _close_reason(text: str) -> str:
    """A close reason fits in 123 bytes of UTF-8."""
    data = text.encode("utf-8")[:120]
    return data.decode("utf-8", errors="ignore")


async def _receive_hello(websocket: WebSocket, max_bytes: int) -> HelloMessage:
    example = '{"type": "hello", "v": 1, "sample_rate_hz": 16000, "output": "fmp4"}'
    try:
        async with asyncio.timeout(HELLO_TIMEOUT_S):
            message = await websocket.receive()
    except TimeoutError:
        raise BadInput(f"no hello within {HELLO_TIMEOUT_S:.0f} s; the first message must be "
                       f"a JSON hello such as {example}") from None
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", CLOSE_NORMAL))
    text = message.get("text")
    if text is None:
        raise BadInput(f"the first message must be a JSON hello (a text frame) before any "
                       f"audio, such as {example}")
    hello = parse_client_message(text, max_bytes=max_bytes)
    if not isinstance(hello, HelloMessage):
        raise BadInput(f"the first message must be hello, not {hello.type}; send {example}")
    return hello


async def _refuse(websocket: WebSocket, exc: TalkfaceError,
                  count_error: Callable[[str], None] | None) -> None:
    if count_error is not None:
        count_error(exc.code)
    code = next((c for kind, c in _CLOSE_CODES.items() if isinstance(exc, kind)),
                CLOSE_PROTOCOL if exc.http_status < 500 else CLOSE_INTERNAL)
    try:
        await websocket.send_text(error_event(exc).model_dump_json())
        await websocket.close(code=code, reason=_close_reason(str(exc)))
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass


async def serve_websocket(websocket: WebSocket, state: ServerState, *,
                          observe_turn: TurnObserver | None = None,
                          count_error: Callable[[str], None] | None = None) -> None:
    """The whole life of one WebSocket session: credentials, hello, session, media."""
    await websocket.accept()
    limits = state.settings.server.limits
    try:
        credential = websocket_credential(websocket.headers.get("authorization"),
                                          websocket.query_params.get("token"))
        principal = state.auth.authenticate(credential, allow_session=True,
                                            client=client_address(websocket))
        hello = await _receive_hello(websocket, limits.max_ws_message_bytes)
        if state.sessions.draining:
            raise Overloaded("the server is shutting down; connect again in a moment",
                             retry_after_s=10.0)
        if not state.ready:
            reason = state.failed or f"still loading: {', '.join(state.loading)}"
            raise Overloaded(f"the server is not ready ({reason}); try again shortly",
                             retry_after_s=5.0)
        options = conversation_options(state.runtime, hello.options)
        await check_avatar(websocket.app, hello.options.avatar_id, principal)
        live = await state.sessions.create(principal, options)
    except WebSocketDisconnect:
        return
    except TalkfaceError as exc:
        await _refuse(websocket, exc, count_error)
        return
    live.transport = "websocket"
    transport = WebSocketTransport(websocket, state, hello, live, observe_turn=observe_turn,
                                   count_error=count_error)
    try:
        await transport.prepare()
    except BaseException as exc:
        transport.discard()
        await state.sessions.close(live.session_id)
        if not isinstance(exc, TalkfaceError):
            raise
        await _refuse(websocket, exc, count_error)
        return
    await transport.run()
