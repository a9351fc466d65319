"""Who may call the server: API keys, short-lived session tokens, and a rate limit per key.

* **API keys** are for programs (``Authorization: Bearer <key>``). Only their SHA-256
  hashes are kept; a key is never logged or sent back.
* **Session tokens** are what a browser page gets instead of a key: signed, expiring,
  and good only for creating and joining live sessions and listing voices. A program
  holding a key mints them with ``POST /v1/tokens``; ``talkface serve`` prints a page URL
  with one. Browsers cannot put headers on WebSocket requests, so the WebSocket endpoint
  also takes a session token as ``?token=`` (never an API key: URLs end up in access
  logs, proxies and browser history, and a key does not expire).
* **Rate limits** are token buckets per key (a session token counts against the key
  that minted it), so one flooding client is throttled while others are served.
* **Failed logins** are counted per client address (:class:`LoginThrottle`): an address
  that keeps guessing keys or forging tokens gets 429 for a while; others go on.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from talkface.api.errors import Forbidden, RateLimited, Unauthorized, WrongCredential
from talkface.api.settings import LoginLimitSettings, RateLimitSettings

Scope = Literal["key", "session"]
_TOKEN_PREFIX = "tft1"


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
            raise WrongCredential("malformed session token") from None
        if prefix != _TOKEN_PREFIX or not hmac.compare_digest(signature, self._sign(payload)):
            raise WrongCredential("invalid session token")
        try:
            claims = json.loads(_unb64(payload))
            key_id, expires = str(claims["k"]), float(claims["e"])
        except (ValueError, KeyError, TypeError):
            raise WrongCredential("malformed session token") from None
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


class LoginThrottle:
    """Failed logins per client address, in a sliding window; the clock is injectable.

    Memory is bounded: at most ``max_addresses`` addresses are tracked (the ones with the
    oldest last failure are forgotten first).
    """

    def __init__(self, settings: LoginLimitSettings, *, clock: object = time.monotonic,
                 max_addresses: int = 10_000) -> None:
        self._max = settings.max_failures
        self._window_s = settings.window_s
        self._clock = clock
        self._max_addresses = max_addresses
        self._failures: collections.OrderedDict[str, collections.deque[float]] = (
            collections.OrderedDict())

    def check(self, address: str) -> None:
        """Refuse an address that failed too often lately.

        Raises:
            RateLimited: says when the address may try again.
        """
        failures = self._failures.get(address)
        if failures is None:
            return
        now = self._clock()  # type: ignore[operator]
        while failures and failures[0] <= now - self._window_s:
            failures.popleft()
        if not failures:
            del self._failures[address]
        elif len(failures) >= self._max:
            retry_after_s = failures[0] + self._window_s - now
            raise RateLimited(
                f"too many failed logins from this address ({len(failures)} in "
                f"{self._window_s:g} s); check the API key and retry in {retry_after_s:.0f} s",
                retry_after_s=retry_after_s)

    def failed(self, address: str) -> None:
        """Count a failed login from ``address``."""
        failures = self._failures.pop(address, None) or collections.deque(maxlen=self._max)
        failures.append(self._clock())  # type: ignore[operator]
        self._failures[address] = failures  # most recent last
        while len(self._failures) > self._max_addresses:
            self._failures.popitem(last=False)


class Authenticator:
    """Turns a credential (key or token) into a :class:`Principal`, rate limit included.

    Args:
        keys, signer, limiter: the keys, the token signer, the per-key rate limit.
        logins: failed logins per client address (None: not limited).
    """

    def __init__(self, keys: KeyRing, signer: TokenSigner, limiter: RateLimiter, *,
                 logins: LoginThrottle | None = None) -> None:
        self.keys = keys
        self.signer = signer
        self.limiter = limiter
        self.logins = logins

    def authenticate(self, credential: str | None, *, allow_session: bool,
                     client: str | None = None) -> Principal:
        """Who holds ``credential``.

        Args:
            credential: an API key or a session token (None when the request had none).
            allow_session: whether a session token is enough for this endpoint.
            client: the caller's address, for the failed-login limit (None: not counted).

        Raises:
            Unauthorized, Forbidden, RateLimited.
        """
        if not credential:
            raise Unauthorized("missing credentials: send 'Authorization: Bearer <API key>'")
        logins = self.logins if client is not None else None
        if logins is not None:
            logins.check(client)  # type: ignore[arg-type]
        try:
            principal = self._identify(credential, allow_session=allow_session)
        except WrongCredential:
            if logins is not None:
                logins.failed(client)  # type: ignore[arg-type]
            raise
        self.limiter.check(principal.key_id)
        return principal

    def _identify(self, credential: str, *, allow_session: bool) -> Principal:
        if is_session_token(credential):
            key_id = self.signer.verify(credential)
            if not allow_session:
                raise Forbidden("this endpoint needs an API key, not a session token")
            return Principal(key_id=key_id, scope="session")
        key_id_or_none = self.keys.identify(credential)
        if key_id_or_none is None:
            raise WrongCredential("invalid API key")
        return Principal(key_id=key_id_or_none, scope="key")


def is_session_token(credential: str) -> bool:
    """Whether ``credential`` has the shape of a session token (valid or not)."""
    return credential.startswith(_TOKEN_PREFIX + ".")


def websocket_credential(authorization: str | None, query_token: str | None) -> str | None:
    """The credential of a WebSocket request: its ``Authorization`` header (a key or a
    session token) or, for browsers, a session token in ``?token=``.

    Raises:
        Unauthorized: an API key came in the URL (it is not checked, and not accepted).
    """
    header = bearer(authorization)
    if header is not None or not query_token:
        return header
    if not is_session_token(query_token):
        raise Unauthorized(
            "an API key cannot be sent in the URL (URLs are logged): send it as "
            "'Authorization: Bearer <API key>', or mint a session token (POST /v1/tokens) "
            "and pass that as ?token="
        )
    return query_token


def bearer(authorization: str | None) -> str | None:
    """The credential in an ``Authorization: Bearer ...`` header value."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None
