"""``talkface report``: a chat trace drawn as a latency waterfall (matplotlib)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from talkface.errors import BackendUnavailable, BadInput
from talkface.output.mp4 import check_output_path
from talkface.trace import STAGES

_COLOURS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#eeca3b", "#b279a2")


def read_trace(path: Path) -> list[dict[str, object]]:
    """The turns of a trace file, checked.

    Raises:
        BadInput: missing, not JSON, or not a talkface trace.
    """
    if not path.is_file():
        raise BadInput(f"trace {path} does not exist")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"trace {path} is not JSON: {exc}") from None
    turns = document.get("turns") if isinstance(document, dict) else None
    if not isinstance(turns, list) or not all(
        isinstance(t, dict) and isinstance(t.get("latency_ms"), dict) for t in turns
    ):
        raise BadInput(f"trace {path} is not a talkface trace (expected {{\"turns\": [...]}})")
    if not any(t["latency_ms"] for t in turns):
        raise BadInput(f"trace {path} has no latencies to draw")
    return turns


def draw_waterfall(trace: Path, output: Path) -> None:
    """Draw each turn as a row of stage markers on a shared millisecond axis."""
    turns = read_trace(trace)
    check_output_path(output)
    plt = _pyplot()
    figure = waterfall_figure(turns)
    figure.savefig(output, dpi=120)
    plt.close(figure)


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise BackendUnavailable(
            "drawing reports needs matplotlib; run: pip install matplotlib"
        ) from exc
    return plt


def waterfall_figure(turns: list[dict[str, object]]) -> Any:
    """The waterfall of ``turns`` (as :func:`read_trace` returns them): a matplotlib figure."""
    plt = _pyplot()
    # Constrained layout makes room for the legend under the axes, off the bars.
    figure, axes = plt.subplots(figsize=(10, 1.9 + 0.45 * len(turns)), layout="constrained")
    labels = []
    for row, turn in enumerate(turns):
        latency = {k: float(v) for k, v in turn["latency_ms"].items()}  # type: ignore[union-attr]
        previous = 0.0
        for index, stage in enumerate(STAGES):
            if stage not in latency:
                continue
            value = latency[stage]
            axes.barh(row, max(value - previous, 1.0), left=previous, height=0.6,
                      color=_COLOURS[index % len(_COLOURS)],
                      label=stage if row == 0 else None)
            previous = max(previous, value)
        text = str(turn.get("transcript") or "")[:40]
        labels.append(f"turn {turn.get('turn', row + 1)}: {text}")
    axes.set_yticks(range(len(turns)), labels)
    axes.invert_yaxis()
    axes.set_xlabel("ms after the end of the user's speech (or message)")
    axes.axvline(1000, color="grey", linestyle="--", linewidth=1)
    figure.legend(loc="outside lower center", fontsize="small", ncols=4, frameon=False)
    axes.set_title("talkface: per-turn latency waterfall")
    return figure
