"""A real talkface server on 127.0.0.1 (uvicorn in a background thread) for the API tests.

``server`` is one server for the whole test session, with real models, shared by every
module that does not need a server of its own; :func:`serve` starts one with other
settings (tests of restarts, of limits). ``talkface serve`` itself, as a process, is
tested in ``test_serve_cli.py``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from talkface.api.app import create_app
from talkface.config import Settings, load_settings

API_KEY = "tfk_test_main_key_0001"
OTHER_KEY = "tfk_test_other_key_0002"
FLOOD_KEY = "tfk_test_flood_key_0003"
READY_TIMEOUT_S = 300.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_settings(data_dir: Path, *, size_px: int = 256, **overrides: Any) -> Settings:
    """Settings for a test server: three keys, small limits, ``size_px`` frames.

    ``overrides`` are merged into the ``server`` section (``rate_limit={...}``...).
    """
    server: dict[str, Any] = {
        "api_keys": (API_KEY, OTHER_KEY, FLOOD_KEY),
        "data_dir": data_dir,
        "shutdown_grace_s": 2.0,
        "rate_limit": {"requests_per_s": 50.0, "burst": 100},
        # Every test client calls from 127.0.0.1: the wrong keys that tests send on purpose
        # must not lock the others out (test_hardening.py tests the limit itself).
        "login_limit": {"max_failures": 1000},
        "limits": {"max_upload_bytes": 1024 * 1024, "max_audio_s": 10.0,
                   "max_pending_renders": 4},
    }
    for key, value in overrides.items():
        current = server.get(key)
        server[key] = {**current, **value} if isinstance(current, dict) else value
    # The ladder steps on this process's CPU, which every test here shares: it would
    # shorten answers and refuse sessions at random. test_degradation_live.py turns it on.
    return load_settings(animator={"size_px": size_px}, server=server,
                         degradation={"enabled": False})


@dataclass(frozen=True, slots=True)
class RunningServer:
    """A server under test: where it listens, a key that works, its settings and app."""

    base_url: str
    api_key: str
    settings: Settings
    app: FastAPI

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}

    def client(self, key: str | None = None, **kwargs: Any) -> httpx.Client:
        """An HTTP client with ``key`` (default: the main key) on every request."""
        return httpx.Client(base_url=self.base_url, headers=self.headers(key),
                            timeout=kwargs.pop("timeout", 120.0), **kwargs)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        with httpx.Client(base_url=self.base_url, timeout=10.0) as client:
            while time.monotonic() < deadline:
                response = client.get("/readyz")
                if response.status_code == 200:
                    return
                if response.json().get("status") == "failed":
                    raise RuntimeError(f"the test server failed to load: {response.json()}")
                time.sleep(0.2)
        raise RuntimeError(f"the test server was not ready in {timeout_s:g} s")


def _build_routes_now(app: FastAPI) -> None:
    """Have FastAPI build its per-route state here, in the test's main thread.

    It builds it lazily on the first request, inside ``warnings.catch_warnings()``, which
    is not thread-safe: done in the server thread, it races with pytest's own
    ``catch_warnings`` around each test and can leave pytest's filters behind.
    """
    for route in app.router.routes:
        for build in ("effective_candidates", "effective_low_priority_routes"):
            if callable(method := getattr(route, build, None)):
                method()


@contextlib.contextmanager
def serve(settings: Settings, *, wait_ready: bool = True) -> Iterator[RunningServer]:
    """Run ``create_app(settings)`` on uvicorn in a thread on a free loopback port."""
    app = create_app(settings)
    _build_routes_now(app)
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", timeout_graceful_shutdown=5,
                            ws_per_message_deflate=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    running = RunningServer(base_url=f"http://127.0.0.1:{port}", api_key=API_KEY,
                            settings=settings, app=app)
    try:
        if wait_ready:
            running.wait_ready()
        yield running
    finally:
        server.should_exit = True
        thread.join(timeout=60)
        assert not thread.is_alive(), "the test server did not stop"


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real server with every model loaded, shared by the API tests.

    Its frames are full size: lip-sync is measured on its videos (faces in 256 px frames
    are too small for the measurement, not for the viewer).
    """
    settings = server_settings(tmp_path_factory.mktemp("server-data"), size_px=512)
    with serve(settings) as running:
        yield running
