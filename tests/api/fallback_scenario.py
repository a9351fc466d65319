"""The browser client's WebSocket fallback, run inside a loopback-only network namespace.

    python tests/api/fallback_scenario.py --wav question.wav --out DIR

As ``browser_scenario.py`` (``talkface serve``, Debian's Chromium driven by Playwright, a
fake microphone playing ``question.wav``), but WebRTC cannot connect: Chromium runs with
``--webrtc-ip-handling-policy=disable_non_proxied_udp``, so with no proxy it gathers no
ICE candidate at all, as where UDP is blocked. The page must say so and play the avatar
over the WebSocket (fMP4 through Media Source Extensions): the spoken question is answered,
then a typed one, which is interrupted. Then a page where ``RTCPeerConnection`` does not
exist at all falls back at once. What the pages saw goes to ``DIR/result.json``, a
screenshot of the avatar answering to ``DIR/fallback.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from browser_scenario import CHROMIUM, SNAPSHOT_JS, TURN_TIMEOUT_MS, chromium_args
from loopback_netns import interface_addresses, talkface_serve, write_result

BLOCK_WEBRTC = "--webrtc-ip-handling-policy=disable_non_proxied_udp"
LONG_QUESTION = "Please tell me a long story about the sea."

MEDIA_JS = """() => {
  const t = window.talkface;
  const video = document.getElementById("avatar");
  const note = document.getElementById("transport-note");
  const quality = video.getVideoPlaybackQuality();
  const player = t.transport?.player;
  return {transportName: t.transportName, fallbackReason: t.fallbackReason,
          transportNote: note.hidden ? null : note.textContent,
          time: video.currentTime, paused: video.paused, width: video.videoWidth,
          totalVideoFrames: quality.totalVideoFrames,
          droppedVideoFrames: quality.droppedVideoFrames,
          audioDecodedBytes: video.webkitAudioDecodedByteCount,
          player: player ? {bufferedSpanS: player.bufferedSpanS(), ...player.stats} : null};
}"""


async def snapshot(page: Any) -> dict[str, Any]:
    return {**await page.evaluate(SNAPSHOT_JS), "media": await page.evaluate(MEDIA_JS)}


async def run(wav: Path, out: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    result: dict[str, Any] = {"interfaces": interface_addresses(), "console": []}
    async with talkface_serve(out / "server.log") as served, async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*chromium_args(wav), BLOCK_WEBRTC])
        page = None
        try:
            page = await browser.new_page(viewport={"width": 1180, "height": 860})
            page.on("console", lambda message: result["console"].append(message.text))
            page.on("pageerror", lambda error: result["console"].append(f"pageerror: {error}"))
            await page.goto(served.page_url)
            await page.click("#start")
            # 1. WebRTC gives up, the WebSocket takes over.
            await page.wait_for_function(
                "() => window.talkface.transportName === 'websocket'", timeout=TURN_TIMEOUT_MS)
            result["connected"] = await snapshot(page)
            # 2. The spoken question: the video plays on while the avatar answers.
            await page.wait_for_function("() => window.talkface.status === 'speaking'",
                                         timeout=TURN_TIMEOUT_MS)
            result["speaking"] = await snapshot(page)
            await page.wait_for_function(
                "() => Object.values(window.talkface.turns).some(t => t.latency && t.transcript)",
                timeout=TURN_TIMEOUT_MS)
            result["spoken"] = await snapshot(page)
            # 3. A typed question, a screenshot while the avatar answers, then Interrupt.
            turns = len(result["spoken"]["turns"])
            await page.fill("#text", LONG_QUESTION)
            await page.press("#text", "Enter")
            await page.wait_for_function(
                f"() => Object.keys(window.talkface.turns).length > {turns} && "
                "window.talkface.status === 'speaking'", timeout=TURN_TIMEOUT_MS)
            await page.wait_for_timeout(1500)
            await page.screenshot(path=str(out / "fallback.png"))
            result["typed_speaking"] = await snapshot(page)
            await page.click("#interrupt")
            await page.wait_for_function(
                "() => window.talkface.events.some(e => e.type === 'turn_end' && e.interrupted)",
                timeout=TURN_TIMEOUT_MS)
            result["interrupted"] = await snapshot(page)
            await page.click("#hangup")
            await page.wait_for_function("() => window.talkface.status === 'ended'")
            # 4. A browser without WebRTC at all.
            result["no_webrtc"] = await without_webrtc(browser, served.page_url)
        except Exception as exc:
            result["failure"] = f"{type(exc).__name__}: {exc}"
            if page is not None:
                result["last"] = await snapshot(page)
                await page.screenshot(path=str(out / "failure.png"))
        finally:
            await browser.close()
    return result


async def without_webrtc(browser: Any, page_url: str) -> dict[str, Any]:
    """A page where ``RTCPeerConnection`` is undefined: it goes straight to the WebSocket."""
    context = await browser.new_context()
    try:
        await context.add_init_script("delete window.RTCPeerConnection;")
        page = await context.new_page()
        await page.goto(page_url)
        await page.click("#start")
        await page.wait_for_function(
            "() => window.talkface.transportName === 'websocket' && "
            "window.talkface.status === 'listening'", timeout=TURN_TIMEOUT_MS)
        seen = await snapshot(page)
        await page.click("#hangup")
        return seen
    finally:
        await context.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wav", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = asyncio.run(run(args.wav.resolve(), args.out.resolve()))
    write_result(args.out / "result.json", result)


if __name__ == "__main__":
    main()
