"""The error hierarchy.

Every error a user can hit is a :class:`TalkfaceError` whose message says what was wrong
and what to do about it, in one line. The CLI prints that line and exits non-zero; the
server turns it into a JSON error with a matching status code; inside a session it becomes
an :class:`~talkface.messages.Error` message and the session goes on.
"""

from __future__ import annotations


class TalkfaceError(Exception):
    """Base class of every error talkface raises on purpose.

    Attributes:
        code: a short, stable, machine-readable identifier (``"bad_input"``...).
        http_status: the HTTP status the API answers with.
        retry_after_s: when the same request may succeed if tried again after this many
            seconds (a full server, a rate limit); None when there is no such advice.
    """

    code = "internal"
    http_status = 500
    retry_after_s: float | None = None

    @property
    def retryable(self) -> bool:
        """True when trying the same request again later may succeed."""
        return self.retry_after_s is not None

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ConfigError(TalkfaceError):
    """A setting, option or file name is wrong; the message names it and the fix."""

    code = "config_error"
    http_status = 400


class BackendUnavailable(TalkfaceError):
    """A backend's model or package is missing; the message names the install command."""

    code = "backend_unavailable"
    http_status = 503


class BadInput(TalkfaceError):
    """Input from the user (text, audio, image, message) cannot be used as given."""

    code = "bad_input"
    http_status = 400


class PayloadTooLarge(BadInput):
    """Input is larger than the configured limit."""

    code = "payload_too_large"
    http_status = 413


class Overloaded(TalkfaceError):
    """The box is at capacity; try again after ``retry_after_s`` seconds."""

    code = "overloaded"
    http_status = 503

    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class RateLimited(TalkfaceError):
    """Too many requests from one key; try again after ``retry_after_s``."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class BackendError(TalkfaceError):
    """A model call failed or timed out.

    Args:
        retryable: True when the same call may succeed if tried again (a timeout, a
            server that is restarting), False when it will fail the same way.
    """

    code = "backend_error"
    http_status = 502

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self._retryable = retryable

    @property
    def retryable(self) -> bool:
        """Whether sending the same request again may succeed."""
        return self._retryable
