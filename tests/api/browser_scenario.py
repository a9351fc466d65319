"""The browser scenario, run inside a loopback-only network namespace by the browser test.

    python tests/api/browser_scenario.py --wav question.wav --out DIR

``talkface serve`` starts as a user would run it; Chromium (Debian's, driven by
Playwright, never downloaded) opens the page URL the server printed, with a fake
microphone that plays ``question.wav``. The page connects over WebRTC, the question is
spoken and answered; then a typed question; then malformed data-channel messages, after
which the session must still answer. Then what a user is told when things go wrong (a
busy server, no token, a forged token, a refused microphone). What the pages saw goes to
``DIR/result.json``, a screenshot (the avatar speaking) to ``DIR/browser.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from loopback_netns import interface_addresses, talkface_serve, write_result

CHROMIUM = "/usr/bin/chromium"
TURN_TIMEOUT_MS = 90_000
TYPED_QUESTION = "Hello, who are you?"
# One session at a time, so that a second page meets a busy server.
SERVER_ENV = {"TALKFACE_SERVER__LIMITS__MAX_SESSIONS": "1"}


def chromium_args(wav: Path) -> list[str]:
    """Headless, no GPU, no background traffic, loopback ICE, a fake mic playing ``wav``."""
    return [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--allow-loopback-in-peer-connection",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}%noloop",
        "--autoplay-policy=no-user-gesture-required",
    ]


SNAPSHOT_JS = """async () => {
  const t = window.talkface;
  const turns = Object.fromEntries(Object.entries(t.turns).map(([id, x]) => [id, {
    transcript: x.transcript, reply: x.reply, latency: x.latency, interrupted: x.interrupted,
    speakingAt: x.speakingAt, shownAt: x.shownAt}]));
  const stats = {};
  if (t.pc) {
    for (const r of (await t.pc.getStats()).values()) {
      if (r.type === "inbound-rtp") stats[r.kind] = {
        packets: r.packetsReceived, framesDecoded: r.framesDecoded, width: r.frameWidth,
        height: r.frameHeight, audioEnergy: r.totalAudioEnergy,
        samples: r.totalSamplesReceived};
    }
  }
  const video = document.getElementById("avatar");
  return {status: t.status, sessionId: t.sessionId, turns, stats,
          events: t.events.filter(e => e.type !== "reply_delta" && e.type !== "pong"),
          errors: t.errors, framesShown: t.framesShown, clockOffsetMs: t.clockOffsetMs,
          video: {width: video.videoWidth, height: video.videoHeight, paused: video.paused,
                  time: video.currentTime},
          candidates: await t.selectedCandidates(),
          notice: document.getElementById("notice").hidden ? null :
            document.getElementById("notice").textContent};
}"""


async def run(wav: Path, out: Path) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    result: dict[str, Any] = {"interfaces": interface_addresses(), "console": []}
    async with talkface_serve(out / "server.log", env=SERVER_ENV) as served, \
            async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                   args=chromium_args(wav))
        page = None
        try:
            page = await browser.new_page(viewport={"width": 1180, "height": 860})
            page.on("console", lambda message: result["console"].append(message.text))
            page.on("pageerror", lambda error: result["console"].append(f"pageerror: {error}"))
            await page.goto(served.page_url)
            await page.click("#start")
            # 1. The spoken question: heard, answered, shown, timed.
            await page.wait_for_function(
                "() => Object.values(window.talkface.turns).some(t => t.latency && t.transcript)",
                timeout=TURN_TIMEOUT_MS)
            result["spoken"] = await page.evaluate(SNAPSHOT_JS)
            # 2. A typed question, with a screenshot while the avatar says the answer.
            spoken_turns = len(result["spoken"]["turns"])
            await page.fill("#text", TYPED_QUESTION)
            await page.press("#text", "Enter")
            await page.wait_for_function(
                f"() => Object.keys(window.talkface.turns).length > {spoken_turns} && "
                "window.talkface.status === 'speaking'", timeout=TURN_TIMEOUT_MS)
            await page.wait_for_timeout(900)
            await page.screenshot(path=str(out / "browser.png"))
            await page.wait_for_function(
                f"() => Object.values(window.talkface.turns).filter(t => t.latency).length > "
                f"{spoken_turns}", timeout=TURN_TIMEOUT_MS)
            result["typed"] = await page.evaluate(SNAPSHOT_JS)
            # 3. Malformed messages on the data channel: errors, and the session goes on.
            await page.evaluate("""() => {
              const c = window.talkface.channel;
              c.send("{not json");
              c.send(JSON.stringify({type: "dance", v: 1}));
              c.send(JSON.stringify({type: "text", v: 1, text: "x".repeat(5000)}));
              c.send(JSON.stringify({type: "text", v: 7, text: "hello"}));
            }""")
            await page.wait_for_function("() => window.talkface.errors.length >= 4",
                                         timeout=20_000)
            answered = len([t for t in result["typed"]["turns"].values() if t["latency"]])
            await page.evaluate("() => window.talkface.channel.send(JSON.stringify("
                                "{type: 'text', v: 1, text: 'Please say hello.'}))")
            await page.wait_for_function(
                f"() => Object.values(window.talkface.turns).filter(t => t.latency).length > "
                f"{answered}", timeout=TURN_TIMEOUT_MS)
            result["after_errors"] = await page.evaluate(SNAPSHOT_JS)
            # 4. What a user is told when things go wrong (the server takes one session).
            result["notices"] = await notices(browser, served.base_url, served.page_url)
            await page.click("#hangup")
            await page.wait_for_function("() => window.talkface.status === 'ended'")
            result["ended"] = await page.evaluate(SNAPSHOT_JS)
            # 5. Microphone denied: the page says so, and typing still works.
            result["mic_denied"] = await without_microphone(playwright, served.page_url)
        except Exception as exc:
            result["failure"] = f"{type(exc).__name__}: {exc}"
            if page is not None:
                result["last"] = await page.evaluate(SNAPSHOT_JS)
                await page.screenshot(path=str(out / "failure.png"))
        finally:
            await browser.close()
    return result


async def notices(browser: Any, base_url: str, page_url: str) -> dict[str, Any]:
    """The notice each broken start shows: server busy, no token, a forged token."""
    seen = {}
    for name, url, start in (("busy", page_url, True), ("no_token", base_url + "/", False),
                             ("bad_token", base_url + "/?token=tft1.e30.forged", False)):
        context = await browser.new_context()
        try:
            page = await context.new_page()
            await page.goto(url)
            if start:
                await page.click("#start")
            await page.wait_for_selector("#notice:not([hidden])", timeout=30_000)
            seen[name] = {"notice": await page.text_content("#notice"),
                          "start_enabled": await page.is_enabled("#start")}
        finally:
            await context.close()
    return seen


async def without_microphone(playwright: Any, page_url: str) -> dict[str, Any]:
    """A browser that refuses the microphone (no fake permission UI: headless denies)."""
    args = [a for a in chromium_args(Path("/dev/null")) if "fake-ui" not in a
            and "fake-audio" not in a]
    browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
    try:
        page = await browser.new_page()
        await page.goto(page_url)
        await page.click("#start")
        try:
            await page.wait_for_function(
                "() => window.talkface.channel?.readyState === 'open'", timeout=TURN_TIMEOUT_MS)
        except Exception as exc:
            seen = await page.evaluate(
                "() => ({status: window.talkface.status, transport: window.talkface.transportName,"
                " fallback: window.talkface.fallbackReason, notice: document.getElementById("
                "'notice').textContent})")
            raise RuntimeError(f"without a microphone the page did not connect: {seen}") from exc
        await page.fill("#text", TYPED_QUESTION)
        await page.press("#text", "Enter")
        await page.wait_for_function(
            "() => Object.values(window.talkface.turns).some(t => t.latency)",
            timeout=TURN_TIMEOUT_MS)
        return await page.evaluate(SNAPSHOT_JS)
    finally:
        await browser.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--wav", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    result = asyncio.run(run(args.wav.resolve(), args.out.resolve()))
    write_result(args.out / "result.json", result)


if __name__ == "__main__":
    main()
