"""Every wire format of the HTTP and WebSocket API, in one place (pydantic).

JSON messages over WebSocket and the WebRTC data channel carry a ``type`` discriminator
and the protocol version ``v``. Errors have OpenAI's shape, so OpenAI clients show them
as they would their own: ``{"error": {"message", "type", "code"}}``.

Numbers in JSON are strict: ``true`` is not 1, ``"2"`` is not 2, and NaN or infinity is
not a number (Python's JSON reader accepts ``NaN``; these models do not). Multipart form
fields arrive as text, so form models parse numbers from text, finite ones only.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict

PROTOCOL_VERSION = 1

StrictInt = Annotated[int, Strict()]
"""A JSON integer: booleans, floats and strings are refused."""
Number = Annotated[float, Strict(), Field(allow_inf_nan=False)]
"""A finite JSON number (integers too): booleans, strings, NaN and infinities are refused."""
FormNumber = Annotated[float, Field(allow_inf_nan=False)]
"""A finite number in a form field (text)."""


class ErrorBody(BaseModel):
    """The ``error`` object of every refusal: message, type and code, as OpenAI sends them."""
    message: str
    type: str
    code: str


class ErrorResponse(BaseModel):
    """What every refusal looks like."""

    error: ErrorBody


class Health(BaseModel):
    """``GET /healthz``: the process is up (the models may still be loading)."""
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    """``ready`` once the models are loaded; ``loading`` lists what is still loading;
    ``draining`` while the server shuts down."""

    status: Literal["ready", "loading", "failed", "draining"]
    loading: list[str] = Field(default_factory=list)
    error: str | None = None


class TokenResponse(BaseModel):
    """A session token for a browser page (never the API key itself)."""

    token: str
    expires_at: float = Field(description="unix time")
    token_type: Literal["session"] = "session"


class StrictModel(BaseModel):
    """Request bodies: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


# --- OpenAI-compatible endpoints (/v1/audio/*, /v1/chat/completions, /v1/models) ---------
# Field names and shapes follow OpenAI's API so that its clients work unchanged. Fields
# marked "accepted, not used" are taken so that clients which always send them still work.

OPENAI_AUDIO_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")


class SpeechRequest(StrictModel):
    """``POST /v1/audio/speech``: text in, audio bytes out."""

    model: str = Field("tts-1", max_length=200, description="any name; talkface has one TTS")
    input: str = Field(description="the text to speak; its language is detected")
    voice: str = Field(
        "alloy", max_length=200,
        description="an OpenAI voice name (alloy, echo...: the default voice for the "
        "text's language) or a talkface voice (GET /v1/voices)",
    )
    response_format: Literal["mp3", "opus", "aac", "flac", "wav", "pcm"] = "mp3"
    speed: Number = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(None, max_length=4096, description="accepted, not used")
    stream_format: Literal["audio"] = "audio"


class TranscriptionForm(StrictModel):
    """``POST /v1/audio/transcriptions``: the multipart fields besides ``file``."""

    model: str = Field("whisper-1", max_length=200, description="any name; talkface has one ASR")
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}$", description="ISO-639-1 hint")
    prompt: str | None = Field(None, max_length=4096, description="accepted, not used")
    response_format: Literal["json", "text", "verbose_json"] = "json"
    temperature: FormNumber = Field(0.0, ge=0.0, le=1.0, description="accepted, not used")
    timestamp_granularities: list[Literal["segment"]] = Field(default_factory=list)
    stream: bool = Field(False, description="streamed transcripts are not offered")


class Transcription(BaseModel):
    """``POST /v1/audio/transcriptions`` reply in the ``json`` format: the text only."""
    text: str


class TranscriptionSegment(BaseModel):
    """One segment of a verbose transcription; ``start`` and ``end`` in seconds into the audio."""
    id: int
    start: float
    end: float
    text: str


class TranscriptionVerbose(BaseModel):
    """Transcription reply in the ``verbose_json`` format: language, duration (s), text and
    segments."""
    task: Literal["transcribe"] = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[TranscriptionSegment]


class ChatContentPart(StrictModel):
    """One text part of a chat message whose content is a list of parts."""
    type: Literal["text"]
    text: str


class ChatCompletionMessage(StrictModel):
    """One message of the prompt; ``developer`` is treated as ``system``."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ChatContentPart]
    name: str | None = Field(None, max_length=64)

    def text(self) -> str:
        """The message's text, its parts joined when the content is a list."""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(StrictModel):
    """``stream_options``: ``include_usage`` adds a last chunk with the token counts."""
    include_usage: bool = False


class ChatCompletionRequest(StrictModel):
    """``POST /v1/chat/completions``."""

    model: str = Field(max_length=200, description="echoed back; talkface has one LLM")
    messages: list[ChatCompletionMessage] = Field(min_length=1, max_length=256)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: StrictInt | None = Field(None, ge=1)
    max_completion_tokens: StrictInt | None = Field(None, ge=1)
    temperature: Number | None = Field(None, ge=0.0, le=2.0)
    stop: str | list[str] | None = None
    n: StrictInt = Field(1, ge=1, le=1, description="one choice only")
    top_p: Number | None = Field(None, ge=0.0, le=1.0, description="accepted, not used")
    presence_penalty: Number | None = Field(None, ge=-2.0, le=2.0,
                                            description="accepted, not used")
    frequency_penalty: Number | None = Field(None, ge=-2.0, le=2.0,
                                             description="accepted, not used")
    seed: StrictInt | None = Field(None, description="accepted, not used")
    user: str | None = Field(None, max_length=256, description="accepted, not used")

    def stop_sequences(self) -> tuple[str, ...]:
        """The non-empty stop strings, whether ``stop`` was one string or a list."""
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return tuple(s for s in stops if s)


class ChatReplyMessage(BaseModel):
    """The assistant's message in a chat completion."""
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    """The one choice of a chat completion, and why generation stopped."""
    index: int = 0
    message: ChatReplyMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class Usage(BaseModel):
    """Token counts of a chat completion: prompt, completion and their total."""
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatCompletion(BaseModel):
    """``POST /v1/chat/completions`` reply when not streaming."""
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage


class ChatDelta(BaseModel):
    """What one streamed chunk adds to the reply: the role first, then pieces of text."""
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    """The one choice of a streamed chunk; ``finish_reason`` is set on the last."""
    index: int = 0
    delta: ChatDelta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    """One ``data:`` event of a streamed chat completion."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    """One model that ``/v1/chat/completions`` answers with."""
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "talkface"


class ModelList(BaseModel):
    """``GET /v1/models``: the models this server answers with."""
    object: Literal["list"] = "list"
    data: list[ModelCard]


# --- Render jobs (/v1/renders) ---------------------------------------------------------

RenderStatus = Literal["queued", "running", "done", "failed", "cancelled"]


class RenderRequest(StrictModel):
    """``POST /v1/renders`` as JSON: the avatar speaks ``text``.

    The same fields (besides ``text``, which an audio ``file`` replaces) may be sent as a
    multipart form with the audio file to lip-sync.
    """

    text: str = Field(description="what the avatar says")
    voice: str | None = Field(None, max_length=200, description="default: by language")
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}$", description="default: detected")
    avatar_id: str | None = Field(None, max_length=64, description="from POST /v1/avatars")
    speed: Number = Field(1.0, ge=0.5, le=2.0)
    seed: StrictInt | None = Field(None, ge=0, lt=2**31, description="blinks and head motion")


class RenderForm(StrictModel):
    """``POST /v1/renders`` as multipart: an audio ``file`` to lip-sync (or ``text``)."""

    text: str | None = None
    voice: str | None = Field(None, max_length=200)
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}$")
    avatar_id: str | None = Field(None, max_length=64)
    speed: FormNumber = Field(1.0, ge=0.5, le=2.0)
    seed: int | None = Field(None, ge=0, lt=2**31)


class RenderJob(BaseModel):
    """A render job as its owner sees it."""

    id: str
    object: Literal["render"] = "render"
    status: RenderStatus
    progress: float = Field(ge=0.0, le=1.0)
    input: Literal["text", "audio"]
    error: ErrorBody | None = None
    created_at: float = Field(description="unix time")
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = Field(0, description="times it was started (a restart re-runs it)")
    duration_s: float | None = Field(None, description="length of the video, when done")
    video_url: str | None = Field(None, description="where to download the MP4, when done")


class RenderList(BaseModel):
    """``GET /v1/renders``: the caller's render jobs, newest first."""
    object: Literal["list"] = "list"
    data: list[RenderJob]


# --- Usage and daily quotas (GET /v1/usage) --------------------------------------------


class QuotaState(BaseModel):
    """One daily quota of the calling key."""

    used: float = Field(description="used today (UTC), in the quota's unit")
    limit: float | None = Field(description="the daily limit; null: unlimited")
    remaining: float | None = Field(description="what is left today; null: unlimited")
    unit: Literal["minutes", "tokens"]
    resets_at: float = Field(description="unix time of the reset (the next UTC midnight)")


class UsageReport(BaseModel):
    """The calling key's daily quotas: live_session_minutes, rendered_video_minutes,
    llm_tokens."""

    object: Literal["usage"] = "usage"
    key_id: str = Field(description="the key's id (a hash prefix; what server.quotas.per_key "
                        "is keyed by)")
    day: str = Field(description="the UTC day counted, YYYY-MM-DD")
    resets_at: float = Field(description="unix time of the next UTC midnight")
    quotas: dict[str, QuotaState]


# --- Avatars and voices ----------------------------------------------------------------


class AvatarForm(StrictModel):
    """``POST /v1/avatars``: a multipart form with the portrait in ``file`` and no other field."""


class AvatarCreated(BaseModel):
    """Reply to an avatar upload: the id to pass as ``avatar_id``."""
    avatar_id: str
    object: Literal["avatar"] = "avatar"


class VoiceCard(BaseModel):
    """One voice: its name, language, TTS backend and what it sounds like."""
    name: str
    language: str
    backend: str
    description: str


class VoiceList(BaseModel):
    """``GET /v1/voices``: the voices, and the OpenAI voice names accepted for them."""
    object: Literal["list"] = "list"
    data: list[VoiceCard]
    openai_voices: list[str] = Field(
        description="OpenAI voice names accepted too (the default voice of the language)"
    )


# --- Live sessions (/v1/sessions: WebRTC and WebSocket) --------------------------------
# Client and server messages travel as JSON text over the WebRTC data channel or the
# WebSocket, each with ``type`` and ``v``. A message the server cannot use is answered
# with an ``error`` event; the session goes on.


class LiveSessionOptions(StrictModel):
    """How the avatar of a live session looks, sounds and behaves."""

    avatar_id: str | None = Field(None, max_length=64, description="from POST /v1/avatars; "
                                  "default: the portrait shipped with talkface")
    voice: str | None = Field(None, max_length=200, description="default: by language")
    language: str | None = Field(None, pattern=r"^[a-z]{2,3}$",
                                 description="default: detected per utterance")
    persona: str | None = Field(None, min_length=1, max_length=4000,
                                description="system prompt; default: the server's persona")
    seed: StrictInt | None = Field(None, ge=0, lt=2**31, description="blinks and head motion")


class WebRTCOffer(StrictModel):
    """``POST /v1/sessions/webrtc``: creates a session and connects it in one request.

    The offer should receive audio and video (``recvonly`` or ``sendrecv``), may send the
    microphone, and should open a data channel for text and events. Gather ICE candidates
    before sending it (no trickle ICE).
    """

    type: Literal["offer"] = "offer"
    sdp: str = Field(min_length=10, max_length=64 * 1024)
    options: LiveSessionOptions = Field(default_factory=LiveSessionOptions)


class WebRTCAnswer(BaseModel):
    """The server's SDP answer and the id of the session it created."""

    type: Literal["answer"] = "answer"
    sdp: str
    session_id: str
    v: int = PROTOCOL_VERSION


class LiveSessionInfo(BaseModel):
    """A live session as its owner sees it (``GET /v1/sessions/{id}``)."""

    session_id: str
    object: Literal["session"] = "session"
    transport: Literal["webrtc", "websocket"] | None = None
    created_at: float = Field(description="unix time")
    turns: int = Field(description="turns answered so far")


class LiveSessionList(BaseModel):
    """The caller's live sessions."""
    object: Literal["list"] = "list"
    data: list[LiveSessionInfo]


class _ClientMessage(StrictModel):
    v: Literal[1] = Field(PROTOCOL_VERSION, description="protocol version")


class HelloMessage(_ClientMessage):
    """WebSocket only, first message: the microphone's format and what to send back."""

    type: Literal["hello"]
    sample_rate_hz: StrictInt = Field(16_000, ge=8_000, le=48_000,
                                description="rate of the s16le mono PCM in binary frames")
    output: Literal["fmp4", "jpeg"] = Field(
        "fmp4", description="fmp4: fragmented MP4 (H.264 + AAC) for MSE; jpeg: JPEG frames "
        "and s16le PCM chunks")
    options: LiveSessionOptions = Field(default_factory=LiveSessionOptions)


class TextMessage(_ClientMessage):
    """A typed message: interrupts the avatar if it is talking, then it answers."""

    type: Literal["text"]
    text: str


class InterruptMessage(_ClientMessage):
    """Stop the avatar's answer now."""

    type: Literal["interrupt"]


class PingMessage(_ClientMessage):
    """Clock sync: answered by ``pong`` with the server's time."""

    type: Literal["ping"]
    client_time_ms: Number


class FramePresentedMessage(_ClientMessage):
    """The client showed the first frame of ``turn_id`` (for the latency readout)."""

    type: Literal["frame_presented"]
    turn_id: StrictInt = Field(ge=1)
    presented_at_ms: Number = Field(description="unix ms on the server's clock (see ping)")


class EndMessage(_ClientMessage):
    """No more input: the session ends once the avatar has finished speaking."""

    type: Literal["end"]


ClientMessage = (HelloMessage | TextMessage | InterruptMessage | PingMessage
                 | FramePresentedMessage | EndMessage)


class _Event(BaseModel):
    v: int = PROTOCOL_VERSION


class MediaFormat(BaseModel):
    """What the session's media looks like."""

    fps: int
    size_px: int
    audio_sample_rate_hz: int = Field(description="avatar audio (PCM events and tracks)")
    output: Literal["webrtc", "fmp4", "jpeg"]


class ReadyEvent(_Event):
    """First event: the session is live."""

    type: Literal["ready"] = "ready"
    session_id: str
    media: MediaFormat
    server_time_ms: float


class StreamInitEvent(_Event):
    """WebSocket fmp4: the MSE type of the stream; the next binary frame is its init segment."""

    type: Literal["stream_init"] = "stream_init"
    mime: str = Field(description='e.g. video/mp4; codecs="avc1.42c01e,mp4a.40.2"')


class TranscriptEvent(_Event):
    """What the user said: partial while they speak, final at the end of the utterance."""

    type: Literal["transcript"] = "transcript"
    turn_id: int
    text: str
    final: bool
    language: str | None = None


class ReplyDeltaEvent(_Event):
    """A piece of the avatar's reply as the LLM writes it (ahead of the speech)."""

    type: Literal["reply_delta"] = "reply_delta"
    turn_id: int
    text: str


class SpeakingEvent(_Event):
    """The first media of ``turn_id`` left for the client: the avatar starts talking."""

    type: Literal["speaking"] = "speaking"
    turn_id: int
    server_time_ms: float


class InterruptedEvent(_Event):
    """The answer ``turn_id`` was cut (``barge_in``, ``client``, ``new_message``)."""

    type: Literal["interrupted"] = "interrupted"
    turn_id: int
    reason: str


class TurnEndEvent(_Event):
    """The avatar finished (or stopped) speaking ``turn_id``."""

    type: Literal["turn_end"] = "turn_end"
    turn_id: int
    interrupted: bool
    spoken_text: str


class LatencyEvent(_Event):
    """Per-stage latency of a turn, in ms from the end of the user's speech (or message)."""

    type: Literal["latency"] = "latency"
    turn_id: int
    source: Literal["speech", "text"]
    stages_ms: dict[str, float]
    prompt_tokens: int | None = Field(None, description="LLM prompt of this turn")
    evaluated_prompt_tokens: int | None = Field(
        None, description="of which evaluated (the rest was reused from the LLM's cache)")
    route: Literal["faq", "small", "large"] | None = Field(
        None, description="who answered: the FAQ cache (no LLM call), the small LLM or "
        "the large LLM")
    fallback: bool = Field(
        False, description="the routing policy chose the large LLM, which could not be "
        "reached, so the small one answered (route is then small)")


class ErrorEvent(_Event):
    """Something went wrong; ``message`` says what and what to do. The session goes on
    unless it is followed by ``closed``."""

    type: Literal["error"] = "error"
    code: str
    message: str
    retryable: bool = False
    retry_after_s: float | None = Field(None, description="with retryable: try again after "
                                        "this many seconds (a full server, a rate limit)")
    turn_id: int | None = None


class PongEvent(_Event):
    """Answer to ``ping``: the client's time echoed and the server's, in ms (clock sync)."""
    type: Literal["pong"] = "pong"
    client_time_ms: float
    server_time_ms: float


class ClosedEvent(_Event):
    """The session is over (client asked, server shutting down, or an error)."""

    type: Literal["closed"] = "closed"
    reason: str


ServerEvent = (ReadyEvent | StreamInitEvent | TranscriptEvent | ReplyDeltaEvent
               | SpeakingEvent | InterruptedEvent | TurnEndEvent | LatencyEvent | ErrorEvent
               | PongEvent | ClosedEvent)
