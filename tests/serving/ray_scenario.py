"""The Ray Serve scenario, run in a loopback-only network namespace (Ray advertises the
host's address otherwise):

    python tests/serving/ray_scenario.py --out DIR

On one local Ray cluster (``ray start --head`` on 127.0.0.1), as an operator would:

1. ``talkface plan`` → the plan's ``serve_config.yaml`` shrunk to this box →
   ``talkface deploy`` → a gateway (``talkface serve --engines ray --ray-address auto``)
   that uses the deployed engines holds a conversation.
2. A gateway that deploys the engines itself, with two LLM replicas, two animator
   replicas and an autoscaling TTS (min 1 / max 2): Serve's status; a spoken question and
   a typed follow-up over WebSocket (the follow-up's prompt cost); ``/v1/audio/speech``;
   a render job; an animator replica killed while the avatar answers (video gaps, the
   turn); a bounded TTS load (scale up, then down); a render worker killed mid-job.

Every step is bounded in time and writes what it saw to ``DIR/result.json``; the test
(tests/serving/test_ray_serving.py) checks it. A step that fails records its error and
the others still run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml
from websockets.asyncio.client import connect

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "api"))

from loopback_netns import talkface_serve, write_result  # noqa: E402
from ws_client import RATE, Session, speak_in_real_time  # noqa: E402

from talkface.audio import pcm16_to_float32, resample  # noqa: E402

EVENT_TIMEOUT_S = 120.0
QUESTION = "What is the capital of France?"
FOLLOW_UP = "And what is it famous for?"
LONG_TEXT = (
    "Welcome to our store. We are open every day from nine in the morning until eight in "
    "the evening. Our staff will be happy to help you find what you need. Thank you for "
    "visiting, and have a wonderful day. "
)
RAY_BIN = Path(sys.executable).parent / "ray"
TALKFACE_BIN = Path(sys.executable).parent / "talkface"

GATEWAY_ENV = {
    # What a deployment for this test looks like: replicas to kill and to route between,
    # a stage that autoscales quickly, health checks often enough to notice a death.
    "TALKFACE_SERVING__RAY_ADDRESS": "auto",
    "TALKFACE_SERVING__ENGINES": "ray",
    "TALKFACE_SERVING__LLM__MIN_REPLICAS": "2",
    "TALKFACE_SERVING__LLM__MAX_REPLICAS": "2",
    "TALKFACE_SERVING__ANIMATOR__MIN_REPLICAS": "2",
    "TALKFACE_SERVING__ANIMATOR__MAX_REPLICAS": "2",
    "TALKFACE_SERVING__TTS__MIN_REPLICAS": "1",
    "TALKFACE_SERVING__TTS__MAX_REPLICAS": "2",
    "TALKFACE_SERVING__TTS__TARGET_ONGOING_REQUESTS": "1",
    "TALKFACE_SERVING__TTS__UPSCALE_DELAY_S": "1",
    "TALKFACE_SERVING__TTS__DOWNSCALE_DELAY_S": "5",
    "TALKFACE_SERVING__ANIMATOR__HEALTH_CHECK_PERIOD_S": "1",
    "TALKFACE_SERVING__RENDERER__HEALTH_CHECK_PERIOD_S": "1",
    "TALKFACE_ANIMATOR__SIZE_PX": "256",
}


# --- the WebSocket client -----------------------------------------------------------------

async def ask(live: Session, text: str) -> dict[str, Any]:
    """Type ``text``; returns the turn's ``turn_end`` event."""
    answered = len(live.of("turn_end"))
    await live.send({"type": "text", "text": text})
    return await live.wait_for(lambda e: e["type"] == "turn_end", count=answered + 1,
                               timeout_s=EVENT_TIMEOUT_S)


@contextlib.asynccontextmanager
async def live_session(base_url: str, api_key: str) -> AsyncIterator[Session]:
    async with httpx.AsyncClient(base_url=base_url, timeout=60.0,
                                 headers={"Authorization": f"Bearer {api_key}"}) as http:
        token = (await http.post("/v1/tokens")).raise_for_status().json()["token"]
    url = base_url.replace("http://", "ws://") + f"/v1/sessions/ws?token={token}"
    async with connect(url, max_size=None) as ws:
        live = Session(ws)
        reader = asyncio.create_task(live.read())
        try:
            await live.send({"type": "hello", "sample_rate_hz": RATE, "output": "jpeg"})
            await live.wait_for(lambda e: e["type"] == "ready", timeout_s=60)
            yield live
        finally:
            await ws.close()
            await reader


def spoken(text: str) -> np.ndarray:
    """``text`` spoken by the piper voice, 16 kHz float32, with silence either side."""
    from talkface.tts.base import SynthesisRequest, TTSSettings
    from talkface.tts.piper import PiperTTS
    from talkface.tts.voices import resolve_voice

    settings = TTSSettings()
    tts = PiperTTS.load(settings, resolve_voice("joe", "en", settings))
    speech = tts.synthesize(SynthesisRequest(text=text, voice=tts.voice))
    audio = resample(pcm16_to_float32(speech.pcm), speech.sample_rate_hz, RATE)
    pad = np.zeros(RATE // 5, np.float32)
    return np.concatenate([pad, audio.astype(np.float32), pad])


# --- Ray, from this process ---------------------------------------------------------------

def ray_cluster_up(log: Path) -> None:
    subprocess.run([str(RAY_BIN), "start", "--head", "--num-cpus", "8",
                    "--node-ip-address", "127.0.0.1", "--include-dashboard", "false",
                    "--disable-usage-stats"], check=True, timeout=180,
                   stdout=log.open("ab"), stderr=subprocess.STDOUT)


def ray_cluster_down(log: Path) -> None:
    subprocess.run([str(RAY_BIN), "stop", "--force"], timeout=120, check=False,
                   stdout=log.open("ab"), stderr=subprocess.STDOUT)


def serve_status() -> dict[str, Any]:
    from talkface.serving import _ray

    apps = _ray.running_applications()
    return {name: {"status": app.status,
                   "deployments": {d: {"status": s.status,
                                       "running": s.replica_states.get("RUNNING", 0)}
                                   for d, s in app.deployments.items()}}
            for name, app in apps.items()}


def running_replicas(deployment: str) -> int:
    status = serve_status().get("talkface", {}).get("deployments", {})
    return status.get(deployment, {}).get("running", 0)


async def until(predicate: Callable[[], bool], timeout_s: float, every_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await asyncio.to_thread(predicate):
            return True
        await asyncio.sleep(every_s)
    return False


# --- the steps ----------------------------------------------------------------------------

async def step(result: dict[str, Any], name: str, run: Callable[[], Awaitable[Any]]) -> None:
    started = time.monotonic()
    try:
        result[name] = await run()
    except BaseException as exc:  # recorded for the test; the next steps still run
        result[name] = {"error": f"{type(exc).__name__}: {exc}",
                        "traceback": traceback.format_exc()}
        if isinstance(exc, KeyboardInterrupt):
            raise
    result.setdefault("seconds", {})[name] = round(time.monotonic() - started, 1)


async def planner_config_deployed(out: Path) -> dict[str, Any]:
    """`talkface plan` → shrunk to this box → `talkface deploy` → a conversation."""
    from talkface.planner.serve_config import scale_to_box

    plan_dir = out / "plan"
    await asyncio.to_thread(
        subprocess.run, [str(TALKFACE_BIN), "plan", "--preset", "published", "--sessions", "100",
                         "--no-simulate", "-o", str(plan_dir)], check=True, timeout=300,
        capture_output=True)
    config = yaml.safe_load((plan_dir / "serve_config.yaml").read_text())
    box = out / "plan_box"
    box.mkdir(exist_ok=True)
    (box / "serve_config.yaml").write_text(yaml.safe_dump(scale_to_box(config, cpus=6)))
    deployed = await asyncio.to_thread(
        subprocess.run,
        [str(TALKFACE_BIN), "deploy", str(box), "--ray-address", "auto", "--timeout-s", "600"],
        capture_output=True, text=True, timeout=700)
    result: dict[str, Any] = {"deploy_rc": deployed.returncode,
                              "deploy_out": deployed.stdout[-3000:] + deployed.stderr[-3000:],
                              "status": serve_status()}
    if deployed.returncode != 0:
        return result
    env = {"TALKFACE_SERVING__ENGINES": "ray", "TALKFACE_SERVING__RAY_ADDRESS": "auto",
           "TALKFACE_ANIMATOR__SIZE_PX": "256"}
    async with talkface_serve(out / "gateway_deployed.log", env=env) as served:
        async with live_session(served.base_url, served.api_key) as live:
            end = await ask(live, "Hello! Who are you?")
            result["reply"] = live.reply(end["turn_id"])
            result["turn_end"] = end
            result["frames"] = len(live.frame_times)
    return result


async def gateway_checks(out: Path, result: dict[str, Any]) -> None:
    from talkface.config import load_settings
    from talkface.llm.llama_cpp import LlamaCppLLM
    from talkface.serving import _ray

    vocabulary = LlamaCppLLM.load_vocabulary(load_settings().llm)
    question = spoken(QUESTION)
    async with talkface_serve(out / "gateway.log", env=GATEWAY_ENV) as served:
        headers = {"Authorization": f"Bearer {served.api_key}"}
        http = httpx.AsyncClient(base_url=served.base_url, headers=headers, timeout=180.0)

        async def status() -> dict[str, Any]:
            return await asyncio.to_thread(serve_status)

        await step(result, "status", status)

        async def conversation() -> dict[str, Any]:
            async with live_session(served.base_url, served.api_key) as live:
                await speak_in_real_time(live, question, until=lambda: bool(live.of("turn_end")),
                                         max_s=EVENT_TIMEOUT_S)
                first = await live.wait_for(lambda e: e["type"] == "latency")
                second_end = await ask(live, FOLLOW_UP)
                second = await live.wait_for(lambda e: e["type"] == "latency", count=2)
            transcripts = [e["text"] for e in live.of("transcript") if e["final"]]
            return {
                "transcripts": transcripts,
                "first": first, "second": second,
                "replies": [live.reply(first["turn_id"]), live.reply(second_end["turn_id"])],
                "follow_up_tokens": vocabulary.count_tokens(FOLLOW_UP),
                "frames": len(live.frame_times),
                "turn_ends": live.of("turn_end"),
            }

        await step(result, "conversation", conversation)

        async def speech() -> dict[str, Any]:
            response = await http.post("/v1/audio/speech", json={
                "model": "tts-1", "input": "Hello from the speech deployment.", "voice": "alloy",
                "response_format": "wav"})
            return {"status": response.status_code, "bytes": len(response.content),
                    "riff": response.content[:4].decode(errors="replace")}

        await step(result, "speech", speech)

        async def render(kill_worker: bool) -> dict[str, Any]:
            text = LONG_TEXT * (3 if kill_worker else 1)
            job = (await http.post("/v1/renders", json={"text": text})).raise_for_status().json()
            seen: list[tuple[str, float]] = []
            killed: list[str] = []
            deadline = time.monotonic() + 400
            while time.monotonic() < deadline:
                job = (await http.get(f"/v1/renders/{job['id']}")).json()
                seen.append((job["status"], job.get("progress", 0.0)))
                if job["status"] in ("done", "failed", "cancelled"):
                    break
                if (kill_worker and not killed and job["status"] == "running"
                        and job.get("progress", 0) > 0.05):
                    names = await asyncio.to_thread(_ray.replica_actor_names, "talkface",
                                                    "Renderer")
                    await asyncio.to_thread(_ray.kill_actor, names[0])
                    killed.append(names[0])
                await asyncio.sleep(0.5)
            video = await http.get(f"/v1/renders/{job['id']}/video")
            replaced = await until(lambda: running_replicas("Renderer") >= 1, 60)
            return {"job": job, "killed": killed, "progress_seen": seen[-40:],
                    "video_status": video.status_code, "video_bytes": len(video.content),
                    "worker_replaced": replaced,
                    "renderers": await asyncio.to_thread(_ray.replica_actor_names, "talkface",
                                                         "Renderer")}

        await step(result, "render", lambda: render(False))

        async def kill_animator() -> dict[str, Any]:
            before = await asyncio.to_thread(_ray.replica_actor_names, "talkface", "Animator")
            async with live_session(served.base_url, served.api_key) as live:
                await asyncio.sleep(2.0)  # idle video flowing
                answered = len(live.of("turn_end"))
                await live.send({"type": "text", "text": "Please tell me a short story about "
                                 "a brave little robot."})
                await live.wait_for(lambda e: e["type"] == "speaking")
                await asyncio.sleep(0.3)
                killed_at = time.monotonic()
                await asyncio.to_thread(_ray.kill_actor, before[0])
                end = await live.wait_for(lambda e: e["type"] == "turn_end", count=answered + 1)
                await asyncio.sleep(2.0)  # idle video again after the answer
                times = [t for t in live.frame_times if t >= killed_at - 1.0]
            gaps = np.diff(times) if len(times) > 1 else np.array([np.inf])
            restored = await until(lambda: running_replicas("Animator") >= 2, 120)
            return {"killed": before[0], "replicas_before": before,
                    "max_gap_s": float(gaps.max()), "frames_after_kill": len(times),
                    "turn_end": end, "reply": live.reply(end["turn_id"]),
                    "errors": live.of("error"), "replica_restored": restored,
                    "replicas_after": await asyncio.to_thread(
                        _ray.replica_actor_names, "talkface", "Animator")}

        await step(result, "kill_animator", kill_animator)

        async def autoscale() -> dict[str, Any]:
            initial = await asyncio.to_thread(running_replicas, "TTS")
            stop = asyncio.Event()
            sent = 0

            async def talker() -> None:
                nonlocal sent
                while not stop.is_set():
                    await http.post("/v1/audio/speech", json={
                        "model": "tts-1", "input": LONG_TEXT, "voice": "alloy",
                        "response_format": "pcm"})
                    sent += 1

            load_started = time.monotonic()
            talkers = [asyncio.create_task(talker()) for _ in range(4)]
            scaled_up = await until(lambda: running_replicas("TTS") >= 2, 120, every_s=1.0)
            up_s = time.monotonic() - load_started
            stop.set()
            await asyncio.gather(*talkers, return_exceptions=True)
            idle_started = time.monotonic()
            scaled_down = await until(lambda: running_replicas("TTS") <= 1, 180, every_s=1.0)
            metrics = (await http.get("/metrics")).text
            return {"initial": initial, "scaled_up": scaled_up, "up_after_s": round(up_s, 1),
                    "scaled_down": scaled_down,
                    "down_after_s": round(time.monotonic() - idle_started, 1),
                    "requests": sent,
                    "metrics_replicas": [line for line in metrics.splitlines()
                                         if line.startswith("talkface_stage_replicas")]}

        await step(result, "autoscale", autoscale)
        await step(result, "render_kill", lambda: render(True))
        await http.aclose()


async def main(out: Path, *, skip_plan: bool = False) -> None:
    result: dict[str, Any] = {}
    log = out / "ray.log"
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray_cluster_up(log)
    try:
        import ray

        ray.init(address="auto", namespace="serve", log_to_driver=False,
                 configure_logging=False)
        if not skip_plan:
            await step(result, "deployed_plan", lambda: planner_config_deployed(out))
            from ray import serve

            await asyncio.to_thread(serve.delete, "talkface")
        await gateway_checks(out, result)
    finally:
        write_result(out / "result.json", result)
        ray_cluster_down(log)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--skip-plan", action="store_true",
                        help="only the gateway checks (quicker, while developing)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.out / "plan", ignore_errors=True)
    asyncio.run(main(args.out, skip_plan=args.skip_plan))
