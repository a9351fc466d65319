"""Draw the code's rooms and one turn's path, for docs/architecture.md.

    .venv/bin/python scripts/draw_architecture.py

Writes docs/images/architecture.png: the entry points (commands, the HTTP/WebSocket/WebRTC
server), the services and turn runners that use the engines, the two hosts of the
engines (in-process, Ray Serve), and the stage packages behind them.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt
from _drawing import arrow, box

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "images" / "architecture.png"

ENTRY, TURN, HOST, STAGE, SHARED = "#ffffff", "#dbeafe", "#fef3c7", "#dcfce7", "#f1f5f9"


def draw(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(14, 9.8))
    ax.set_xlim(0, 14)
    ax.set_ylim(-0.4, 9.4)
    ax.axis("off")

    box(ax, 0.2, 7.7, 4.2, 1.4, "commands/ + cli.py",
        "say, chat, serve, deploy,\nplan, bench, report, voices", ENTRY)
    box(ax, 4.9, 7.7, 4.2, 1.4, "api/  (transport only)",
        "HTTP routes, auth, limits, metrics\nWebSocket + WebRTC sessions (realtime/)", ENTRY)
    box(ax, 9.6, 7.7, 4.2, 1.4, "web/", "the browser client:\nWebRTC, WebSocket + MSE fallback",
        ENTRY)

    box(ax, 0.2, 5.0, 3.1, 2.1, "session.py", "Session.say: a turn\nwithout the LLM\n(say, renders,"
        "\n/v1/audio/speech)", TURN)
    box(ax, 3.6, 5.0, 3.4, 2.1, "conversation/", "live turns: hearing (VAD,\nstreaming ASR), "
        "turn-taking,\nspeculation, barge-in", TURN)
    box(ax, 7.3, 5.0, 3.1, 2.1, "services/", "render jobs + durable\nstore, speech, chat,\n"
        "quotas (no FastAPI)", TURN)
    box(ax, 10.7, 5.0, 3.1, 2.1, "pipeline/ + output/", "reply → sentences → speech\n→ frames; "
        "timeline, queues,\nMP4 / fMP4", TURN)

    box(ax, 1.0, 2.55, 5.4, 1.85, "runtime.py + engines.py  (host 1)",
        "in-process: one loaded model per stage,\na micro-batcher (max_batch_size,\n"
        "max_wait_ms), bounded queue, live first", HOST)
    box(ax, 7.6, 2.55, 5.4, 1.85, "serving/  (host 2, the only Ray import)",
        "RayRuntime: the same engine interface;\nrequests go to one Serve deployment per\n"
        "stage (@serve.batch, autoscaling, pools)", HOST)

    stages = [("vad/", "silero"), ("asr/", "faster-whisper"), ("llm/", "llama.cpp,\nOpenAI HTTP"),
              ("tts/", "piper, zh-baker,\nespeak-ng"), ("face/", "landmark warp\nanimator")]
    for i, (name, body) in enumerate(stages):
        box(ax, 0.4 + i * 2.75, 0.2, 2.45, 1.55, name, body, STAGE)
    ax.text(3.9, 2.1, "one package per stage: base.py (ABC, settings) + one module per backend"
            " + registry.py", ha="center", fontsize=8.5, color="#334155", style="italic")

    arrow(ax, (2.3, 7.7), (2.3, 7.1))
    arrow(ax, (7.0, 7.7), (7.0, 7.1))
    arrow(ax, (9.6, 8.4), (9.1, 8.4), style="<|-|>")
    arrow(ax, (7.0, 7.7), (5.3, 7.1))
    arrow(ax, (7.0, 7.7), (8.8, 7.1))
    for x in (1.75, 5.3, 8.85):
        arrow(ax, (x, 5.0), (x if x < 7 else 9.5, 4.4), style="-|>")
    arrow(ax, (12.2, 5.0), (10.5, 4.4))
    arrow(ax, (6.4, 3.5), (7.6, 3.5), "same interface", style="<|-|>", dashed=True)
    arrow(ax, (3.7, 2.55), (3.7, 1.75))
    arrow(ax, (10.3, 2.55), (10.3, 1.75))
    ax.text(10.45, 2.2, "deployments wrap the same backends", fontsize=8.5, color="#334155",
            style="italic", va="center")
    ax.text(7.0, 9.25, "talkface: rooms and the way through them", ha="center", fontsize=13,
            fontweight="bold", color="#0f172a")
    ax.text(7.0, -0.2, "shared by all: messages.py (typed, frozen), errors.py, config.py, "
            "text/ (normalise, sentences, policy), clock.py, trace.py", fontsize=8.8,
            color="#334155", ha="center")

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=105, bbox_inches="tight", facecolor="white")
    plt.close(fig)


def main() -> None:
    draw(OUTPUT)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
