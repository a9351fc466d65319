"""What every live transport shares: JSON messages in, events out, the avatar's media.

A :class:`RealtimeSession` wraps one registry session for one transport (WebRTC or
WebSocket). It parses and applies the client's JSON messages (anything it cannot use is
answered with an ``error`` event, never an exception), turns the conversation's messages
into events (:mod:`talkface.api.schemas`), and owns the :class:`AvatarMedia` that the
transport's clock reads frames and audio from.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError

from talkface.api.auth import Principal
from talkface.api.errors import AvatarNotFound
from talkface.api.realtime.idle_clip import EncodeLoop, IdleClipSource, idle_clip_cache
from talkface.api.realtime.media import AvatarMedia
from talkface.api.realtime.outgoing import encode_fmp4_loop, encode_jpeg, encode_webrtc_loop
from talkface.api.schemas import (
    PROTOCOL_VERSION,
    ClientMessage,
    EndMessage,
    ErrorEvent,
    FramePresentedMessage,
    HelloMessage,
    InterruptedEvent,
    InterruptMessage,
    LatencyEvent,
    LiveSessionOptions,
    MediaFormat,
    PingMessage,
    PongEvent,
    ReadyEvent,
    ReplyDeltaEvent,
    ServerEvent,
    SpeakingEvent,
    TextMessage,
    TranscriptEvent,
    TurnEndEvent,
)
from talkface.api.sessions import LiveSession
from talkface.audio import PLAYBACK_RATE_HZ
from talkface.conversation import ConversationOptions, TurnRecord
from talkface.errors import BadInput, Overloaded, PayloadTooLarge, TalkfaceError
from talkface.messages import EndOfTurn, Error, Interrupt, Message, TextDelta, Transcript
from talkface.runtime import Runtime
from talkface.text.policy import check_language, check_text, choose_voice

logger = logging.getLogger(__name__)

_CLIENT_MESSAGES: TypeAdapter[Any] = TypeAdapter(
    Annotated[ClientMessage, Field(discriminator="type")])
CLIENT_MESSAGE_TYPES = ("hello", "text", "interrupt", "ping", "frame_presented", "end")
_FUTURE_SLACK_NS = 2_000_000_000  # a client clock may run this far ahead of ours
_ERROR_REPEAT_S = 1.0
_AVATAR_CHECK_TIMEOUT_S = 10.0
KEPT_TURNS = 64
"""Turn records a live session keeps (its traces, for latency events and quotas): the
recent ones are all that is read, and a session may stay open for days."""

EventSink = Callable[[ServerEvent], None]
TurnObserver = Callable[[TurnRecord], None]


def now_ms() -> float:
    """The server's clock for clients (unix ms), as ``ping``/``pong`` exchange it."""
    return time.time_ns() / 1e6


def parse_client_message(raw: str | bytes, *, max_bytes: int) -> ClientMessage:
    """One JSON client message, validated.

    Raises:
        PayloadTooLarge: longer than ``max_bytes``.
        BadInput: not JSON, not an object, an unknown type or version, a bad field; the
            message says which and what is expected.
    """
    size = len(raw.encode("utf-8") if isinstance(raw, str) else raw)
    if size > max_bytes:
        raise PayloadTooLarge(f"message is {size} bytes; the limit is {max_bytes}")
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        detail = f"{exc.msg} at position {exc.pos}" if isinstance(exc, json.JSONDecodeError) else (
            "not UTF-8")
        raise BadInput(f"message is not valid JSON ({detail}); send one JSON object "
                       'such as {"type": "text", "v": 1, "text": "hello"}') from None
    expected = ", ".join(CLIENT_MESSAGE_TYPES)
    if not isinstance(data, dict):
        raise BadInput(f'a message must be a JSON object with a "type" ({expected})')
    kind = data.get("type")
    if kind not in CLIENT_MESSAGE_TYPES:
        what = "has no \"type\"" if kind is None else f"has unknown type {kind!r}"
        raise BadInput(f"message {what}; expected one of: {expected}")
    version = data.get("v", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise BadInput(f"protocol version {version!r} is not supported; this server speaks "
                       f"v={PROTOCOL_VERSION}")
    try:
        return _CLIENT_MESSAGES.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:]) or kind
        raise BadInput(f"{kind} message: {where}: {first['msg']}") from None


def error_event(exc: TalkfaceError, turn_id: int | None = None) -> ErrorEvent:
    """The event that tells the client about ``exc`` (a full server: retry after...)."""
    return ErrorEvent(code=exc.code, message=str(exc), retryable=exc.retryable,
                      retry_after_s=exc.retry_after_s, turn_id=turn_id)


async def check_avatar(app: Any, avatar_id: str | None, principal: Principal) -> None:
    """A key may use the default portrait and the avatars made from its own uploads.

    Raises:
        AvatarNotFound: ``avatar_id`` was not uploaded with this key.
        Overloaded: the job store did not answer in time.
    """
    renders = getattr(app.state, "renders", None)  # the avatar store lives with the renders
    if avatar_id is None or renders is None:
        return
    try:
        async with asyncio.timeout(_AVATAR_CHECK_TIMEOUT_S):
            owned = await asyncio.to_thread(renders.store.owns_avatar, avatar_id,
                                            principal.key_id)
    except TimeoutError:
        raise Overloaded("the server's job store is busy; try again in a little while",
                         retry_after_s=5.0) from None
    if not owned:
        raise AvatarNotFound(f"no avatar {avatar_id!r} for this API key; upload the portrait "
                             "first (POST /v1/avatars) and use the avatar_id it returns")


def conversation_options(runtime: Runtime, options: LiveSessionOptions) -> ConversationOptions:
    """The conversation options for ``options``, checked as ``talkface say`` checks them.

    Raises:
        BadInput: an unsupported language, an unknown voice (the message lists the voices
            there are), or a voice that cannot speak the language asked for.
    """
    language = check_language(options.language)
    if options.voice is not None:
        if language is None:
            runtime.resolve_voice(options.voice, "en")  # its language is checked per reply
        else:
            choose_voice(runtime.resolve_voice, options.voice, language)
    # A session's frame rate is fixed for its life; under pressure new ones start lower.
    fps = runtime.ladder.fps(runtime.settings.animator.fps)
    return ConversationOptions(voice=options.voice, language=options.language,
                               avatar_id=options.avatar_id, seed=options.seed,
                               persona=options.persona, live=True, fps=fps,
                               kept_turns=KEPT_TURNS)


class RealtimeSession:
    """One live session, as any transport sees it.

    Args:
        live: the registry's session.
        send: delivers one event to the client (must not block; transports queue).
        output: what the transport streams ("webrtc", "fmp4" or "jpeg").
        fps: video frame rate.
        size_px: video frame size.
        max_message_bytes: the largest client message accepted.
        max_text_chars: the longest typed message accepted.
        observe_turn: told about each finished turn (metrics).
        count_error: told the code of each error event (metrics).
    """

    def __init__(self, live: LiveSession, *, send: EventSink,
                 output: Literal["webrtc", "fmp4", "jpeg"], fps: int, size_px: int,
                 max_message_bytes: int, max_text_chars: int,
                 observe_turn: TurnObserver | None = None,
                 count_error: Callable[[str], None] | None = None) -> None:
        self.live = live
        self.conversation = live.conversation
        self._transport_send = send
        self._count_error = count_error
        self._max_message_bytes = max_message_bytes
        self._max_text_chars = max_text_chars
        self._observe_turn = observe_turn
        self.media_format = MediaFormat(fps=fps, size_px=size_px,
                                        audio_sample_rate_hz=PLAYBACK_RATE_HZ, output=output)
        self.on_first_output: Callable[[int], None] = self.mark_speaking
        """Called when a turn's first media leaves AvatarMedia; transports whose bytes
        leave later (fragmented MP4) replace it and call :meth:`mark_speaking` themselves."""
        self.media = AvatarMedia(self.conversation, fps=fps, on_message=self._on_message,
                                 on_first_output=lambda turn: self.on_first_output(turn),
                                 idle_clip=self._idle_clip_source(output, size_px),
                                 frames=live.frames)
        self.end_requested = False
        self._errors_sent: dict[tuple[str, str], float] = {}

    @property
    def session_id(self) -> str:
        """The live session's id, as the client sees it in ``ready``."""
        return self.live.session_id

    def _idle_clip_source(self, output: str, size_px: int) -> IdleClipSource | None:
        runtime = self.conversation.runtime
        settings = runtime.settings.server.idle_clip
        if not settings.enabled:
            return None
        conversation = self.conversation

        async def avatar_id() -> str:
            return conversation.options.avatar_id or await runtime.default_avatar()

        encode_video: EncodeLoop | None = None
        if output == "fmp4":
            encode_video = functools.partial(encode_fmp4_loop, size_px=size_px,
                                             settings=runtime.settings.output)
        elif output == "webrtc":
            encode_video = encode_webrtc_loop
        return IdleClipSource(cache=idle_clip_cache(runtime, settings), output=output,
                              size_px=size_px, phase_frames=conversation.seed,
                              avatar_id=avatar_id,
                              encode_jpeg=encode_jpeg if output == "jpeg" else None,
                              encode_video=encode_video)

    def ready_event(self) -> ReadyEvent:
        """The first event to the client: session id, media format and server time."""
        return ReadyEvent(session_id=self.session_id, media=self.media_format,
                          server_time_ms=now_ms())

    def send(self, event: ServerEvent) -> None:
        """Deliver ``event`` to the client through the transport (error codes are counted)."""
        self._send(event)

    def _send(self, event: ServerEvent) -> None:
        if isinstance(event, ErrorEvent) and self._count_error is not None:
            self._count_error(event.code)
        self._transport_send(event)

    def send_error(self, exc: TalkfaceError, turn_id: int | None = None) -> None:
        """Tell the client; the same error at most once a second (a client repeating a
        mistake 50 times a second gets one answer, not 50)."""
        key = (exc.code, str(exc))
        now = time.monotonic()
        if now - self._errors_sent.get(key, -_ERROR_REPEAT_S) < _ERROR_REPEAT_S:
            return
        if len(self._errors_sent) > 64:
            self._errors_sent.clear()
        self._errors_sent[key] = now
        self._send(error_event(exc, turn_id))

    # --- client → server -------------------------------------------------------------------

    async def handle_raw(self, raw: str | bytes) -> ClientMessage | None:
        """Parse and apply one client message; a bad one is answered with an error event.

        Returns the message applied, or None when it was refused.
        """
        try:
            message = parse_client_message(raw, max_bytes=self._max_message_bytes)
            await self.apply(message)
        except TalkfaceError as exc:
            self.send_error(exc)
            return None
        return message

    async def apply(self, message: ClientMessage) -> None:
        """Do what a (valid) client message asks.

        Raises:
            BadInput: the message does not fit here (a second hello, an empty text...).
        """
        conversation = self.conversation
        if isinstance(message, TextMessage):
            # The server's limit (server.limits), then the conversation's own checks.
            check_text(message.text, limit_chars=self._max_text_chars)
            await conversation.send_text(message.text)
        elif isinstance(message, InterruptMessage):
            await conversation.interrupt("client")
        elif isinstance(message, PingMessage):
            self._send(PongEvent(client_time_ms=message.client_time_ms, server_time_ms=now_ms()))
        elif isinstance(message, FramePresentedMessage):
            self._frame_presented(message)
        elif isinstance(message, EndMessage):
            self.end_requested = True
            await conversation.end_input()
        elif isinstance(message, HelloMessage):
            raise BadInput("hello is only for the first message of a WebSocket session")

    def _frame_presented(self, message: FramePresentedMessage) -> None:
        record = self._record(message.turn_id)
        if record is None:
            raise BadInput(f"frame_presented: no turn {message.turn_id} in this session")
        clock = self.conversation.clock
        # The client reports unix time on our clock; the trace is on the monotonic clock.
        at_ns = clock.now_ns() - (time.time_ns() - int(message.presented_at_ms * 1e6))
        trace = record.trace
        if not trace.origin_ns <= at_ns <= clock.now_ns() + _FUTURE_SLACK_NS:
            raise BadInput("frame_presented: presented_at_ms is not within the turn; send "
                           "unix ms on the server's clock (ping gives the offset)")
        trace.mark("first_frame_shown", at_ns)

    def _record(self, turn_id: int) -> TurnRecord | None:
        for record in reversed(self.conversation.turns):
            if record.turn_id == turn_id:
                return record
        return None

    # --- server → client -------------------------------------------------------------------

    def mark_speaking(self, turn_id: int) -> None:
        """The first media of ``turn_id`` leaves for the client now."""
        record = self._record(turn_id)
        if record is not None:
            record.trace.mark("first_byte")
        self._send(SpeakingEvent(turn_id=turn_id, server_time_ms=now_ms()))

    def _on_message(self, message: Message) -> None:
        if isinstance(message, Transcript):
            self._send(TranscriptEvent(turn_id=message.turn_id, text=message.text,
                                       final=message.is_final, language=message.language))
        elif isinstance(message, TextDelta):
            self._send(ReplyDeltaEvent(turn_id=message.turn_id, text=message.text))
        elif isinstance(message, Interrupt):
            self._send(InterruptedEvent(turn_id=message.turn_id, reason=message.reason))
        elif isinstance(message, Error):
            self._send(ErrorEvent(code=message.code, message=message.message,
                                  retryable=message.retryable,
                                  retry_after_s=message.retry_after_s,
                                  turn_id=message.turn_id or None))
        elif isinstance(message, EndOfTurn):
            self._send(TurnEndEvent(turn_id=message.turn_id, interrupted=message.interrupted,
                                    spoken_text=message.spoken_text))
            self._turn_done(message.turn_id)

    def _turn_done(self, turn_id: int) -> None:
        record = self._record(turn_id)
        if record is None:
            return
        self._send(LatencyEvent(turn_id=turn_id, source=record.source,
                                stages_ms=record.trace.as_dict(),
                                prompt_tokens=record.prompt_tokens or None,
                                evaluated_prompt_tokens=record.evaluated_prompt_tokens,
                                route=record.route, fallback=record.fallback))
        if self._observe_turn is not None:
            try:
                self._observe_turn(record)
            except Exception:
                logger.exception("observing turn %d failed", turn_id)
