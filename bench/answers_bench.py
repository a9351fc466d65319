"""Answer quality and speed of the packaged LLMs, side by side. Prints numbers; asserts nothing.

    .venv/bin/python bench/answers_bench.py                 # both models, 22 questions
    .venv/bin/python bench/answers_bench.py --show          # and every answer

Each question is a new conversation (the default persona, then the question), asked of
each model in turn, so that a busy box slows both alike. Each model runs on 1 thread
with the default settings (96 reply tokens, temperature 0.3, repeat penalty 1.1), through
the real backend and its reply guard, with the persona already in llama.cpp's cache (as
in a live session after warm-up). An answer is right when it contains every expected key
word and is in the question's language. Per model:

* right: answers that are right;
* TTFT: median time from the request to the first text, ms: wall clock, and the CPU
  time the process spent (on a busy shared box the CPU time is what an idle one would
  show as wall time, the model running on 1 thread);
* tok/s: median generation speed after the first token, per CPU second;
* loops: answers in which a phrase of 6 words comes 3 times;
* stopped: answers the reply guard stopped because they began to repeat themselves;
* trimmed: answers that ran out of tokens (their unfinished last sentence dropped);
* ends: answers that end with sentence punctuation;
* tags: answers with an expression tag, and answers in which a tag would be spoken.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import time
from dataclasses import dataclass, field

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _questions import QUESTIONS as SPOKEN  # bench/ is the script's own folder

# (question, key words: each entry is a regex, and every entry must be found)
QUESTIONS: list[tuple[str, tuple[str, ...]]] = [
    # facts
    ("What is the capital of France?", (r"paris",)),
    ("How many days are there in a week?", (r"\b(seven|7)\b",)),
    ("What is the largest planet in our solar system?", (r"jupiter",)),
    ("Who wrote Romeo and Juliet?", (r"shakespeare",)),
    ("At what temperature does water boil at sea level, in Celsius?", (r"\b100\b",)),
    ("How many legs does a spider have?", (r"\b(eight|8)\b",)),
    ("What colour is a clear sky during the day?", (r"blue",)),
    # small talk (the first three are spoken questions of the other benchmarks)
    (SPOKEN[7], (r"\bava\b",)),  # What is your name?
    (SPOKEN[0], (r"\bhelp|assist|answer\b",)),  # What can you do for me?
    # Which store? An honest answer asks or says where to look.
    (SPOKEN[1], (r"which|check|website|call|depend|not sure|don't know|do not know",)),
    ("Hello! How are you today?", (r"\b(good|great|well|fine|doing)\b",)),
    ("Thank you, that was helpful!", (r"welcome|glad|pleasure|happy",)),
    # instructions
    ("Say good morning in French.", (r"bonjour",)),
    ("Count from one to five.", (r"(one|1)\W+(two|2)\W+(three|3)\W+(four|4)\W+(five|5)",)),
    ("Give me one word that rhymes with cat.", (r"\b(hat|bat|mat|rat|sat|fat|pat|flat)\b",)),
    ("What is two plus three?", (r"\b(five|5)\b",)),
    ("Name three primary colours.", (r"red", r"blue", r"yellow")),
    # Chinese
    ("中国的首都是哪里？", (r"北京",)),
    ("一年有几个月？", (r"十二|12",)),
    ("一加一等于几？", (r"二|2|两",)),
    ("你好，你叫什么名字？", (r"(?i)ava",)),
    ("请告诉我水的化学式。", (r"(?i)h\s*2\s*o|H₂O",)),
]

_HAN = re.compile("[\u4e00-\u9fff]")
_TAG = re.compile(r"[\[(<{]\s*(neutral|happy|serious|sad|excited|joy|calm)\s*[\])>}]", re.I)


@dataclass
class Result:
    model: str
    right: list[bool] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    ttft_cpu_ms: list[float] = field(default_factory=list)
    tokens_per_s: list[float] = field(default_factory=list)
    loops: int = 0
    stopped: int = 0
    trimmed: int = 0
    ends: int = 0
    tagged: int = 0
    spoken_tags: int = 0
    answers: list[tuple[str, str, str, bool]] = field(default_factory=list)


def is_right(question: str, answer: str, keys: tuple[str, ...]) -> bool:
    if bool(_HAN.search(question)) != bool(_HAN.search(answer)):
        return False  # not in the user's language
    return all(re.search(key, answer, re.I) for key in keys)


async def ask(llm, question: str):
    from talkface.llm.base import DEFAULT_PERSONA, ChatMessage, GenerationRequest, TokenStream

    class TimedStream(TokenStream):
        """Notes when the model thread hands over its first text: wall and CPU time."""

        first: tuple[float, float] | None = None

        def put(self, text: str) -> None:
            if self.first is None:
                self.first = (time.perf_counter(), time.process_time())
            super().put(text)

    settings = llm.settings
    stream = TimedStream()
    request = GenerationRequest(
        messages=(ChatMessage(role="system", content=DEFAULT_PERSONA),
                  ChatMessage(role="user", content=question)),
        stream=stream, max_tokens=settings.max_reply_tokens, temperature=settings.temperature,
    )
    started = (time.perf_counter(), time.process_time())
    job = asyncio.ensure_future(llm.generate_batch([request]))
    text = "".join([delta async for delta in stream])
    (stats,) = await job
    ended = (time.perf_counter(), time.process_time())
    first = stream.first or ended
    ttft_ms = ((first[0] - started[0]) * 1000.0, (first[1] - started[1]) * 1000.0)
    cpu_s = ended[1] - first[1]
    speed = (stats.completion_tokens - 1) / cpu_s if cpu_s > 0 else 0.0
    return text, stats, ttft_ms, speed


async def run(models: list[str], show: bool) -> list[Result]:
    from talkface.llm.base import LLMSettings
    from talkface.llm.emotion import sentence_emotion
    from talkface.llm.guard import repeated_phrase
    from talkface.llm.llama_cpp import LlamaCppLLM
    from talkface.text.sentences import ends_sentence, split_sentences

    llms = {m: await asyncio.to_thread(LlamaCppLLM.load, LLMSettings(model=m, num_threads=1))
            for m in models}
    results = {m: Result(m) for m in models}
    for llm in llms.values():
        await ask(llm, "Hi.")  # warm-up: the persona into llama.cpp's cache
    for question, keys in QUESTIONS:
        for name, llm in llms.items():
            text, stats, ttft_ms, speed = await ask(llm, question)
            result = results[name]
            right = is_right(question, text, keys)
            result.right.append(right)
            result.ttft_ms.append(ttft_ms[0])
            result.ttft_cpu_ms.append(ttft_ms[1])
            result.tokens_per_s.append(speed)
            result.loops += repeated_phrase(text) is not None
            result.stopped += stats.finish_reason == "repetition"
            result.trimmed += stats.finish_reason == "length"
            result.ends += ends_sentence(text)
            spoken = [sentence_emotion(s)[1] for s in split_sentences(text)]
            result.tagged += bool(_TAG.search(text))
            result.spoken_tags += any(_TAG.search(s) for s in spoken)
            result.answers.append((question, text, stats.finish_reason, right))
            if show:
                print(f"[{name}] {'ok ' if right else 'BAD'} {stats.finish_reason:10} "
                      f"{ttft_ms[0]:5.0f} ms  {question} -> {text!r}", flush=True)
    for llm in llms.values():
        await llm.aclose()
    return list(results.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="smollm2,qwen2.5-coder-0.5b")
    parser.add_argument("--show", action="store_true", help="print every answer")
    args = parser.parse_args()
    results = asyncio.run(run(args.models.split(","), args.show))
    n = len(QUESTIONS)
    print(f"\n{n} questions; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n")
    print("| model | right | TTFT p50 | TTFT p50, CPU | tok/s p50, CPU | loops | stopped | "
          "trimmed | ends . ! ? | tags (spoken) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.model} | {sum(r.right)}/{n} | {statistics.median(r.ttft_ms):.0f} ms | "
              f"{statistics.median(r.ttft_cpu_ms):.0f} ms | "
              f"{statistics.median(r.tokens_per_s):.1f} | {r.loops} | {r.stopped} | {r.trimmed} | "
              f"{r.ends}/{n} | {r.tagged} ({r.spoken_tags}) |")


if __name__ == "__main__":
    main()
