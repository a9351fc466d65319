"""Make the pictures the README and docs show, from the project's own output.

    .venv/bin/python scripts/docs_images.py

Renders the demo sentence with `talkface say`, then writes docs/images/say_frame.png
(one frame) and docs/images/say_strip.png (consecutive frames of the mouth moving).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from talkface.face.lipsync import decode_video

ROOT = Path(__file__).resolve().parent.parent
IMAGES = ROOT / "docs" / "images"
TEXT = "Hello! I am your virtual assistant. How can I help you today?"


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "hello.mp4"
        subprocess.run([sys.executable, "-m", "talkface.cli", "say", TEXT, "-o", str(video),
                        "--seed", "3", "-q"], check=True)
        frames, _, _, _ = decode_video(video)
    Image.fromarray(frames[17]).save(IMAGES / "say_frame.png", optimize=True)
    # Ten consecutive frames around the mouth: what the lip sync looks like.
    strip = np.concatenate([frame[60:230, 140:320] for frame in frames[8:18]], axis=1)
    Image.fromarray(strip).save(IMAGES / "say_strip.png", optimize=True)
    print(f"wrote {IMAGES / 'say_frame.png'} and {IMAGES / 'say_strip.png'}")


if __name__ == "__main__":
    main()
