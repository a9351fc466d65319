"""Who may call the server: API keys, short-lived session tokens, and a rate limit per key.

* **API keys** are for programs (``Authorization: Bearer <key>``). Only their SHA-256
  hashes are kept; a key is never logged or sent back.
* **Session tokens** are what a browser page gets instead of a key: signed, expiring,
  and good only for creating and joining live sessions and listing voices. A program
  holding a key mints them with ``POST /v1/tokens``; ``talkface serve`` prints a page URL
  with one. Browsers cannot put headers on WebSocket requests, so the realtime endpoints
  also take the token as ``?token=``.
* **Rate limits** are token buckets per key (a session token counts against the key
  that minted it), so one flooding client is throttled while others are served.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from talkface.api.settings import RateLimitSettings
from talkface.errors import TalkfaceError

Scope = Literal["key", "session"]
_TOKEN_PREFIX = "tft1"


class Unauthorized(TalkfaceError):
    """No credentials, wrong credentials, or an expired token."""

    code = "unauthorized"
    http_status = 401


class Forbidden(TalkfaceError):
    """Valid credentials that do not allow this request."""

    code = "forbidden"
    http_status = 403


class RateLimited(TalkfaceError):
    """Too many requests from one key; try again after ``retry_after_s``."""

    code = "rate_limited"
    http_status = 429

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True, kw_only=True)
class Principal:
    """Who is calling.

    Attributes:
        key_id: a short, stable, non-secret id of the API key (a hash prefix); session
            tokens carry the id of the key that minted them.
        scope: "key" for an API key, "session" for a session token.
    """

    key_id: str
    scope: Scope


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_api_key() -> str:
    """A new random API key (URL-safe, 256 bits)."""
    return "tfk_" + secrets.token_urlsafe(32)


class KeyRing:
    """The accepted API keys, as hashes only."""

    def __init__(self, keys: tuple[str, ...]) -> None:
        if not keys:
            raise ValueError("a KeyRing needs at least one key")
        for key in keys:
            if len(key) < 8:
                raise ValueError("API keys must be at least 8 characters long")
        self._hashes = {_key_hash(key): _key_hash(key)[:12] for key in keys}

    def identify(self, key: str) -> str | None:
        """The key's id when ``key`` is one of ours, else None (constant-time compare)."""
        candidate = _key_hash(key)
        found = None
        for stored, key_id in self._hashes.items():
            if hmac.compare_digest(stored, candidate):
                found = key_id
        return found


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """Issues and checks session tokens (HMAC-SHA256 over a small JSON payload).

    Args:
        secret: signing secret; random per server start unless given (tokens then die
            with the process, which is what a short-lived token should do).
    """

    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or secrets.token_bytes(32)

    def issue(self, key_id: str, ttl_s: float) -> tuple[str, float]:
        """A token for ``key_id`` and its expiry (unix seconds)."""
        expires = time.time() + ttl_s
        payload = _b64(json.dumps({"k": key_id, "e": round(expires, 3),
                                   "n": secrets.token_hex(4)}).encode())
        return f"{_TOKEN_PREFIX}.{payload}.{self._sign(payload)}", expires

    def verify(self, token: str) -> str:
        """The key id inside a valid, unexpired token.

        Raises:
            Unauthorized: malformed, forged or expired.
        """
        try:
            prefix, payload, signature = token.split(".")
        except ValueError:
            raise Unauthorized("malformed session token") from None
        if prefix != _TOKEN_PREFIX or not hmac.compare_digest(signature, self._sign(payload)):
            raise Unauthorized("invalid session token")
        try:
            claims = json.loads(_unb64(payload))
            key_id, expires = str(claims["k"]), float(claims["e"])
        except (ValueError, KeyError, TypeError):
            raise Unauthorized("malformed session token") from None
        if time.time() > expires:
            raise Unauthorized("session token expired; get a new one (POST /v1/tokens)")
        return key_id

    def _sign(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode("ascii"), hashlib.sha256).digest())


class RateLimiter:
    """Token buckets per key id; the clock is injectable for tests."""

    def __init__(self, settings: RateLimitSettings, *, clock: object = time.monotonic) -> None:
        self._rate = settings.requests_per_s
        self._burst = float(settings.burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def check(self, key_id: str, cost: float = 1.0) -> None:
        """Take ``cost`` tokens from ``key_id``'s bucket.

        Raises:
            RateLimited: the bucket is empty; says when to retry.
        """
        now = self._clock()  # type: ignore[operator]
        tokens, last = self._buckets.get(key_id, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self._rate)
        if tokens < cost:
            retry_after_s = (cost - tokens) / self._rate
            self._buckets[key_id] = (tokens, now)
            raise RateLimited(
                f"too many requests for this API key; retry in {retry_after_s:.1f} s",
                retry_after_s=retry_after_s,
            )
        self._buckets[key_id] = (tokens - cost, now)


class Authenticator:
    """Turns a credential (key or token) into a :class:`Principal`, rate limit included."""

    def __init__(self, keys: KeyRing, signer: TokenSigner, limiter: RateLimiter) -> None:
        self.keys = keys
        self.signer = signer
        self.limiter = limiter

    def authenticate(self, credential: str | None, *, allow_session: bool) -> Principal:
        """Who holds ``credential``.

        Args:
            credential: an API key or a session token (None when the request had none).
            allow_session: whether a session token is enough for this endpoint.

        Raises:
            Unauthorized, Forbidden, RateLimited.
        """
        if not credential:
            raise Unauthorized("missing credentials: send 'Authorization: Bearer <API key>'")
        if credential.startswith(_TOKEN_PREFIX + "."):
            key_id = self.signer.verify(credential)
            if not allow_session:
                raise Forbidden("this endpoint needs an API key, not a session token")
            principal = Principal(key_id=key_id, scope="session")
        else:
            key_id_or_none = self.keys.identify(credential)
            if key_id_or_none is None:
                raise Unauthorized("invalid API key")
            principal = Principal(key_id=key_id_or_none, scope="key")
        self.limiter.check(principal.key_id)
        return principal


def bearer(authorization: str | None) -> str | None:
    """The credential in an ``Authorization: Bearer ...`` header value."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
