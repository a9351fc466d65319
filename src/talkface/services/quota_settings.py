"""Settings of the daily quotas per API key (``server.quotas``).

Kept apart from :mod:`talkface.services.quotas` so that the settings tree imports them
without the ledger (which imports the API's error types).
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

QuotaKind = Literal["live_session_minutes", "rendered_video_minutes", "llm_tokens"]
QUOTA_KINDS: tuple[QuotaKind, ...] = ("live_session_minutes", "rendered_video_minutes",
                                      "llm_tokens")
QUOTA_UNITS: dict[QuotaKind, Literal["minutes", "tokens"]] = {
    "live_session_minutes": "minutes",
    "rendered_video_minutes": "minutes",
    "llm_tokens": "tokens",
}
_KEY_ID = re.compile(r"^[0-9a-f]{12}$")


class QuotaLimits(BaseModel):
    """What one API key may use per UTC day; None (unset) is unlimited.

    Attributes:
        live_session_minutes: minutes of live sessions (WebRTC and WebSocket), from the
            session's start to its end.
        rendered_video_minutes: minutes of finished render-job videos.
        llm_tokens: prompt plus completion tokens, of live turns and of
            ``/v1/chat/completions``.
    """

    model_config = ConfigDict(extra="forbid")

    live_session_minutes: float | None = Field(None, ge=0)
    rendered_video_minutes: float | None = Field(None, ge=0)
    llm_tokens: int | None = Field(None, ge=0)

    def limit(self, kind: QuotaKind) -> float | None:
        """The limit on ``kind``, or None when it has none."""
        value = getattr(self, kind)
        return None if value is None else float(value)


class QuotaSettings(BaseModel):
    """Daily quotas per API key (UTC days), and how usage is counted.

    Attributes:
        default: the limits of every key.
        per_key: limits of particular keys, by key id (the first 12 hex digits of the
            key's SHA-256, as ``GET /v1/usage`` shows it; never the key itself). A field
            given here replaces the default's; one left out keeps the default; ``null``
            (JSON, env) lifts the default for that key.
        flush_interval_s: usage is written to disk this often (and when a live session
            ends, and at shutdown), not at every frame or token.
        live_check_interval_s: a running live session checks its key's quotas at least
            this often (sooner when its minutes run out before then).
    """

    # Errors never echo what was given: a per_key entry may be a raw key pasted by mistake.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    default: QuotaLimits = Field(default_factory=QuotaLimits)
    per_key: dict[str, QuotaLimits] = Field(default_factory=dict)
    flush_interval_s: float = Field(5.0, gt=0)
    live_check_interval_s: float = Field(10.0, gt=0)

    @field_validator("per_key", mode="before")
    @classmethod
    def _key_ids_only(cls, value: object) -> object:
        # Before the entries are validated, so that no error's location carries a raw key.
        for key_id in value if isinstance(value, dict) else ():
            if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
                raise ValueError(
                    "per_key is keyed by key id: the first 12 hex digits of the key's "
                    "SHA-256 (printf %s KEY | sha256sum | cut -c1-12, or GET /v1/usage "
                    "with that key), never by the key itself"
                )
        return value

    def limits_for(self, key_id: str) -> QuotaLimits:
        """``key_id``'s limits: its per-key entry over the default."""
        override = self.per_key.get(key_id)
        if override is None:
            return self.default
        merged = self.default.model_dump()
        merged.update(override.model_dump(exclude_unset=True))
        return QuotaLimits(**merged)
