"""The degradation ladder in the simulator: the server's own ladder, fed simulated
signals, steps down past capacity (and the slowest first frames come sooner), and
stays at level 0 under a light load."""

from __future__ import annotations

import pytest
import simpy

from talkface.degradation import DegradationSettings, Step
from talkface.planner import Deployment, Profile, SimOptions, SimulationResult, Workload
from talkface.planner.ladder import FrameMeter, SimulatedLadder, capped_reply
from talkface.planner.simulate import simulate

pytestmark = pytest.mark.unit

LADDER = DegradationSettings()  # the server's defaults


def test_a_capped_reply_speaks_its_whole_sentences_only() -> None:
    assert capped_reply([10, 24, 38], 40) == ([10, 24, 38], 3)
    # The half sentence up to the cap is generated, then dropped.
    assert capped_reply([10, 24, 38], 32) == ([10, 24, 32], 2)
    assert capped_reply([10, 24, 38], 24) == ([10, 24], 2)
    # Only a first sentence longer than the whole budget is spoken cut.
    assert capped_reply([40, 60], 32) == ([32], 1)


def test_the_report_gives_time_at_each_level_and_every_step() -> None:
    env = simpy.Environment()
    settings = DegradationSettings(step_down_after_s=5, settle_s=10, step_up_after_s=20)
    ladder = SimulatedLadder(
        env,
        settings,
        # 12 waiting requests (twice the limit) for 30 s, then none.
        queue_depth=lambda: 12.0 if env.now < 30 else 0.0,
        busy_core_s=None,
        overhead_cores=lambda: 0.0,
        cores=1.0,
        frames=FrameMeter(env),
    )
    ladder.start(0.0, 100.0)
    env.run(until=100.0)
    report = ladder.report()
    steps = [(s.at_s, s.change.step, s.change.down) for s in report.steps]
    assert steps == [
        (6.0, Step.SHORTER_REPLIES, True),
        (16.0, Step.LOWER_FPS, True),
        (26.0, Step.SMALL_LLM_ONLY, True),
        # The 5 s window still averages the pressure above 1 until 31 s; calm from 33 s.
        (53.0, Step.SMALL_LLM_ONLY, False),
        (73.0, Step.LOWER_FPS, False),
        (93.0, Step.SHORTER_REPLIES, False),
    ]
    assert report.level_s == (13.0, 30.0, 30.0, 27.0, 0.0)
    assert report.max_level == 3


def test_the_latency_signal_is_the_median_first_frame_over_the_window() -> None:
    env = simpy.Environment()
    settings = DegradationSettings(
        window_s=1.0, first_frame_window_s=30.0, min_turns=3, max_first_frame_s=1.5
    )
    ladder = SimulatedLadder(
        env,
        settings,
        queue_depth=lambda: 0.0,
        busy_core_s=None,
        overhead_cores=lambda: 0.0,
        cores=1.0,
        frames=FrameMeter(env),
    )
    # (shown at s, latency s); a frame counts from when it is shown, not when it is told.
    for shown_s, latency_s in [(0.5, 1.0), (1.5, 3.0), (2.5, 2.0), (5.0, 0.3)]:
        ladder.first_frame(shown_s, latency_s)
    ladder.start(0.0, 100.0)
    first_frame_s: dict[int, float] = {}
    for at_s in (1, 2, 3, 4, 5, 31, 33):
        env.run(until=at_s + 0.5)  # just after the sample at at_s
        first_frame_s[at_s] = ladder.ladder.signals["first_frame_s"] * settings.max_first_frame_s
    assert first_frame_s == pytest.approx(
        {
            1: 0.0,  # one first frame: fewer than min_turns
            2: 0.0,  # two
            3: 2.0,  # the median of 1, 3 and 2
            4: 2.0,  # the one shown at 5 s does not count yet
            5: 1.5,  # it does now: the median of 1, 3, 2 and 0.3
            31: 2.0,  # the first frame left the window
            33: 0.0,  # only the last one is left in it
        }
    )
    assert ladder.report().peak_ratios["first_frame_s"] == pytest.approx(2.0 / 1.5)


def _sim(profile: Profile, sessions: int, ladder: DegradationSettings | None) -> SimulationResult:
    options = SimOptions(seed=1, target_turns=300, degradation=ladder)
    return simulate(Deployment.cpu_box(profile), profile, Workload(), sessions, options)


def test_past_capacity_the_ladder_steps_down_and_first_frames_come_sooner(
    cpu_profile: Profile,
) -> None:
    without = _sim(cpu_profile, 10, None)
    assert without.degradation is None
    assert without.ttff_p95_ms > 4000  # far past the box's capacity
    with_ladder = _sim(cpu_profile, 10, LADDER)
    report = with_ladder.degradation
    assert report is not None
    first = report.steps[0].change
    assert first.down and first.step == Step.SHORTER_REPLIES
    assert report.max_level >= 2
    assert sum(report.level_s) == pytest.approx(with_ladder.simulated_s)
    assert report.level_share(0) < 0.5
    assert report.capped_replies > 0 and report.reduced_fps_sessions > 0
    if report.max_level == len(report.order):
        assert report.refused_attempts > 0
    assert with_ladder.ttff_p95_ms < 0.85 * without.ttff_p95_ms
    # The slow first frames themselves pressed the ladder, past their limit.
    assert report.peak_ratios["first_frame_s"] > 1.0


def test_a_light_load_stays_at_level_0(cpu_profile: Profile) -> None:
    # One session is within the SLO on this box (two are not: their p95 TTFF is ~1.9 s,
    # and the latency signal rightly steps down now and then).
    calm = _sim(cpu_profile, 1, LADDER)
    report = calm.degradation
    assert report is not None
    assert report.steps == ()
    assert report.level_s[0] == pytest.approx(calm.simulated_s)
    assert report.capped_replies == report.refused_attempts == report.reduced_fps_sessions == 0
    assert 0 < report.peak_ratios["first_frame_s"] < 1
    assert calm.ttff_p95_ms == pytest.approx(_sim(cpu_profile, 1, None).ttff_p95_ms, rel=0.05)
