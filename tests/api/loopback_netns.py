"""Running WebRTC and browser tests where the only network is loopback.

aiortc and Chromium gather ICE candidates on every interface, and Chromium talks to the
internet by itself. So these tests run their whole scenario (``talkface serve``, the
WebRTC client or Chromium, the checks) in a new network namespace that has nothing but
``lo``: ``unshare -n sh -c 'ip link set lo up && exec ...'``. A test that cannot make one
(no ``unshare``, a sandbox that forbids namespaces) is skipped, saying why.

Used by the tests (:func:`run_in_loopback_netns`) and, inside the namespace, by the
scenario scripts (:func:`talkface_serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

API_KEY = "tfk_netns_test_key_0001"
READY_TIMEOUT_S = 240.0
STOP_TIMEOUT_S = 30.0
_URL_PATTERN = re.compile(r"(http://\S+/\?token=\S+)")


@functools.cache
def _unshare_flags() -> tuple[tuple[str, ...] | None, str]:
    """The ``unshare`` flags that make a network namespace here, or None and why not.

    As root ``-n`` is enough; other users may still make one inside a user namespace
    (``-r -n``) where the kernel allows unprivileged user namespaces.
    """
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return None, f"{tool!r} is not installed (apt-get install util-linux iproute2)"
    why = ""
    for flags in (("-n",), ("-r", "-n")):
        try:
            probe = subprocess.run(
                ["unshare", *flags, "sh", "-c", "ip link set lo up && ip -o addr show"],
                capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = str(exc)
            continue
        if probe.returncode == 0:
            return flags, ""
        why = probe.stderr.strip() or f"exit status {probe.returncode}"
    return None, (f"unshare -n is not permitted here ({why}); run the tests as root or where "
                  "network (or unprivileged user) namespaces are allowed")


def loopback_netns_unavailable() -> str | None:
    """Why a loopback-only network namespace cannot be made here (None: it can)."""
    flags, why = _unshare_flags()
    return why if flags is None else None


def netns_command(argv: list[str]) -> list[str]:
    """``argv`` run in a new network namespace with only ``lo``, up."""
    flags, why = _unshare_flags()
    if flags is None:
        raise RuntimeError(why)
    return ["unshare", *flags, "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *argv]


def run_in_loopback_netns(argv: list[str], *, timeout_s: float, cwd: Path | None = None,
                          env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a new network namespace with only ``lo`` up; output captured."""
    return subprocess.run(netns_command(argv), capture_output=True, text=True,
                          timeout=timeout_s, cwd=cwd, env={**os.environ, **(env or {})},
                          check=False)


def interface_addresses() -> list[str]:
    """Every address of every interface of this namespace (``ip -j addr``)."""
    out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True,
                         check=True).stdout
    return [info["local"] for link in json.loads(out) for info in link.get("addr_info", [])]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True, slots=True)
class Served:
    """A running ``talkface serve``: its base URL and the page URL it printed."""

    base_url: str
    page_url: str
    api_key: str


@contextlib.asynccontextmanager
async def talkface_serve(log_path: Path, *, env: dict[str, str] | None = None
                         ) -> AsyncIterator[Served]:
    """``talkface serve`` on 127.0.0.1, as a user runs it; stopped with Ctrl-C at the end."""
    port = free_port()
    talkface = Path(sys.executable).parent / "talkface"
    environment = {**os.environ, "TALKFACE_API_KEYS": API_KEY, **(env or {})}
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            str(talkface), "serve", "--host", "127.0.0.1", "--port", str(port),
            stdout=asyncio.subprocess.PIPE, stderr=log, env=environment)
        assert process.stdout is not None
        # uvicorn's access log goes to stdout: it is read all along, or the pipe fills up
        # and the server blocks.
        page_url: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        reader = asyncio.create_task(_read_output(process.stdout, log, page_url))
        try:
            deadline = time.monotonic() + READY_TIMEOUT_S
            url = await asyncio.wait_for(page_url, READY_TIMEOUT_S)
            base_url = f"http://127.0.0.1:{port}"
            await _wait_ready(base_url, deadline, log_path)
            yield Served(base_url=base_url, page_url=url, api_key=API_KEY)
        finally:
            await _stop(process)
            await reader


async def _read_output(stream: asyncio.StreamReader, log: Any,
                       page_url: asyncio.Future[str]) -> None:
    while line := await stream.readline():
        log.write(line)
        found = _URL_PATTERN.search(line.decode(errors="replace"))
        if found and not page_url.done():
            page_url.set_result(found.group(1))
    if not page_url.done():
        page_url.set_exception(RuntimeError("talkface serve exited before printing its URL"))


async def _wait_ready(base_url: str, deadline: float, log_path: Path) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                response = await client.get("/readyz")
                if response.status_code == 200:
                    return
                if response.json().get("status") == "failed":
                    raise RuntimeError(f"models failed to load: {response.text}")
            await asyncio.sleep(0.3)
    raise RuntimeError(f"talkface serve was not ready in time; see {log_path}")


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        except TimeoutError:
            process.kill()
            await process.wait()


def write_result(path: Path, result: dict[str, Any]) -> None:
    path.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str),
                    encoding="utf-8")
