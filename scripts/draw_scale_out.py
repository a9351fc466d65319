"""Draw the scale-out picture that docs/scale-out.md shows.

    .venv/bin/python scripts/draw_scale_out.py

Writes docs/images/scale_out.png: gateways on a CPU pool, one Ray Serve deployment per
engine on its own pool, the render worker on spot capacity, the shared storage and the
durable job store. Boxes and arrows only (matplotlib); no numbers, which belong to a plan.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import matplotlib.pyplot as plt
from _drawing import arrow, box

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "images" / "scale_out.png"

GATEWAY, ENGINE, SPOT, STORE, RAY = "#dbeafe", "#dcfce7", "#fef3c7", "#f3e8ff", "#f1f5f9"


def draw(path: Path) -> None:
    fig, ax = plt.subplots(figsize=(14, 8.2))
    ax.set_xlim(0, 14)
    ax.set_ylim(0, 8.2)
    ax.axis("off")

    box(ax, 0.1, 4.35, 2.1, 1.3, "clients", "browser\n(WebRTC / WebSocket)\nHTTP API", "#ffffff")
    box(ax, 2.6, 4.35, 1.9, 1.3, "load balancer", "sticky: a session\nlives in one gateway",
        "#ffffff")
    box(ax, 5.0, 3.6, 3.0, 2.8, "gateways  (CPU pool)",
        "talkface serve --engines ray\n--ray-address auto\n\nsessions, VAD, turn-taking\n"
        "WebRTC / WebSocket\nvideo encoding, jobs API\nauth, rate limits", GATEWAY)
    box(ax, 5.0, 6.85, 3.0, 1.15, "Ray head", "GCS, Serve controller,\nautoscaler (no workloads)",
        RAY)

    engines = [
        ("ASR", "T4 / A10 pool, batched", ENGINE),
        ("LLM", "A100 / H100 pool\nor an external vLLM (OpenAI API)", ENGINE),
        ("TTS", "A10 pool, batched, voices", ENGINE),
        ("Animator", "A40 pool, batched frames\nshipped: CPU landmark warp\n"
         "(Wav2Lip is not shipped)", ENGINE),
        ("Renderer", "render jobs, spot pool;\ncalls TTS and Animator", SPOT),
    ]
    heights = [0.95, 1.2, 0.95, 1.4, 1.2]
    top, gap, x, w = 7.95, 0.2, 10.2, 3.5
    centers = []
    for (title, body, color), h in zip(engines, heights, strict=True):
        box(ax, x, top - h, w, h, title, body, color)
        centers.append(top - h / 2)
        top -= h + gap
    ax.text(x + w / 2, 8.12, "Ray Serve deployments (one pool each)", ha="center",
            fontsize=10.5, fontweight="bold", color="#0f172a")

    box(ax, 5.0, 0.3, 3.0, 2.3, "shared storage", "avatars, assembled models\n"
        "(TALKFACE_CACHE_DIR)\nrender outputs + durable job\nstore (server.data_dir)\n"
        "one volume every node mounts", STORE)

    arrow(ax, (2.1, 5.0), (2.6, 5.0))
    arrow(ax, (4.5, 5.0), (5.0, 5.0))
    for c, start_y in zip(centers[:4], (6.1, 5.5, 4.9, 4.3), strict=True):
        arrow(ax, (8.0, start_y), (10.2, c), style="<|-|>")
    ax.text(9.0, 7.05, "DeploymentHandle\ncalls", ha="center", fontsize=8.5,
            color="#334155", style="italic")
    arrow(ax, (8.0, 3.8), (10.2, centers[4]), "render jobs")
    arrow(ax, (6.5, 6.4), (6.5, 6.85), style="-", dashed=True)
    ax.text(6.6, 6.55, "joins as a Ray node", ha="left", va="center", fontsize=8.5,
            color="#334155", style="italic")
    arrow(ax, (6.5, 3.6), (6.5, 2.6), style="<|-|>")
    ax.text(6.6, 3.1, "read / write", ha="left", va="center", fontsize=8.5,
            color="#334155", style="italic")
    arrow(ax, (10.2, centers[4] - 0.45), (8.0, 1.6), "video files", style="-|>")
    ax.text(11.95, 0.55, "the plan picks each pool's GPU kind and size\n"
            "(talkface plan → serve_config.yaml, rayservice.yaml)", ha="center",
            fontsize=8.5, color="#475569")

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight", facecolor="white")
    plt.close(fig)


def main() -> None:
    draw(OUTPUT)
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
