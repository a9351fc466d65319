"""Settings of ``talkface serve``: where it listens, who may use it, and how much."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from talkface.services.quota_settings import QuotaSettings


class RateLimitSettings(BaseModel):
    """A token bucket per API key: ``requests_per_s`` sustained, ``burst`` at once."""

    model_config = ConfigDict(extra="forbid")

    requests_per_s: float = Field(10.0, gt=0)
    burst: int = Field(40, ge=1)


class LoginLimitSettings(BaseModel):
    """Failed logins per client address: after ``max_failures`` wrong keys or forged
    tokens within ``window_s``, that address gets 429 (with Retry-After) until the oldest
    failure leaves the window; other addresses are not affected. Clients behind one proxy
    share its address."""

    model_config = ConfigDict(extra="forbid")

    max_failures: int = Field(20, ge=1)
    window_s: float = Field(60.0, gt=0)


class ServerLimitSettings(BaseModel):
    """What one request or the whole server may take; each refusal is a clear 4xx/503.

    Attributes:
        max_upload_bytes: largest upload (portrait, audio file).
        max_audio_s: longest audio in one request (transcription, render input).
        max_text_chars: longest text in one request.
        max_sessions: live conversations at once; more are refused with 503.
        max_pending_renders: render jobs waiting at once; more are refused with 503.
        max_ws_message_bytes: largest WebSocket or data-channel message.
    """

    model_config = ConfigDict(extra="forbid")

    max_upload_bytes: int = Field(25 * 1024 * 1024, ge=1024)
    max_audio_s: float = Field(120.0, gt=0)
    max_text_chars: int = Field(4000, ge=1)
    max_sessions: int = Field(8, ge=1)
    max_pending_renders: int = Field(32, ge=1)
    max_ws_message_bytes: int = Field(256 * 1024, ge=1024)


class IdleClipSettings(BaseModel):
    """The listening face of a silent live session, rendered once per avatar and looped.

    Attributes:
        enabled: play the shared loop (off: every session animates its own idle frames,
            which costs several times the CPU).
        max_clips: loops kept in memory (one per avatar, frame size, fps and output).
        max_bytes: memory the loops may take (a 512 px loop takes about 100 MiB).
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    max_clips: int = Field(8, ge=1)
    max_bytes: int = Field(512 * 1024 * 1024, ge=1024 * 1024)


class ServerSettings(BaseModel):
    """Settings of the HTTP server.

    Attributes:
        host: address to listen on (127.0.0.1 keeps it on this machine).
        port: TCP port.
        api_keys: accepted API keys; empty means one is generated at start and printed.
            Given on the command line or as ``TALKFACE_API_KEYS=k1,k2``; only their
            hashes are kept in memory.
        token_ttl_s: lifetime of a session token (what the browser page gets).
        page_token_ttl_s: lifetime of the page link printed at start-up: short, since
            the terminal, its scroll-back and whatever captures a service's output keep
            it (a new one: ``POST /v1/tokens`` with the API key).
        data_dir: where render jobs and their videos are kept (default: the cache dir).
        shutdown_grace_s: on shutdown (SIGTERM, Ctrl-C), how long live sessions may take
            to finish the answer they are giving; new sessions are refused meanwhile.
        public_docs: serve the interactive API docs (``/docs``, ``/redoc``) and
            ``/openapi.json`` to anyone; off by default (they map the whole API).
        quotas: daily quotas per API key (live minutes, video minutes, LLM tokens).
        memory_trim_interval_s: how often the server hands memory freed by malloc back
            to the system (:mod:`talkface.process_memory`); 0: never.
        idle_clip: the shared looping listening face of silent live sessions.
    """

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    api_keys: tuple[str, ...] = ()
    token_ttl_s: float = Field(3600.0, gt=0)
    page_token_ttl_s: float = Field(600.0, gt=0)
    data_dir: Path | None = None
    shutdown_grace_s: float = Field(10.0, ge=0)
    public_docs: bool = False
    memory_trim_interval_s: float = Field(30.0, ge=0)
    login_limit: LoginLimitSettings = Field(default_factory=LoginLimitSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
    limits: ServerLimitSettings = Field(default_factory=ServerLimitSettings)
    quotas: QuotaSettings = Field(default_factory=QuotaSettings)
    idle_clip: IdleClipSettings = Field(default_factory=IdleClipSettings)
