"""A plan claims only what it checked, and its workload describes what the product does."""

from __future__ import annotations

import json
import random
import statistics
from pathlib import Path

import pytest
import typer.testing
from pydantic import ValidationError

from talkface.errors import ConfigError
from talkface.planner import PlanOptions, Profile, Workload, make_plan
from talkface.planner.cache_rates import COMMAND_LINE, NO_CACHE, apply_cache_rates
from talkface.planner.cli import app
from talkface.planner.report import plan_json, render_report
from talkface.planner.workload import SLO

pytestmark = pytest.mark.unit

MEASURED_PROFILE = Path(__file__).parents[2] / "docs" / "capacity" / "profile.json"
NOT_SHIPPED = "not shipped: priced from published figures for a GPU lip-sync model"


def _cli(*args: str) -> typer.testing.Result:
    return typer.testing.CliRunner().invoke(app, ["plan", *args])


# 1. Without simulation the headline states the closed-form estimate and its own verdict.


@pytest.mark.parametrize("slo_ms", [100.0, 60_000.0])
def test_unsimulated_headline_says_what_the_closed_form_says(
    cpu_profile: Profile, slo_ms: float
) -> None:
    options = PlanOptions(simulate=False, slo=SLO(ttff_p95_ms=slo_ms))
    plan = make_plan(cpu_profile, sessions=10, options=options)
    p95_ms = plan.ttff_estimate_ms[1]
    assert plan.meets_slo == (p95_ms <= slo_ms)
    assert plan.slo_checked_by == "closed_form"
    assert plan_json(plan)["summary"]["slo_checked_by"] == "closed_form"
    headline = render_report(plan, {}).split("## Headline", 1)[1].split("\n\n", 2)[1]
    assert headline.startswith("Not simulated")
    assert f"{p95_ms:,.0f} ms" in headline
    assert ("within the SLO" if p95_ms <= slo_ms else "**over** the SLO") in headline
    assert "meets the SLO" not in headline


def test_the_shipped_profile_unsimulated_does_not_claim_the_slo(tmp_path: Path) -> None:
    result = _cli(
        "--profile", str(MEASURED_PROFILE), "--sessions", "1000", "--no-simulate",
        "-o", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "meets" not in result.output
    assert "not simulated: closed-form time to first frame p95" in result.output
    summary = json.loads((tmp_path / "plan.json").read_text())["summary"]
    expected = "within" if summary["ttff_estimate_p95_ms"] <= 1500 else "OVER"
    assert f"({expected} the SLO of 1500 ms; unchecked)" in result.output
    assert summary["meets_slo"] == (summary["ttff_estimate_p95_ms"] <= 1500)
    report = (tmp_path / "report.md").read_text()
    assert "The plan meets the SLO" not in report


# 2. The default workload reuses the conversation's prefix, as the product does.
# (That the measured profile meets the SLO only with that reuse is simulated in
# test_simulator.py.)


def test_default_workload_evaluates_only_new_tokens_most_turns() -> None:
    wl = Workload()
    assert wl.prompt_reuse == "prefix"
    draws = [wl.sample_evaluated_prompt_tokens(random.Random(i)) for i in range(4000)]
    assert statistics.fmean(draws) == pytest.approx(wl.evaluated_prompt_tokens_mean, rel=0.1)
    assert wl.evaluated_prompt_tokens_mean < 0.1 * wl.prompt_tokens.mean
    # The whole history only when the saved state was evicted.
    evicted = Workload(prefix_cache_miss_share=1.0)
    assert evicted.evaluated_prompt_tokens_mean > 0.8 * wl.prompt_tokens.mean


def test_no_reuse_and_measured_shares_stay_expressible() -> None:
    none = Workload(prompt_reuse="fixed_share")
    assert none.evaluated_prompt_tokens_mean == none.prompt_tokens.mean
    # A workload that gives a measured cached share (bench/capacity_validation.py) means it.
    measured = Workload(prompt_cached_share=0.95)
    assert measured.prompt_reuse == "fixed_share"
    assert measured.evaluated_prompt_tokens_mean == pytest.approx(0.05 * 700)
    with pytest.raises(ValidationError, match="fixed_share"):
        Workload(prompt_reuse="prefix", prompt_cached_share=0.5)


# 3. Cache hit rates are measured, assumed on request, or 0.


def test_cache_rates_default_to_none() -> None:
    wl, sources = apply_cache_rates(Workload())
    assert (wl.faq_cache_hit_rate, wl.tts_cache_hit_rate, wl.animation_cache_hit_rate) == (0, 0, 0)
    assert set(sources.values()) == {NO_CACHE}


def test_cache_rates_say_where_they_came_from(cpu_profile: Profile, tmp_path: Path) -> None:
    stats = tmp_path / "cache.json"
    stats.write_text(json.dumps({"faq_cache_hit_rate": 0.04, "tts_cache_hit_rate": 0.2}))
    wl, sources = apply_cache_rates(
        Workload(),
        stats_file=stats,
        command_line={"tts_cache_hit_rate": 0.1, "animation_cache_hit_rate": None},
    )
    assert wl.faq_cache_hit_rate == 0.04 and wl.tts_cache_hit_rate == 0.1
    assert sources == {
        "faq_cache_hit_rate": f"measured from {stats}",
        "tts_cache_hit_rate": COMMAND_LINE,
        "animation_cache_hit_rate": NO_CACHE,
    }
    options = PlanOptions(simulate=False, cache_rate_sources=tuple(sources.items()))
    plan = make_plan(cpu_profile, sessions=2, workload=wl, options=options)
    report = render_report(plan, {})
    assert f"| FAQ cache hit rate | 4% of turns (measured from {stats}) |" in report
    assert "| TTS cache hit rate | 10% of sentences (assumed: given on the command line) |" in (
        report
    )
    assert f"| animation cache hit rate | 0% of sentences ({NO_CACHE}) |" in report
    assert plan_json(plan)["cache_rate_sources"] == sources


def test_a_bad_cache_stats_file_is_named(tmp_path: Path) -> None:
    stats = tmp_path / "cache.json"
    stats.write_text(json.dumps({"faq_hit_rate": 0.1}))
    with pytest.raises(ConfigError, match=r"unknown key.*faq_hit_rate"):
        apply_cache_rates(Workload(), stats_file=stats)
    stats.write_text(json.dumps({"tts_cache_hit_rate": 1.5}))
    with pytest.raises(ConfigError, match=r"tts_cache_hit_rate must be a share in \[0, 1\]"):
        apply_cache_rates(Workload(), stats_file=stats)


def test_cli_cache_options_reach_the_report(tmp_path: Path) -> None:
    stats = tmp_path / "cache.json"
    stats.write_text(json.dumps({"animation_cache_hit_rate": 0.03}))
    result = _cli(
        "--profile", str(MEASURED_PROFILE), "--sessions", "5", "--no-simulate",
        "--cache-stats", str(stats), "--faq-cache-hit-rate", "0.05", "-o", str(tmp_path / "p"),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = (tmp_path / "p" / "report.md").read_text()
    assert "| FAQ cache hit rate | 5% of turns (assumed: given on the command line) |" in report
    assert f"3% of sentences (measured from {stats})" in report
    assert f"| TTS cache hit rate | 0% of sentences ({NO_CACHE}) |" in report
