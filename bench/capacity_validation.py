"""Does the simulator predict this machine? Profile it, load it, simulate it, compare.

    .venv/bin/python bench/capacity_validation.py --minutes 3 --sessions 1 2 3 4 5 6

1. ``talkface bench profile --encoder jpeg``: every engine measured alone on this box.
2. ``talkface bench load`` for each session count: real users on the real server.
3. What the profile cannot see, the serving path, from the smallest load run only: the
   CPU a silent live session costs beyond its idle video (its silent phase), and the
   delivery time from the server's first frame (its own trace) to the client.
4. The workload of the load tests (utterances, replies, think time, prompt sizes), as
   measured, given to the simulator with the CPU-box deployment of the profile.
5. Measured vs simulated time to first frame (p50, p95) per session count, and the
   largest session count that keeps the SLO (p95 ≤ 1.5 s, replies at 25 fps).

Time to first frame is what a user sees: from the end of their speech to the avatar
starting to answer, so it includes the VAD's end-of-speech hangover on both sides.
Writes ``<out>/validation.json`` and ``<out>/validation.png``; prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SLO_P95_MS = 1500.0
SLO_FPS = 25.0 * 0.98


def measure(out: Path, sessions: list[int], minutes: float, reuse: bool) -> dict[str, object]:
    from talkface.bench.load import LoadOptions, run_load
    from talkface.bench.profile import ProfileOptions, measure_profile
    from talkface.config import load_settings

    profile_path = out / "profile.json"
    if not (reuse and profile_path.exists()):
        print("profiling the engines ...", flush=True)
        # The load test watches the WebSocket ``jpeg`` output: measure that encoder.
        options = ProfileOptions(encoder="jpeg")
        measure_profile(load_settings(), options, progress=print).save(profile_path)
    loads = {}
    for count in sessions:
        path = out / f"load_{count}.json"
        if reuse and path.exists():
            loads[count] = json.loads(path.read_text())
            continue
        print(f"load test: {count} session(s), {minutes} min ...", flush=True)
        result = asyncio.run(run_load(LoadOptions(sessions=count, duration_s=minutes * 60)))
        document = {"summary": result.summary(),
                    "turns": [{"ttff_ms": t.ttff_ms, "delivery_ms": t.delivery_ms,
                               "server_latency_ms": t.server_latency_ms,
                               "speech_s": t.speech_s,
                               "speaking_s": t.speaking_s, "think_s": result.options.think_s,
                               "prompt_tokens": t.prompt_tokens,
                               "evaluated_prompt_tokens": t.evaluated_prompt_tokens,
                               "error": t.error} for t in result.turns]}
        path.write_text(json.dumps(document, indent=2))
        loads[count] = document
        print(json.dumps(document["summary"]), flush=True)
    return {"profile": profile_path, "loads": loads}


def with_serving_path(profile: object, loads: dict[int, dict[str, object]]) -> object:
    """The profile plus the serving path's cost and delay, from the smallest load run."""
    from talkface.bench.serving_path import calibrate, idle_video_cores

    sessions = min(loads)
    summary = loads[sessions]["summary"]
    delivery = [t["delivery_ms"] for t in loads[sessions]["turns"]
                if t.get("delivery_ms") is not None]
    calibrated = calibrate(profile, sessions=sessions,
                           idle_server_cpu_cores=summary.get("idle_server_cpu_cores"),
                           delivery_ms=delivery)
    print(f"serving path ({sessions}-session run): {summary.get('idle_server_cpu_cores')} "
          f"cores while silent, of which idle video {idle_video_cores(profile) * sessions:.3f}"
          f" -> {calibrated.machine.session_overhead_cores:.3f} cores per session; "
          f"delivery p50 {calibrated.pipeline.delivery_ms:.0f} ms")
    return calibrated


def workload_from(loads: dict[int, dict[str, object]], profile: object) -> object:
    """The simulator's workload, as the load tests actually behaved."""
    from talkface.planner.workload import Distribution, Workload

    turns = [t for doc in loads.values() for t in doc["turns"] if t["ttff_ms"] is not None]
    speech = [t["speech_s"] for t in turns]
    speaking = [t["speaking_s"] for t in turns if t["speaking_s"]]
    prompt = [t["prompt_tokens"] for t in turns if t.get("prompt_tokens")]
    evaluated = [t["evaluated_prompt_tokens"] for t in turns
                 if t.get("evaluated_prompt_tokens") is not None]
    ttff_s = statistics.mean(t["ttff_ms"] for t in turns) / 1000
    think_s = statistics.mean(t["think_s"] for t in turns)
    cycle_s = statistics.mean(speech) + ttff_s + statistics.mean(speaking) + think_s
    speech_s_per_token = 0.3
    mean_prompt = statistics.mean(prompt) if prompt else 300.0
    cached = 1 - statistics.mean(evaluated) / mean_prompt if evaluated and prompt else 0.0

    def dist(values: list[float]) -> Distribution:
        mean = statistics.mean(values)
        cv = statistics.pstdev(values) / mean if len(values) > 1 and mean else 0.0
        return Distribution(
            mean=mean, cv=min(cv, 5.0), shape="constant" if cv == 0 else "lognormal"
        )

    return Workload(
        turns_per_min=60.0 / cycle_s,
        utterance_s=dist(speech),
        prompt_tokens=Distribution(mean=mean_prompt, cv=0.3),
        prompt_cached_share=max(0.0, min(cached, 0.95)),
        reply_tokens=dist([s / speech_s_per_token for s in speaking]),
        speech_s_per_token=speech_s_per_token,
        faq_cache_hit_rate=0.0,
        tts_cache_hit_rate=0.0,
        animation_cache_hit_rate=0.0,
        peak_factor=1.0,
        trough_factor=1.0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=Path("docs/capacity"))
    parser.add_argument("--reuse", action="store_true", help="reuse measurements in --out")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    from talkface.planner.deployment import Deployment
    from talkface.planner.profile import Profile
    from talkface.planner.simulate import SimOptions, simulate
    from talkface.planner.workload import SLO

    measured = measure(args.out, args.sessions, args.minutes, args.reuse)
    loads = measured["loads"]
    profile = with_serving_path(Profile.load(measured["profile"]), loads)
    workload = workload_from(loads, profile)
    deployment = Deployment.cpu_box(profile)
    hangover_ms = profile.pipeline.vad_hangover_ms
    slo = SLO(ttff_p95_ms=SLO_P95_MS - hangover_ms)  # the simulator's TTFF has no hangover
    rows = []
    for count in args.sessions:
        summary = loads[count]["summary"]
        sim = simulate(deployment, profile, workload, count, SimOptions(seed=1, target_turns=400))
        # The simulator counts from the end of the hangover; users count from their last word.
        sim_p50 = sim.ttff_p50_ms + hangover_ms
        sim_p95 = sim.ttff_p95_ms + hangover_ms
        fps = summary.get("fps_while_speaking") or 0.0
        rows.append({
            "sessions": count,
            "measured_p50_ms": summary["ttff_p50_ms"], "simulated_p50_ms": round(sim_p50, 1),
            "measured_p95_ms": summary["ttff_p95_ms"], "simulated_p95_ms": round(sim_p95, 1),
            "measured_fps": fps,
            "simulated_sustained_share": round(sim.sustained_share(slo), 3),
            "measured_meets_slo": bool(summary["ttff_p95_ms"] and summary["ttff_p95_ms"]
                                       <= SLO_P95_MS and fps >= SLO_FPS),
            "simulated_meets_slo": bool(sim_p95 <= SLO_P95_MS
                                        and sim.sustained_share(slo) >= slo.sustained_turn_share),
        })
    for row in rows:
        for q in ("p50", "p95"):
            m, s = row[f"measured_{q}_ms"], row[f"simulated_{q}_ms"]
            row[f"error_{q}"] = round((s - m) / m, 3) if m else None
    measured_max = max((r["sessions"] for r in rows if r["measured_meets_slo"]), default=0)
    simulated_max = max((r["sessions"] for r in rows if r["simulated_meets_slo"]), default=0)
    result = {"workload": json.loads(workload.model_dump_json()), "rows": rows,
              "measured_max_sessions": measured_max, "simulated_max_sessions": simulated_max}
    (args.out / "validation.json").write_text(json.dumps(result, indent=2))
    print(f"\n{'sessions':>8} {'p50 meas':>9} {'p50 sim':>8} {'err':>6} "
          f"{'p95 meas':>9} {'p95 sim':>8} {'err':>6} {'fps':>6}")
    for r in rows:
        print(f"{r['sessions']:8d} {r['measured_p50_ms']:9.0f} {r['simulated_p50_ms']:8.0f} "
              f"{r['error_p50']:+6.0%} {r['measured_p95_ms']:9.0f} {r['simulated_p95_ms']:8.0f} "
              f"{r['error_p95']:+6.0%} {r['measured_fps']:6.1f}")
    print(f"largest session count within the SLO: measured {measured_max}, "
          f"simulated {simulated_max}")
    plot(rows, args.out / "validation.png")


def plot(rows: list[dict[str, object]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sessions = [r["sessions"] for r in rows]
    figure, axes = plt.subplots(figsize=(7, 4))
    for q, style in (("p50", "o"), ("p95", "s")):
        axes.plot(sessions, [r[f"measured_{q}_ms"] for r in rows], style + "-",
                  label=f"measured {q}")
        axes.plot(sessions, [r[f"simulated_{q}_ms"] for r in rows], style + "--",
                  label=f"simulated {q}")
    axes.axhline(SLO_P95_MS, color="grey", linestyle=":", label="SLO p95")
    axes.set_xlabel("concurrent sessions")
    axes.set_ylabel("time to first frame (ms)")
    axes.set_title("2-core CPU box: load test vs simulator")
    axes.set_xticks(sessions)
    axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    main()
