"""A FAQ hit, end of speech → first frame: one user asks a FAQ's questions by voice, once
to a server that answers them from the FAQ and once to one that asks its LLM (the same
questions, the same box, one run). Prints numbers; asserts nothing.

    .venv/bin/python bench/faq_turn_bench.py                 # shop FAQ, 2 minutes a run
    .venv/bin/python bench/faq_turn_bench.py --faq my_faq.yaml --minutes 3 -o faq_turn.json

The questions are each entry's first English phrasing, spoken by the piper voice over
the WebSocket API to a fresh ``talkface serve`` on loopback (``talkface bench load``'s
users: a question, the whole answer heard, 2 s, the next). Time to first frame is from
the end of the spoken question to the first video frame at the client, the 400 ms
end-of-speech hangover included. Every run starts with an empty cache directory, so the
FAQ's answers are synthesised the first time they are said (later repeats hit the TTS
cache, as on a server that has said them before).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from talkface.bench.load import LoadOptions, LoadResult, run_load

DEFAULT_FAQ = Path(__file__).resolve().parent.parent / "tests" / "faq" / "data" / "shop_faq.yaml"
TARGET_P50_MS = 600.0
STAGES = ("vad_end", "asr_final", "llm_first_token", "first_sentence", "first_audio",
          "first_video_frame")


def english_questions(faq: Path) -> tuple[str, ...]:
    """The first English phrasing of every entry of the FAQ file ``faq``."""
    entries = yaml.safe_load(faq.read_text(encoding="utf-8"))
    return tuple(next(q for q in entry["questions"] if q.isascii()) for entry in entries)


def run_once(questions: tuple[str, ...], minutes: float, faq: Path | None,
             log: Path) -> LoadResult:
    with tempfile.TemporaryDirectory(prefix="talkface-faq-turn-") as data_dir:
        env = {"TALKFACE_SERVER__DATA_DIR": data_dir,
               "TALKFACE_CACHE__DIR": str(Path(data_dir) / "cache")}
        if faq is not None:
            env["TALKFACE_FAQ__FILE"] = str(faq)
        options = LoadOptions(sessions=1, duration_s=minutes * 60, questions=questions,
                              server_env=env, server_log=log)
        return asyncio.run(run_load(options, lambda line: print(line, file=sys.stderr,
                                                                flush=True)))


def describe(name: str, result: LoadResult, route: str) -> dict[str, object]:
    """The run's turns answered by ``route``: their time to first frame and stages."""
    turns = [t for t in result.turns if t.route == route and t.ttff_ms is not None]
    ttff = [t.ttff_ms for t in turns if t.ttff_ms is not None]
    stages = {stage: round(statistics.median(t.server_latency_ms[stage] for t in turns
                                             if stage in t.server_latency_ms), 1)
              for stage in STAGES if any(stage in t.server_latency_ms for t in turns)}
    delivery = [t.delivery_ms for t in turns if t.delivery_ms is not None]
    summary = result.summary()
    return {"run": name, "route": route, "turns": len(result.turns), "turns_on_route": len(turns),
            "routes": summary["routes"],
            "ttff_p50_ms": round(float(np.percentile(ttff, 50)), 1) if ttff else None,
            "ttff_p95_ms": round(float(np.percentile(ttff, 95)), 1) if ttff else None,
            "server_stages_p50_ms": stages,
            "delivery_p50_ms": round(statistics.median(delivery), 1) if delivery else None,
            "fps_while_speaking": summary["fps_while_speaking"],
            "missing_frames": summary["missing_frames"], "errors": summary["errors"],
            "questions_heard": sorted({t.transcript for t in result.turns if t.transcript})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faq", type=Path, default=DEFAULT_FAQ, help="a FAQ file (YAML)")
    parser.add_argument("--minutes", type=float, default=2.0, help="length of each run")
    parser.add_argument("-o", "--output", type=Path, default=Path("faq_turn.json"))
    args = parser.parse_args()
    if not 0.5 <= args.minutes <= 30:
        parser.error("--minutes must be between 0.5 and 30")
    questions = english_questions(args.faq)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    log = args.output.with_suffix(".log")
    log.unlink(missing_ok=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    print(f"{len(questions)} questions from {args.faq}", file=sys.stderr)
    rows = [describe("LLM (no FAQ)", run_once(questions, args.minutes, None, log), "small"),
            describe("FAQ", run_once(questions, args.minutes, args.faq, log), "faq")]
    args.output.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print("| run | turns (on the route) | TTFF p50 | TTFF p95 | server: vad_end / first audio "
          "/ first frame (p50) | delivery p50 | fps |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        stages = row["server_stages_p50_ms"]
        assert isinstance(stages, dict)
        print(f"| {row['run']} | {row['turns']} ({row['turns_on_route']} {row['route']}) | "
              f"{row['ttff_p50_ms']} ms | {row['ttff_p95_ms']} ms | "
              f"{stages.get('vad_end')} / {stages.get('first_audio')} / "
              f"{stages.get('first_video_frame')} ms | {row['delivery_p50_ms']} ms | "
              f"{row['fps_while_speaking']} |")
    faq_p50 = rows[1]["ttff_p50_ms"]
    print(f"FAQ hit TTFF p50 {faq_p50} ms (target <= {TARGET_P50_MS:.0f} ms); "
          f"wrote {args.output}")


if __name__ == "__main__":
    main()
