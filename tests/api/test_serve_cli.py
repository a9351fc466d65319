"""``talkface serve`` as an operator runs it: a config file, keys from the environment,
a real process on a loopback port, and a clean stop on SIGTERM (live sessions finish the
answer they are giving first)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

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
            assert "the limit is 100" in too_long.json()["error"]["message"]
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
    # No secret in the output: the keys never; the page link's token once, at start-up.
    assert not [key for key in KEYS if key in output], output
    page_token = output.split("/?token=", 1)[1].split()[0]
    assert output.count(page_token) == 1, output


def start_serve(tmp_path: Path, config_text: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    """``talkface serve`` on a free port with ``config_text``; its process, URL and log."""
    port = free_port()
    config = tmp_path / "talkface.toml"
    config.write_text(config_text, encoding="utf-8")
    env = {**os.environ, "TALKFACE_API_KEYS": ",".join(KEYS)}
    env.pop("TALKFACE_CONFIG", None)
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "talkface.cli", "serve", "--port", str(port),
             "--config", str(config)],
            stdout=sink, stderr=subprocess.STDOUT, env=env,
        )
    return process, f"http://127.0.0.1:{port}", log


async def test_sigterm_lets_a_live_answer_finish_then_exits_0(tmp_path: Path) -> None:
    grace_s = 60  # generous: on a busy 2-core box the answer itself takes a while
    process, base_url, log = start_serve(tmp_path, (
        "[animator]\nsize_px = 256\n\n"
        f"[server]\ndata_dir = {str(tmp_path / 'data')!r}\nshutdown_grace_s = {grace_s}\n"))
    events: list[dict[str, Any]] = []
    try:
        await asyncio.to_thread(wait_ready, process, base_url, log)
        async with httpx.AsyncClient(base_url=base_url, timeout=30.0,
                                     headers={"Authorization": f"Bearer {KEYS[0]}"}) as http:
            token = (await http.post("/v1/tokens")).json()["token"]
            ws_url = base_url.replace("http://", "ws://") + f"/v1/sessions/ws?token={token}"
            async with connect(ws_url, max_size=None) as ws:
                await ws.send(json.dumps({"type": "hello", "v": 1, "output": "jpeg"}))
                await ws.send(json.dumps({"type": "text", "v": 1,
                                          "text": "Tell me about the sea in two sentences."}))

                async def until(kind: str) -> None:
                    async with asyncio.timeout(grace_s + 30):
                        async for message in ws:
                            if isinstance(message, str):
                                events.append(json.loads(message))
                                if events[-1]["type"] == kind:
                                    return

                await until("speaking")  # the avatar is answering: stop the server now
                process.send_signal(signal.SIGTERM)
                reading = asyncio.create_task(until("closed"))
                # While the answer plays, the server is draining: no new sessions.
                deadline = time.monotonic() + 30
                while (await http.get("/readyz")).json()["status"] != "draining":
                    assert time.monotonic() < deadline, "SIGTERM did not start the drain"
                    await asyncio.sleep(0.1)
                refused = await http.post("/v1/sessions/webrtc",
                                          json={"type": "offer", "sdp": "v=0 " + "x" * 20})
                assert refused.status_code == 503 and "Retry-After" in refused.headers
                assert "shutting down" in refused.json()["error"]["message"]
                await reading
                with pytest.raises(ConnectionClosed):
                    await asyncio.wait_for(ws.recv(), 30)
                close_code = ws.close_code
        exit_code = await asyncio.to_thread(process.wait, 60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    output = log.read_text()
    kinds = [e["type"] for e in events]
    assert "turn_end" in kinds and kinds[-1] == "closed", kinds
    turn_end = next(e for e in events if e["type"] == "turn_end")
    assert not turn_end["interrupted"] and turn_end["spoken_text"]  # the answer was finished
    assert events[-1]["reason"] == "the server is shutting down"
    assert close_code == 1000
    assert exit_code == 0, output
    # The server's own INFO records, as key=value lines, without what was said.
    assert "event=drain sessions=1" in output and "event=session_end" in output, output
    assert "sea" not in output and turn_end["spoken_text"] not in output
    assert "Traceback" not in output
    assert token not in output and not [key for key in KEYS if key in output], output


def test_a_render_cut_by_a_killed_server_leaves_no_file_after_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    config = ("[animator]\nsize_px = 256\n\n"
              f"[server]\ndata_dir = {str(data_dir)!r}\nshutdown_grace_s = 2\n")
    videos = data_dir / "videos"
    first, base_url, log = start_serve(tmp_path, config)
    try:
        wait_ready(first, base_url, log)
        with httpx.Client(base_url=base_url, timeout=60.0,
                          headers={"Authorization": f"Bearer {KEYS[0]}"}) as http:
            text = " ".join(["The sea is wide and the sky is blue today."] * 12)
            job = http.post("/v1/renders", json={"text": text}).json()
            deadline = time.monotonic() + 120
            while not (partials := sorted(videos.glob(f".{job['id']}.mp4.*.mp4"))):
                assert time.monotonic() < deadline, "the render never started writing"
                assert http.get(f"/v1/renders/{job['id']}").json()["status"] != "done"
                time.sleep(0.1)
        first.kill()  # as the OOM killer would: no cleanup runs
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert all(p.exists() for p in partials)  # what the killed render left
    second, base_url, log = start_serve(tmp_path, config)
    try:
        wait_ready(second, base_url, log)
        assert not any(p.exists() for p in partials)
        with httpx.Client(base_url=base_url, timeout=60.0,
                          headers={"Authorization": f"Bearer {KEYS[0]}"}) as http:
            deadline = time.monotonic() + 300
            while (done := http.get(f"/v1/renders/{job['id']}").json())["status"] != "done":
                assert time.monotonic() < deadline and done["status"] in ("queued", "running")
                time.sleep(0.2)
        assert done["attempts"] == 2
        assert sorted(p.name for p in videos.iterdir()) == [f"{job['id']}.mp4"]
    finally:
        second.send_signal(signal.SIGTERM)
        exit_code = second.wait(timeout=60)
    output = log.read_text()
    assert exit_code == 0, output
    assert f"event=render_attempt job={job['id']} attempt=2" in output, output
    assert "event=render_partials_removed count=1" in output
