"""`talkface chat` as a user runs it: files in, a video and a latency trace out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from talkface.face.lipsync import measure_lipsync

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RATE = 16_000
STAGES = ["vad_end", "asr_final", "llm_first_token", "first_sentence", "first_audio",
          "first_video_frame"]


def chat(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "talkface.cli", "chat", *args, "--seed", "1"],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, **(env or {})},
    )


def test_a_spoken_question_gives_a_video_and_a_latency_trace(
    tmp_path: Path, speak, write_wav, artifacts_dir: Path
) -> None:
    question = write_wav("question.wav", np.concatenate(
        [np.zeros(RATE // 2, np.float32), speak("piper", "What can you do for me today?")]))
    video, trace = tmp_path / "answer.mp4", tmp_path / "trace.json"
    result = chat("--audio", str(question), "-o", str(video), "--trace", str(trace))
    assert result.returncode == 0, result.stderr
    assert "you: What can you do for me today?" in result.stdout
    assert "avatar:" in result.stdout and "first_video_frame" in result.stdout
    document = json.loads(trace.read_text())
    (turn,) = document["turns"]
    assert turn["transcript"].lower().startswith("what can you do")
    assert turn["reply"]
    assert list(turn["latency_ms"]) == STAGES
    report = measure_lipsync(video)
    assert abs(report.offset_ms) <= 40 and report.correlation > 0.4, report
    (artifacts_dir / "chat_answer.mp4").write_bytes(video.read_bytes())
    # The trace draws as a waterfall.
    png = tmp_path / "waterfall.png"
    drawn = subprocess.run([sys.executable, "-m", "talkface.cli", "report", str(trace), "-o",
                            str(png)], capture_output=True, text=True, check=False)
    assert drawn.returncode == 0, drawn.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_script_of_several_turns_makes_one_video(tmp_path: Path, speak, write_wav) -> None:
    write_wav("spoken.wav", speak("espeak", "Thank you, goodbye."))
    script = tmp_path / "dialogue.txt"
    script.write_text(
        "# a short dialogue\nHello, who are you?\nWhat can you do?\n", encoding="utf-8"
    )
    video, trace = tmp_path / "session.mp4", tmp_path / "trace.json"
    result = chat("--script", str(script), "-o", str(video), "--trace", str(trace), "-q")
    assert result.returncode == 0, result.stderr
    turns = json.loads(trace.read_text())["turns"]
    assert [t["transcript"] for t in turns] == ["Hello, who are you?", "What can you do?"]
    assert all(t["reply"] for t in turns)
    from talkface.face.lipsync import decode_video

    frames, fps, audio, rate = decode_video(video)
    assert fps == 25 and abs(len(frames) / fps - len(audio) / rate) <= 1 / 25


def test_a_script_of_spoken_turns_lets_each_answer_finish(tmp_path: Path, speak,
                                                        write_wav) -> None:
    first = write_wav("first.wav", speak("piper", "Please tell me about the weather in spring."))
    second = write_wav("second.wav", speak("piper", "And what about the winter?"))
    script = tmp_path / "spoken.txt"
    script.write_text(f"@{first}\n@{second}\n", encoding="utf-8")
    trace = tmp_path / "trace.json"
    result = chat("--script", str(script), "--trace", str(trace), "-q")
    assert result.returncode == 0, result.stderr
    turns = json.loads(trace.read_text())["turns"]
    assert len(turns) == 2, turns
    assert "weather" in turns[0]["transcript"].lower(), turns
    assert "winter" in turns[1]["transcript"].lower(), turns
    # The second line is spoken after the first answer, as a person would: nothing is cut.
    assert [t["interrupted"] for t in turns] == [False, False]
    assert all(t["reply"] for t in turns)


@pytest.mark.parametrize(("args", "expected"), [
    (["--text", ""], "nothing to say: the text is empty"),
    (["--text", "  "], "nothing to say: the text is empty"),
    (["--text", "Bonjour", "--lang", "fr"], "language 'fr' is not supported; talkface speaks "
                                            "en, zh"),
])
def test_a_message_that_cannot_be_answered_gets_one_clear_line(
    tmp_path: Path, args: list[str], expected: str
) -> None:
    result = chat(*args, "-o", str(tmp_path / "out.mp4"))
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not (tmp_path / "out.mp4").exists()


def test_the_openai_backend_against_a_real_local_server(tmp_path: Path, llama_server: str) -> None:
    video = tmp_path / "openai.mp4"
    result = chat("--text", "Say hello.", "--llm", "openai", "--llm-url", llama_server,
                  "--llm-model", "smollm2", "-o", str(video))
    assert result.returncode == 0, result.stderr
    assert "avatar:" in result.stdout
    assert video.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("silence", "no speech was heard"),
        ("ten_minutes", "may be at most 120 s"),
        ("not_audio", "not"),
        ("missing", "does not exist"),
        ("absurd_rate", "sample rate"),
        ("no_input", "give exactly one of --audio, --text or --script"),
    ],
)
def test_bad_audio_input_gets_a_clear_message(
    tmp_path: Path, write_wav, case: str, expected: str
) -> None:
    if case == "silence":
        args = ["--audio", str(write_wav("silence.wav", np.zeros(2 * RATE, np.float32)))]
    elif case == "ten_minutes":
        args = ["--audio", str(write_wav("long.wav", np.zeros(600 * 8000, np.float32), 8000))]
    elif case == "not_audio":
        (tmp_path / "notes.wav").write_text("this is not a recording")
        args = ["--audio", str(tmp_path / "notes.wav")]
    elif case == "missing":
        args = ["--audio", str(tmp_path / "nothing.wav")]
    elif case == "absurd_rate":
        args = ["--audio", str(write_wav("odd.wav", np.zeros(2000, np.float32), 1000))]
    else:
        args = []
    result = chat(*args, "-o", str(tmp_path / "out.mp4"))
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert expected in (result.stderr + result.stdout)
    assert not (tmp_path / "out.mp4").exists()


def test_a_stereo_48khz_recording_is_understood(tmp_path: Path, speak, write_wav) -> None:
    from talkface.audio import resample

    voice = speak("piper", "What is your name?")
    stereo = write_wav("stereo.wav", resample(voice, RATE, 48_000), 48_000, 2)
    trace = tmp_path / "trace.json"
    result = chat("--audio", str(stereo), "--trace", str(trace), "-q")
    assert result.returncode == 0, result.stderr
    (turn,) = json.loads(trace.read_text())["turns"]
    assert "name" in turn["transcript"].lower()
