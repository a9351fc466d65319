"""``talkface serve``: the HTTP/WebRTC server on uvicorn, with a browser client."""

from __future__ import annotations

import copy
import os
import secrets
import signal
from pathlib import Path
from typing import Any

from talkface.api.auth import KeyRing, TokenSigner, generate_api_key
from talkface.commands._common import out_console
from talkface.config import Settings, load_settings
from talkface.errors import ConfigError
from talkface.faq.base import load_faq_file
from talkface.process_memory import limit_malloc_arenas

_KEYS_ENV = "TALKFACE_API_KEYS"
_SECRET_ENV = "TALKFACE_TOKEN_SECRET"
_served = False  # set once uvicorn, in this process, has asked for the app

KEEP_ALIVE_S = 75
"""Seconds an idle HTTP connection stays open (longer than clients and proxies keep theirs)."""


def api_keys_from_env() -> tuple[str, ...]:
    """``TALKFACE_API_KEYS=k1,k2`` as a tuple (empty when unset)."""
    raw = os.environ.get(_KEYS_ENV, "")
    return tuple(key.strip() for key in raw.split(",") if key.strip())


def create_app_from_env():  # type: ignore[no-untyped-def]
    """uvicorn factory for worker processes: everything comes from the environment."""
    from talkface.api.app import create_app

    global _served
    _served = True

    settings = load_settings(server={"api_keys": api_keys_from_env()})
    secret = bytes.fromhex(os.environ[_SECRET_ENV]) if os.environ.get(_SECRET_ENV) else None
    return create_app(settings, token_secret=secret)


def run_serve(*, host: str | None, port: int | None, workers: int,
              config_file: Path | None, engines: str | None = None,
              ray_address: str | None = None, faq: Path | None = None,
              routing: dict[str, str] | None = None) -> None:
    """Start the server; prints its URL, the API key it generated (if any) and a page URL."""
    import uvicorn

    # Worker processes read their settings from the environment: pass these down that way.
    if engines is not None:
        os.environ["TALKFACE_SERVING__ENGINES"] = engines
    if ray_address is not None:
        os.environ["TALKFACE_SERVING__RAY_ADDRESS"] = ray_address
    if faq is not None:
        load_faq_file(faq)  # a bad file fails now, not at the first question
        os.environ["TALKFACE_FAQ__FILE"] = str(faq.resolve())
    for key, value in (routing or {}).items():  # --llm-large-url, --llm-large-model
        os.environ[f"TALKFACE_ROUTING__{key.upper()}"] = value
    keys = api_keys_from_env()
    generated = None
    if not keys:
        generated = generate_api_key()
        keys = (generated,)
    overrides: dict[str, object] = {"api_keys": keys}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings: Settings = load_settings(config_file, server=overrides)
    serving = settings.serving
    if serving.engines == "ray" and serving.ray_address is None and workers > 1:
        raise ConfigError("--engines ray with several --workers needs one Ray cluster for "
                          "all of them: start it with `ray start --head` and pass "
                          "--ray-address auto")
    try:
        KeyRing(keys)
    except ValueError as exc:
        raise ConfigError(f"{_KEYS_ENV}: {exc}") from None
    # Workers must agree on keys and on the token secret: pass both down.
    limit_malloc_arenas()  # before any model thread starts
    secret = secrets.token_bytes(32)
    os.environ[_KEYS_ENV] = ",".join(keys)
    os.environ[_SECRET_ENV] = secret.hex()
    if config_file is not None:
        os.environ["TALKFACE_CONFIG"] = str(config_file)
    server = settings.server
    base = f"http://{server.host}:{server.port}"
    key_id = KeyRing(keys).identify(keys[0]) or ""
    page_token, _ = TokenSigner(secret).issue(key_id, server.page_token_ttl_s)
    where = ("on Ray Serve, one deployment per stage" if serving.engines == "ray"
             else "in this process")
    out_console.print(f"talkface is starting on [bold]{base}[/] (models load in the background,"
                      f" {where}; {base}/readyz says when they are ready)", soft_wrap=True)
    if generated is not None:
        out_console.print(f"API key (generated; set {_KEYS_ENV} to choose your own): "
                          f"[bold]{generated}[/]", soft_wrap=True)
    else:
        out_console.print(f"API keys: {len(keys)} from {_KEYS_ENV}")
    out_console.print(f"talk to the avatar: {base}/?token={page_token} "
                      f"(valid {server.page_token_ttl_s / 60:.0f} min; a new link: POST "
                      "/v1/tokens with the API key)", soft_wrap=True)
    # uvicorn shuts down gracefully on SIGTERM, then raises SIGTERM again so that the
    # process dies of it; a clean shutdown should exit 0 for service managers instead.
    signal.signal(signal.SIGTERM, _on_sigterm)
    uvicorn.run(
        "talkface.commands.serve:create_app_from_env",
        factory=True,
        host=server.host,
        port=server.port,
        workers=workers,
        log_level="info",
        log_config=log_config(),
        # Live sessions are drained before uvicorn closes connections (talkface.api.shutdown);
        # this bounds what is left after that (HTTP requests in flight).
        timeout_graceful_shutdown=int(server.shutdown_grace_s) + 5,
        # An idle keep-alive connection is closed after this long. uvicorn's 5 s equals
        # httpx's (and many clients') own expiry, so a request sent just then met a closing
        # socket (a soak's speech request failed with ReadError); and a load balancer in
        # front (idle timeout 60 s by default on the common ones) must close first.
        timeout_keep_alive=KEEP_ALIVE_S,
        # The WebSocket carries JPEG, fMP4 and PCM: deflate would spend CPU on both ends
        # (measured: ~7 % of a live session's server CPU) to shrink nothing.
        ws_per_message_deflate=False,
    )


def log_config() -> dict[str, Any]:
    """uvicorn's logging, plus talkface's own records at INFO (render attempts, session
    ends, shutdown), one ``key=value`` line each. Records carry ids, codes and reasons the
    server wrote, never what a user said or the avatar answered."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["talkface"] = {
        "format": "ts=%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
    }
    config["handlers"]["talkface"] = {
        "class": "logging.StreamHandler", "formatter": "talkface", "stream": "ext://sys.stderr",
    }
    config["loggers"]["talkface"] = {"handlers": ["talkface"], "level": "INFO",
                                     "propagate": False}
    return config


def _on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM while uvicorn is not handling it.

    Once the app has been served, this is uvicorn raising it again after its graceful
    shutdown: nothing is left to do, and the process exits 0. Before that, the server is
    still starting: stop as Ctrl-C would.
    """
    if not _served:
        raise KeyboardInterrupt
