"""Make the pictures the README and docs show, from the project's own output.

    .venv/bin/python scripts/docs_images.py

Renders the demo sentence with `talkface say` (default framing: head and shoulders), then
writes docs/images/say_frame.png (one frame), docs/images/say_strip.png (consecutive
frames of the mouth moving) and docs/images/expressions.png (the same moment of speech,
once per expression, rendered by the animator from the same speech).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from talkface.face import topology as T
from talkface.face.avatar import prepare_avatar
from talkface.face.lipsync import decode_video
from talkface.face.portrait import load_portrait

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
TEXT = "Hello! I am your virtual assistant. How can I help you today?"
EXPRESSION_TEXT = "I can tell you all about it."
SEED = 3


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "hello.mp4"
        subprocess.run([sys.executable, "-m", "talkface.cli", "say", TEXT, "-o", str(video),
                        "--seed", str(SEED), "-q"], check=True)
        frames, _, _, _ = decode_video(video)
    Image.fromarray(frames[17]).save(IMAGES / "say_frame.png", optimize=True)
    # Ten consecutive frames around the mouth: what the lip sync looks like.
    rows, cols = _mouth_crop(frames[0].shape[0])
    strip = np.concatenate([frame[rows, cols] for frame in frames[8:18]], axis=1)
    Image.fromarray(strip).save(IMAGES / "say_strip.png", optimize=True)
    _expressions(IMAGES / "expressions.png")
    print(f"wrote {IMAGES / 'say_frame.png'}, {IMAGES / 'say_strip.png'} and "
          f"{IMAGES / 'expressions.png'}")


def _mouth_crop(size_px: int) -> tuple[slice, slice]:
    """Rows and columns around the mouth in the default framing (the crop is fixed)."""
    points = prepare_avatar(load_portrait(), size_px).landmarks[:, :2]
    width = np.linalg.norm(points[T.MOUTH_CORNER_LEFT] - points[T.MOUTH_CORNER_RIGHT])
    centre_x = (points[T.MOUTH_CORNER_LEFT, 0] + points[T.MOUTH_CORNER_RIGHT, 0]) / 2
    top = int(points[T.NOSE_TIP, 1] - 0.1 * width)
    bottom = int(points[T.CHIN, 1] + 0.1 * width)
    half = int(0.95 * width)
    return slice(max(0, top), bottom), slice(max(0, int(centre_x) - half), int(centre_x) + half)


def _speech() -> np.ndarray:
    from talkface.audio import pcm16_to_float32, resample
    from talkface.face.base import ANIMATOR_AUDIO_RATE_HZ
    from talkface.tts.base import SynthesisRequest, TTSSettings
    from talkface.tts.piper import PiperTTS
    from talkface.tts.voices import resolve_voice

    settings = TTSSettings()
    tts = PiperTTS.load(settings, resolve_voice("joe", "en", settings))
    speech = tts.synthesize(SynthesisRequest(text=EXPRESSION_TEXT, voice=tts.voice))
    return resample(pcm16_to_float32(speech.pcm), speech.sample_rate_hz,
                    ANIMATOR_AUDIO_RATE_HZ).astype(np.float32)


def _expressions(path: Path) -> None:
    """One moment of speech, once per expression, side by side and labelled."""
    from talkface.face.base import (
        ANIMATOR_AUDIO_RATE_HZ,
        AnimationRequest,
        AnimatorSettings,
        frame_pts_ns,
    )
    from talkface.face.landmark_warp import LandmarkWarpAnimator
    from talkface.face.mouth import mouth_track
    from talkface.messages import Emotion

    audio = _speech()
    with tempfile.TemporaryDirectory() as cache:
        # Blinks off, so no tile catches the eyes shut; the head sways as usual.
        animator = LandmarkWarpAnimator.load(AnimatorSettings(cache_dir=Path(cache),
                                                              blinks_per_min=0.0))
        avatar_id = animator.prepare_avatar_sync(load_portrait())
        # The moment nearest the middle of the sentence where the mouth is half open.
        count = len(audio) * 25 // ANIMATOR_AUDIO_RATE_HZ
        times_ns = np.array([frame_pts_ns(i, 25) for i in range(count)], np.int64)
        track = mouth_track(audio, 0, times_ns, 25, ())
        score = np.abs(track.open - 0.15) + 0.002 * np.abs(np.arange(count) - count / 2)
        frame_index = int(np.argmin(np.where(track.speaking > 0.9, score, np.inf)))
        tiles = []
        for emotion in Emotion:
            frame = animator.animate_sync(AnimationRequest(
                avatar_id=avatar_id, first_frame_index=frame_index, num_frames=1, fps=25,
                audio=audio, audio_start_ns=0, emotion=emotion, previous_emotion=emotion,
                seed=SEED,
            ))[0]
            tiles.append(_label(frame[20:470, 56:456], emotion.value))
    gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
    sheet = np.concatenate([part for tile in tiles for part in (tile, gap)][:-1], axis=1)
    Image.fromarray(sheet).save(path, optimize=True)


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(tile))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=26)
    box = draw.textbbox((0, 0), text, font=font)
    x = (image.width - (box[2] - box[0])) // 2
    y = image.height - (box[3] - box[1]) - 18
    draw.rectangle((x - 10, y - 6, x + box[2] - box[0] + 10, y + box[3] - box[1] + 12),
                   fill=(255, 255, 255))
    draw.text((x, y - box[1] + 3), text, fill=(20, 20, 20), font=font)
    return np.asarray(image)


if __name__ == "__main__":
    main()
