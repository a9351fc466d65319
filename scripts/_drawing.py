"""Boxes and arrows for the docs' diagrams (matplotlib, files only)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch


def box(ax: plt.Axes, x: float, y: float, w: float, h: float, title: str, body: str,
        color: str) -> None:
    """A rounded box with a bold title and smaller lines under it; (x, y) is its corner."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12",
                                facecolor=color, edgecolor="#334155", linewidth=1.2))
    ax.text(x + w / 2, y + h - 0.22, title, ha="center", va="top", fontsize=11.5,
            fontweight="bold", color="#0f172a")
    ax.text(x + w / 2, y + h - 0.58, body, ha="center", va="top", fontsize=9,
            color="#1e293b", linespacing=1.35)


def arrow(ax: plt.Axes, start: tuple[float, float], end: tuple[float, float],
          label: str = "", style: str = "-|>", dashed: bool = False) -> None:
    """An arrow from ``start`` to ``end``, with an italic label above its middle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=14,
                                 linewidth=1.3, color="#475569",
                                 linestyle="--" if dashed else "-"))
    if label:
        mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
        ax.text(mx, my + 0.12, label, ha="center", va="bottom", fontsize=8.5,
                color="#334155", style="italic")
