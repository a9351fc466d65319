"""``talkface report``: the waterfall chart of a chat trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from talkface.commands.report import draw_waterfall, read_trace, waterfall_figure

pytestmark = pytest.mark.unit

LATENCIES = [
    {"vad_end": 0.0, "asr_final": 310.0, "llm_first_token": 720.0, "first_sentence": 950.0,
     "first_audio": 1180.0, "first_video_frame": 1260.0, "first_byte": 1290.0},
    {"vad_end": 0.0, "asr_final": 280.0, "llm_first_token": 690.0, "first_sentence": 1020.0,
     "first_audio": 1240.0, "first_video_frame": 1330.0, "first_byte": 1350.0},
]


def write_trace(path: Path) -> Path:
    turns = [{"turn": n + 1, "source": "speech", "transcript": f"question {n + 1}",
              "reply": "an answer", "interrupted": False, "error": None, "latency_ms": latency}
             for n, latency in enumerate(LATENCIES)]
    path.write_text(json.dumps({"turns": turns}), encoding="utf-8")
    return path


def test_the_legend_covers_no_bar(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    figure = waterfall_figure(read_trace(write_trace(tmp_path / "trace.json")))
    try:
        figure.canvas.draw()
        renderer = figure.canvas.get_renderer()
        (axes,) = figure.axes
        legend = axes.get_legend() or figure.legends[0]
        legend_box = legend.get_window_extent(renderer)
        bars = [patch.get_window_extent(renderer) for patch in axes.patches]
        assert len(bars) == sum(len(t) for t in LATENCIES)
        assert not [bar for bar in bars if bar.overlaps(legend_box)]
        # Every stage is still named in it.
        assert [t.get_text() for t in legend.get_texts()] == list(LATENCIES[0])
        # And the whole legend is on the figure.
        figure_box = figure.bbox
        assert figure_box.x0 <= legend_box.x0 and legend_box.x1 <= figure_box.x1
        assert figure_box.y0 <= legend_box.y0 and legend_box.y1 <= figure_box.y1
    finally:
        plt.close(figure)


def test_the_chart_is_written_as_a_png(tmp_path: Path) -> None:
    png = tmp_path / "waterfall.png"
    draw_waterfall(write_trace(tmp_path / "trace.json"), png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
