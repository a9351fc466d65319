"""The plan report's charts say what they mean (matplotlib reads "$...$" as math)."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib import cbook

from talkface.planner import PlanOptions, Profile, charts, make_plan

pytestmark = pytest.mark.unit


def test_the_cost_title_shows_dollars_not_mathtext(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    plan = make_plan(Profile.from_published(), sessions=100, options=PlanOptions(simulate=False))
    drawn = []
    save = charts._save
    monkeypatch.setattr(charts, "_save", lambda fig, path: drawn.append(fig) or save(fig, path))
    charts.cost_chart(plan, tmp_path / "cost.png")
    title = drawn[0].axes[0].get_title()
    assert not cbook.is_math_text(title), title
    shown = title.replace("\\$", "$")
    assert shown.startswith(f"Cost: ${plan.cost_peak_usd_per_h:,.2f}/h at the peak, ")
    assert shown.endswith(f"${plan.cost_per_session_hour_usd:.3f} per session-hour")
    assert (tmp_path / "cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
