"""`talkface say` end to end, as a user runs it: real models, real files, ffprobe."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from talkface.face.lipsync import measure_lipsync

pytestmark = [pytest.mark.integration]

TALKFACE = [sys.executable, "-m", "talkface.cli"]
ENGLISH = "Hello! I am your virtual assistant. How can I help you today?"
CHINESE = "你好，很高兴为您服务。今天天气很好，我们一起去公园散步吧。"


def run_cli(*args: str, stdin: bytes | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TALKFACE, *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )


def ffprobe(path: Path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory, artifacts_dir: Path) -> dict[str, Path]:
    """The English and Chinese demo sentences rendered once by the real CLI."""
    out = tmp_path_factory.mktemp("say")
    videos = {}
    for name, args in {
        "en": [ENGLISH],
        "zh": [CHINESE, "--lang", "zh"],
    }.items():
        path = out / f"say_{name}.mp4"
        result = run_cli("say", *args, "-o", str(path), "--seed", "7")
        assert result.returncode == 0, result.stderr
        assert "first video frame" in result.stdout
        shutil.copy(path, artifacts_dir / path.name)
        videos[name] = path
    return videos


@pytest.mark.parametrize("language", ["en", "zh"])
def test_say_writes_a_clean_h264_aac_mp4_at_25_fps(
    rendered: dict[str, Path], language: str
) -> None:
    path = rendered[language]
    check = subprocess.run(["ffprobe", "-v", "error", str(path)], capture_output=True, text=True)
    assert check.returncode == 0 and check.stderr == "", check.stderr
    info = ffprobe(path)
    streams = {s["codec_type"]: s for s in info["streams"]}
    video, audio = streams["video"], streams["audio"]
    assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
    assert audio["codec_name"] == "aac"
    assert video["r_frame_rate"] == "25/1" and video["avg_frame_rate"] == "25/1"
    video_s, audio_s = float(video["duration"]), float(audio["duration"])
    assert abs(video_s - audio_s) <= 1 / 25
    assert video_s > 1.5  # the whole text was spoken, not a fragment
    assert int(video["nb_frames"]) == round(video_s * 25)


@pytest.mark.parametrize("language", ["en", "zh"])
def test_lips_follow_the_voice_measured_from_the_pixels(
    rendered: dict[str, Path], language: str
) -> None:
    report = measure_lipsync(rendered[language])
    assert report.frames_without_face == 0
    assert abs(report.offset_ms) <= 40.0, report
    assert report.correlation >= 0.5, report


def test_the_summary_line_reports_first_audio_first_frame_and_rtf(tmp_path: Path) -> None:
    result = run_cli("say", "Short and sweet.", "-o", str(tmp_path / "a.mp4"), "-q")
    assert result.returncode == 0, result.stderr
    line = result.stdout.strip()
    assert "\n" not in line
    for field in ("first audio", "first video frame", "RTF", "25 fps"):
        assert field in line
    assert result.stderr == ""


def test_text_from_standard_input(tmp_path: Path) -> None:
    result = run_cli("say", "-", "-o", str(tmp_path / "stdin.mp4"), stdin=b"Read from a pipe.")
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert (tmp_path / "stdin.mp4").stat().st_size > 10_000


def test_a_custom_portrait_and_voice(tmp_path: Path) -> None:
    from PIL import Image

    from talkface.face.portrait import load_portrait

    # A different photo: the bundled portrait, mirrored and saved as a JPEG.
    photo = tmp_path / "my_photo.jpg"
    Image.fromarray(load_portrait()[:, ::-1]).save(photo, quality=90)
    out = tmp_path / "custom.mp4"
    result = run_cli("say", "A custom portrait, with another voice.", "--portrait", str(photo),
                     "--voice", "espeak-en", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert measure_lipsync(out).frames_without_face == 0


def _face_photos(tmp: Path) -> dict[str, Path]:
    from PIL import Image

    paths = {}
    Image.fromarray(np.full((400, 400, 3), 128, np.uint8)).save(tmp / "no_face.png")
    paths["no_face"] = tmp / "no_face.png"
    (tmp / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    paths["corrupt"] = tmp / "corrupt.jpg"
    (tmp / "notes.png").write_text("just some text, named like a picture")
    paths["not_an_image"] = tmp / "notes.png"
    return paths


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("empty", "the text is empty"),
        ("blank", "the text is empty"),
        ("huge_text", "the limit is 20000"),
        ("unknown_voice", "unknown voice 'nobody'"),
        ("no_face", "no face found"),
        ("corrupt_image", "is corrupt or truncated"),
        ("not_an_image", "not an image talkface can read"),
        ("missing_portrait", "does not exist"),
        ("missing_folder", "does not exist; create it first"),
        ("unwritable", "cannot write"),
        ("output_is_dir", "is a directory"),
        ("wrong_voice_language", "speaks 'en', but the text is 'zh'"),
        ("unsupported_language", "language 'fr' is not supported; talkface speaks en, zh"),
        ("only_a_tag", "nothing to say"),
    ],
)
def test_bad_input_gets_one_clear_line_and_a_nonzero_exit(
    tmp_path: Path, case: str, expected: str
) -> None:
    photos = _face_photos(tmp_path)
    out = str(tmp_path / "out.mp4")
    args, stdin = {
        "empty": (["say", "", "-o", out], None),
        "blank": (["say", " \n\t ", "-o", out], None),
        "huge_text": (["say", "-", "-o", out], ("word " * 20_480).encode()),
        "unknown_voice": (["say", "hi", "--voice", "nobody", "-o", out], None),
        "no_face": (["say", "hi", "--portrait", str(photos["no_face"]), "-o", out], None),
        "corrupt_image": (["say", "hi", "--portrait", str(photos["corrupt"]), "-o", out], None),
        "not_an_image": (["say", "hi", "--portrait", str(photos["not_an_image"]), "-o", out], None),
        "missing_portrait": (["say", "hi", "--portrait", str(tmp_path / "x.jpg"), "-o", out], None),
        "missing_folder": (["say", "hi", "-o", str(tmp_path / "no" / "such" / "a.mp4")], None),
        # Nobody, not even root, can create files in /proc.
        "unwritable": (["say", "hi", "-o", "/proc/talkface-test.mp4"], None),
        "output_is_dir": (["say", "hi", "-o", str(tmp_path)], None),
        "wrong_voice_language": (["say", "你好世界", "--voice", "joe", "-o", out], None),
        "unsupported_language": (["say", "Bonjour", "--lang", "fr", "-o", out], None),
        "only_a_tag": (["say", "[happy]", "-o", out], None),
    }[case]
    result = run_cli(*args, stdin=stdin)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert expected in lines[0]
    assert not Path(out).exists()
    assert not list(tmp_path.glob(".out.mp4.*")), "a temporary file was left behind"


def test_a_warmed_phrase_is_copied_and_matches_a_fresh_render_of_the_same_speech(
    tmp_path: Path,
) -> None:
    """`cache warm`, then `say` copies the MP4 without loading a model; a fresh `say`
    (clip and video caches empty, the same speech from the TTS cache, the clips' seed)
    writes the same bytes. The speech is what must be the same: piper's voice varies
    from one process to the next, the animator and the encoder do not."""
    phrase = "Thank you for waiting."
    cache_dir = tmp_path / "cache"
    env = {**os.environ, "TALKFACE_CACHE__ENABLED": "true", "TALKFACE_CACHE__DIR": str(cache_dir)}
    (tmp_path / "phrases.txt").write_text(phrase + "\n", encoding="utf-8")
    warmed = run_cli("cache", "warm", str(tmp_path / "phrases.txt"), "-q", env=env)
    assert warmed.returncode == 0, warmed.stderr

    cached = run_cli("say", phrase, "-o", str(tmp_path / "cached.mp4"), "-q", env=env)
    assert cached.returncode == 0, cached.stderr
    assert "from the video cache" in cached.stdout and "models 0.0 s" in cached.stdout

    fresh_dir = tmp_path / "fresh-cache"
    shutil.copytree(cache_dir / "tts", fresh_dir / "tts")
    fresh = run_cli("say", phrase, "-o", str(tmp_path / "fresh.mp4"), "--seed", "0", "-q",
                    env={**env, "TALKFACE_CACHE__DIR": str(fresh_dir)})
    assert fresh.returncode == 0, fresh.stderr
    assert "from the" not in fresh.stdout  # rendered: animator and encoder ran
    assert (tmp_path / "cached.mp4").read_bytes() == (tmp_path / "fresh.mp4").read_bytes()
