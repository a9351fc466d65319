"""What the server's routes share: settings, engines, auth, live sessions, readiness."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from talkface.api.auth import Authenticator
from talkface.api.sessions import SessionRegistry
from talkface.config import Settings
from talkface.faq.service import load_faq
from talkface.faq.warm import speak_faq_answers
from talkface.process_memory import freeze_loaded_objects
from talkface.runtime import Runtime

if TYPE_CHECKING:
    from talkface.services.quotas import QuotaLedger

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class ServerState:
    """One server's shared state (``app.state.talkface``).

    Attributes:
        settings: the settings tree.
        runtime: the engines, shared by sessions and by the HTTP endpoints.
        auth: keys, tokens and rate limits.
        sessions: the live sessions.
        loading: what is still loading; empty once ready.
        failed: why loading failed, if it did.
        quotas: the daily quotas per key (None until the server has started).
    """

    settings: Settings
    runtime: Runtime
    auth: Authenticator
    sessions: SessionRegistry
    loading: list[str] = field(default_factory=list)
    failed: str | None = None
    warm_up_task: asyncio.Task[None] | None = None
    quotas: QuotaLedger | None = None

    @property
    def ready(self) -> bool:
        """True once every model has loaded and none failed."""
        return not self.loading and self.failed is None

    async def warm_up(self) -> None:
        """Load every model the endpoints need, one after another, recording progress."""
        runtime = self.runtime
        steps = [
            ("vad", runtime.vad),
            ("asr", runtime.asr_engine),
            ("llm", runtime.llm_engine),
            ("animator", runtime.animator_engine),
            ("avatar", runtime.default_avatar),
            ("faq", lambda: load_faq(self.settings.faq)),  # the embedder and the FAQ, once
        ]
        voices = [runtime.resolve_voice(None, "en"), runtime.resolve_voice(None, "zh")]
        self.loading = [name for name, _ in steps] + [f"tts:{v.name}" for v in voices]
        try:
            for name, load in steps:
                await load()
                self.loading.remove(name)
            for voice in voices:
                await runtime.tts_engine(voice)
                self.loading.remove(f"tts:{voice.name}")
            await runtime.prime_llm(self.settings.llm.persona)
            await speak_faq_answers(runtime)  # a FAQ hit then starts without the TTS
            freeze_loaded_objects()
        except Exception as exc:
            logger.exception("loading the models failed")
            self.failed = f"{type(exc).__name__}: {exc}"
