"""The WebRTC transport (aiortc): microphone in; the avatar's audio, video and events out.

One HTTP request creates the session and connects it: the client posts its SDP offer
(ICE candidates gathered, no trickle) and gets the answer. The offer is checked
(:func:`check_offer`) before a session is started for it, and each step after that has
a time limit (:meth:`WebRTCTransport.connect`). Then:

* the browser's microphone (Opus, decoded by aiortc) goes into the conversation as
  :class:`~talkface.messages.AudioChunk` s, in real time, as it arrives;
* :class:`AvatarVideoTrack` and :class:`AvatarAudioTrack` run on the stream clock of
  :class:`AvatarMedia`: a frame every ``1/fps`` and 20 ms of 48 kHz audio, the avatar
  speaking when a turn is due and listening (idle frames, silence) otherwise. Both
  tracks share one media stream, so the browser keeps them in sync;
* the client's data channel carries its JSON messages (text, interrupt, ping...) and
  every event back (transcripts, reply text, turn ends, latency, errors).

The session ends when the peer connection fails or closes, when the client sends
``end`` and the avatar has finished, or when the server shuts down.
"""

from __future__ import annotations

import asyncio
import collections
import fractions
import json
import logging
from collections.abc import Awaitable, Callable

import av
import numpy as np
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCSessionDescription,
    sdp,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from talkface.api.realtime.media import AvatarMedia
from talkface.api.realtime.quota import watch_live_quota
from talkface.api.realtime.session import RealtimeSession, TurnObserver
from talkface.api.schemas import ClosedEvent, ServerEvent
from talkface.api.sessions import LiveSession
from talkface.api.state import ServerState
from talkface.audio import PLAYBACK_RATE_HZ
from talkface.errors import BadInput, Overloaded
from talkface.messages import NS_PER_S, AudioChunk
from talkface.output.encoded import LoopSplice

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0
PREPARE_TIMEOUT_S = 30.0  # the first idle frames of the avatar
ANSWER_TIMEOUT_S = 15.0  # the SDP answer, ICE candidates gathered
AUDIO_CHUNK_SAMPLES = 960  # 20 ms at 48 kHz, one Opus frame
VIDEO_CLOCK_HZ = 90_000  # RTP video clock
_MAX_LATE_FRAMES = 5  # a video track this far behind skips ahead instead of bursting
_MAX_LATE_AUDIO_NS = 200_000_000
_EVENT_BACKLOG = 256  # events kept until the data channel opens
_MAX_BUFFERED_BYTES = 4 * 1024 * 1024  # a client this far behind on events has gone
_INBOX_SIZE = 64
_CLOSE_FLUSH_S = 0.1


async def _sleep_until(media: AvatarMedia, due_ns: int) -> int:
    """Sleep until ``due_ns`` on the media clock; returns how late we woke (ns, >= 0)."""
    now = media.clock.now_ns()
    if due_ns > now:
        await asyncio.sleep((due_ns - now) / NS_PER_S)
        now = media.clock.now_ns()
    return max(0, now - due_ns)


class AvatarVideoTrack(MediaStreamTrack):
    """The avatar's video at ``fps``, paced by the stream clock.

    While the avatar listens, the frames of its idle loop go out as the loop was encoded
    once (:mod:`talkface.output.encoded`), when the connection's video codec is the
    loop's (``codec``, set once the answer is made): aiortc sends an encoded packet as it
    is. Its own encoder then starts again with a keyframe.
    """

    kind = "video"

    def __init__(self, media: AvatarMedia) -> None:
        super().__init__()
        self._media = media
        self._tick = 0
        self.codec: str | None = None
        """The negotiated video codec, lower case ("vp8", "h264"), once known."""
        self._splice = LoopSplice(lambda video: video.codec == self.codec)

    @property
    def loop_frames(self) -> int:
        """Frames sent as the idle loop's encoding (not encoded for this connection)."""
        return self._splice.carried_frames

    async def recv(self) -> av.VideoFrame | av.Packet:
        """The next frame, once it is due; after an event-loop stall, it skips ahead to now."""
        if self.readyState != "live":
            raise MediaStreamError
        media, fps = self._media, self._media.fps
        start = media.start_clock()
        late_ns = await _sleep_until(media, start + self._tick * NS_PER_S // fps)
        if late_ns > _MAX_LATE_FRAMES * NS_PER_S // fps:
            # The event loop stalled: jump to now rather than send a burst of old frames.
            self._tick = (media.clock.now_ns() - start) * fps // NS_PER_S
        image = media.video_frame(start + self._tick * NS_PER_S // fps)
        loop = media.encoded_loop_frame(image)
        carried, keyframe = self._splice.next_frame(loop)
        out: av.VideoFrame | av.Packet
        if carried is not None:
            out = av.Packet(carried.data)
        else:
            out = av.VideoFrame.from_ndarray(image, format="rgb24")
            if keyframe:  # the browser's reference is a loop frame the encoder never saw
                out.pict_type = av.video.frame.PictureType.I
        out.pts = self._tick * VIDEO_CLOCK_HZ // fps
        out.time_base = fractions.Fraction(1, VIDEO_CLOCK_HZ)
        self._tick += 1
        return out


class AvatarAudioTrack(MediaStreamTrack):
    """The avatar's voice: 20 ms chunks of 48 kHz mono, silence between answers."""

    kind = "audio"

    def __init__(self, media: AvatarMedia) -> None:
        super().__init__()
        self._media = media
        self._sample = 0

    async def recv(self) -> av.AudioFrame:
        """The next 20 ms of audio, once due; after a stall it skips silence, never speech."""
        if self.readyState != "live":
            raise MediaStreamError
        media = self._media
        start = media.start_clock()
        late_ns = await _sleep_until(media, start + self._sample * NS_PER_S // PLAYBACK_RATE_HZ)
        if late_ns > _MAX_LATE_AUDIO_NS:
            now_sample = (media.clock.now_ns() - start) * PLAYBACK_RATE_HZ // NS_PER_S
            if not media.audio_pending_before(now_sample):
                self._sample = now_sample  # only silence is skipped; speech never is
        pcm = media.audio(self._sample, AUDIO_CHUNK_SAMPLES)
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_CHUNK_SAMPLES)
        frame.planes[0].update(pcm)
        frame.sample_rate = PLAYBACK_RATE_HZ
        frame.pts = self._sample
        frame.time_base = fractions.Fraction(1, PLAYBACK_RATE_HZ)
        self._sample += AUDIO_CHUNK_SAMPLES
        return frame


def check_offer(offer_sdp: str) -> None:
    """Refuse an SDP offer that cannot be answered, before any work is done for it.

    Raises:
        BadInput: it does not parse, has no audio or video, or lacks what the connection
            needs (ICE credentials, a DTLS fingerprint, RTCP multiplexing).
    """
    hint = ("send the offer of RTCPeerConnection.createOffer() after ICE gathering has "
            "completed")
    try:
        description = sdp.SessionDescription.parse(offer_sdp)
    except Exception as exc:
        raise BadInput(f"the SDP offer could not be used (it does not parse: "
                       f"{type(exc).__name__}); {hint}") from None
    kinds = {media.kind for media in description.media}
    if not kinds & {"audio", "video"}:
        raise BadInput("the offer has no audio or video; add transceivers that receive "
                       "the avatar (addTransceiver('video', {direction: 'recvonly'}))")
    for media in description.media:
        if not media.ice.usernameFragment or not media.ice.password:
            raise BadInput(f"the offer's {media.kind} section has no ICE credentials "
                           f"(a=ice-ufrag, a=ice-pwd); {hint}")
        if media.dtls is None or not media.dtls.fingerprints:
            raise BadInput(f"the offer's {media.kind} section has no DTLS fingerprint; "
                           f"{hint}")
        if media.kind in ("audio", "video") and not media.rtcp_mux:
            raise BadInput(f"the offer's {media.kind} section does not multiplex RTCP "
                           "(a=rtcp-mux), which this server needs")


def answered_video_codec(answer_sdp: str) -> str | None:
    """The video codec an SDP answer settles on (its video section's first), lower case
    ("vp8", "h264"); None without video."""
    for media in sdp.SessionDescription.parse(answer_sdp).media:
        if media.kind == "video" and media.rtp.codecs:
            return media.rtp.codecs[0].mimeType.split("/")[-1].lower()
    return None


def mono_pcm16(frame: av.AudioFrame) -> bytes:
    """A decoded audio frame as mono s16le (channels averaged)."""
    samples = frame.to_ndarray().astype(np.int32)
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        mono = samples.reshape(channels, -1).mean(axis=0)
    else:
        mono = samples.reshape(-1, channels).mean(axis=1)
    return np.rint(mono).astype("<i2").tobytes()


class WebRTCTransport:
    """One session's peer connection.

    Args:
        live: the registry session it carries.
        state: the server state.
        close_session: ends the registry session (called once, when this transport ends).
        observe_turn: told about each finished turn (metrics).
        count_error: told the code of each error event (metrics).
    """

    def __init__(self, live: LiveSession, state: ServerState,
                 close_session: Callable[[], Awaitable[None]], *,
                 observe_turn: TurnObserver | None = None,
                 count_error: Callable[[str], None] | None = None) -> None:
        session = RealtimeSession(
            live, send=self.send, output="webrtc", fps=live.conversation.fps,
            size_px=state.settings.animator.size_px,
            max_message_bytes=state.settings.server.limits.max_ws_message_bytes,
            max_text_chars=state.settings.server.limits.max_text_chars,
            observe_turn=observe_turn, count_error=count_error)
        self.session = session
        self._close_session = close_session
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self._video = AvatarVideoTrack(session.media)
        self._audio = AvatarAudioTrack(session.media)
        self._microphones: list[MediaStreamTrack] = []
        self._channel: RTCDataChannel | None = None
        self._backlog: collections.deque[str] = collections.deque(maxlen=_EVENT_BACKLOG)
        self._inbox: asyncio.Queue[str | bytes] = asyncio.Queue(_INBOX_SIZE)
        self._connected = asyncio.Event()
        self._done = asyncio.Event()
        self._reason = "ended"
        self.end_reason: str | None = None
        """Why the session ends when its conversation does (default: by its end message,
        or closed by the server)."""
        self._overflowed = False
        live.stop = self.close
        pc = self._pc
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_connection_state)

    @property
    def session_id(self) -> str:
        """The realtime session's id."""
        return self.session.session_id

    # --- signalling ------------------------------------------------------------------------

    async def connect(self, offer_sdp: str) -> str:
        """Prepare the avatar's media and answer ``offer_sdp``, each step time-limited.

        Raises:
            BadInput: the offer or the avatar cannot be used.
            Overloaded: a step took too long (the server is too busy); retry later.
        """
        try:
            async with asyncio.timeout(PREPARE_TIMEOUT_S):
                await self.session.media.prepare()  # an unknown avatar fails here
        except TimeoutError:
            raise Overloaded(f"the server is too busy to start the avatar's stream (more "
                             f"than {PREPARE_TIMEOUT_S:g} s); try again in a little while",
                             retry_after_s=10.0) from None
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                return await self.answer(offer_sdp)
        except TimeoutError:
            raise Overloaded(f"the server could not answer the offer within "
                             f"{ANSWER_TIMEOUT_S:g} s; try again in a little while",
                             retry_after_s=10.0) from None

    async def answer(self, offer_sdp: str) -> str:
        """The SDP answer to ``offer_sdp`` (candidates included).

        Raises:
            BadInput: the offer cannot be used; the message says why.
        """
        pc = self._pc
        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        except Exception as exc:
            raise BadInput(f"the SDP offer could not be used ({type(exc).__name__}: {exc}); "
                           "send the offer of RTCPeerConnection.createOffer() after ICE "
                           "gathering has completed") from None
        kinds = {t.kind for t in pc.getTransceivers()}
        if not kinds & {"audio", "video"}:
            raise BadInput("the offer has no audio or video; add transceivers that receive "
                           "the avatar (addTransceiver('video', {direction: 'recvonly'}))")
        if "video" in kinds:
            pc.addTrack(self._video)
        if "audio" in kinds:
            pc.addTrack(self._audio)
        await pc.setLocalDescription(await pc.createAnswer())
        self._video.codec = answered_video_codec(pc.localDescription.sdp)
        return pc.localDescription.sdp

    # --- events to the client --------------------------------------------------------------

    def send(self, event: ServerEvent) -> None:
        """Send ``event`` on the data channel (kept until it opens)."""
        text = event.model_dump_json()
        channel = self._channel
        if channel is None or channel.readyState != "open":
            self._backlog.append(text)
            return
        if channel.bufferedAmount > _MAX_BUFFERED_BYTES:
            self.close("the client stopped reading its data channel")
            return
        channel.send(text)

    # --- aiortc callbacks ------------------------------------------------------------------

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._microphones.append(track)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if self._channel is not None:
            return  # events go to the first channel; others are not read
        self._channel = channel
        channel.on("message", self._on_channel_message)
        channel.on("close", lambda: self.close("the client closed the data channel"))
        if channel.readyState == "open":
            self._flush_backlog()
        else:
            channel.on("open", self._flush_backlog)

    def _flush_backlog(self) -> None:
        channel = self._channel
        while channel is not None and self._backlog and channel.readyState == "open":
            channel.send(self._backlog.popleft())

    def _on_channel_message(self, message: str | bytes) -> None:
        try:
            self._inbox.put_nowait(message)
            self._overflowed = False
        except asyncio.QueueFull:
            if not self._overflowed:  # once per flood, not once per message
                self._overflowed = True
                self.session.send_error(BadInput(
                    f"more than {_INBOX_SIZE} messages are waiting; slow down (messages "
                    "are being dropped)"))

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        if state == "connected":
            self._connected.set()
        elif state in ("failed", "closed"):
            self.close(f"the WebRTC connection {state}")

    # --- running ---------------------------------------------------------------------------

    def close(self, reason: str) -> None:
        """End the session (idempotent); :meth:`run` tears everything down."""
        if not self._done.is_set():
            self._reason = reason
            self._done.set()

    async def run(self) -> None:
        """Serve the session until it ends; always tears down the connection and session."""
        try:
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_S):
                    await _first(self._connected.wait(), self._done.wait())
            except TimeoutError:
                self.close(f"the client did not connect within {CONNECT_TIMEOUT_S:.0f} s (ICE "
                           "or DTLS failed: check that UDP between browser and server is "
                           "allowed)")
            if not self._done.is_set():
                try:
                    await self._serve()
                except Exception:  # a bug ends this session, not the server
                    logger.exception("session %s failed", self.session_id)
                    self._reason = "internal error: the server failed this session (see its log)"
        finally:
            await self._teardown()

    async def _serve(self) -> None:
        session = self.session
        async with asyncio.TaskGroup() as group:
            tasks = [
                group.create_task(self._run_media(), name=f"media-{self.session_id}"),
                group.create_task(self._read_inbox(), name=f"inbox-{self.session_id}"),
                group.create_task(watch_live_quota(session, self.close),
                                  name=f"quota-{self.session_id}"),
            ]
            tasks += [group.create_task(self._read_microphone(track), name=f"mic-{self.session_id}")
                      for track in self._microphones]
            session.send(session.ready_event())
            await self._done.wait()
            for task in tasks:
                task.cancel()

    async def _run_media(self) -> None:
        await self.session.media.run()
        self.close(self.end_reason or self.session.live.end_reason or (
            "ended" if self.session.end_requested else "the session was closed"))

    async def _read_inbox(self) -> None:
        while True:
            message = await self._inbox.get()
            if isinstance(message, bytes):
                self.session.send_error(BadInput(
                    "the data channel takes JSON text messages, not binary ones; the "
                    "microphone goes in the audio track"))
                continue
            await self.session.handle_raw(message)

    async def _read_microphone(self, track: MediaStreamTrack) -> None:
        conversation = self.session.conversation
        received = 0
        rate = 0
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return  # the browser stopped sending; the session goes on (text still works)
            assert isinstance(frame, av.AudioFrame)
            if frame.sample_rate != rate:
                received = received * frame.sample_rate // rate if rate else 0
                rate = frame.sample_rate
            pcm = mono_pcm16(frame)
            await conversation.send_audio(AudioChunk(pcm=pcm, sample_rate_hz=rate,
                                                     pts_ns=received * NS_PER_S // rate))
            received += len(pcm) // 2

    async def _teardown(self) -> None:
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            channel.send(ClosedEvent(reason=self._reason).model_dump_json())
            await asyncio.sleep(_CLOSE_FLUSH_S)  # let the last event leave before the close
        try:
            await self._close_session()
        finally:
            self._video.stop()
            self._audio.stop()
            await self._pc.close()
        logger.info("event=session_end session=%s transport=webrtc reason=%s",
                    self.session_id, json.dumps(self._reason))


async def _first(*aws: object) -> None:
    """Wait until the first of the awaitables finishes; cancel the others."""
    tasks = [asyncio.ensure_future(a) for a in aws]  # type: ignore[arg-type]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
