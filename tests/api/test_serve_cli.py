"""``talkface serve`` as an operator runs it: a config file, keys from the environment,
a real process on a loopback port, and a clean stop on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .conftest import READY_TIMEOUT_S, free_port

pytestmark = [pytest.mark.serving, pytest.mark.integration]

KEYS = ("tfk_cli_test_key_0001", "tfk_cli_test_key_0002")


def wait_ready(process: subprocess.Popen[bytes], base_url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(base_url=base_url, timeout=5.0) as http:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"talkface serve exited early:\n{log.read_text()}"
            try:
                if http.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.2)
    raise AssertionError(f"talkface serve was not ready in time:\n{log.read_text()[-3000:]}")


def test_serve_with_a_config_file_answers_then_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    config = tmp_path / "talkface.toml"
    config.write_text(
        "[animator]\nsize_px = 256\n\n"
        f"[server]\ndata_dir = {str(data_dir)!r}\nshutdown_grace_s = 2\n\n"
        "[server.limits]\nmax_text_chars = 100\n",
        encoding="utf-8",
    )
    env = {**os.environ, "TALKFACE_API_KEYS": ",".join(KEYS)}
    env.pop("TALKFACE_CONFIG", None)
    log = tmp_path / "serve.log"
    base_url = f"http://127.0.0.1:{port}"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "talkface.cli", "serve", "--port", str(port),
             "--config", str(config)],
            stdout=sink, stderr=subprocess.STDOUT, env=env,
        )
    try:
        wait_ready(process, base_url, log)
        with httpx.Client(base_url=base_url, timeout=120.0,
                          headers={"Authorization": f"Bearer {KEYS[1]}"}) as http:
            speech = http.post("/v1/audio/speech",
                               json={"input": "Hello from the command line.",
                                     "response_format": "wav"})
            assert speech.status_code == 200 and speech.content[:4] == b"RIFF"
            # The limit comes from the config file, not the default (4000).
            too_long = http.post("/v1/audio/speech", json={"input": "x" * 101})
            assert too_long.status_code == 413
            assert "at most 100" in too_long.json()["error"]["message"]
            assert httpx.get(f"{base_url}/v1/models").status_code == 401
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            exit_code = process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    output = log.read_text()
    assert exit_code == 0, output
    assert f"talkface is starting on http://127.0.0.1:{port}" in output
    assert "API keys: 2 from TALKFACE_API_KEYS" in output
    for line in ("Shutting down", "Waiting for application shutdown.",
                 "Application shutdown complete.", "Finished server process"):
        assert line in output, output
    assert (data_dir / "jobs.sqlite3").is_file()  # data_dir, from the config file
    assert "Traceback" not in output
