"""Settings come from the CLI, the environment, a TOML file and defaults, in that order."""

from __future__ import annotations

from pathlib import Path

import pytest

from talkface.config import load_settings
from talkface.errors import ConfigError

pytestmark = pytest.mark.unit


def test_precedence_cli_then_environment_then_file_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "talkface.toml"
    config.write_text('[tts]\nspeed = 1.5\nvoice_en = "espeak-en"\n[animator]\nfps = 30\n')
    monkeypatch.setenv("TALKFACE_TTS__SPEED", "1.2")
    settings = load_settings(config, animator={"size_px": 256})
    assert settings.animator.size_px == 256  # CLI
    assert settings.tts.speed == 1.2  # environment beats the file
    assert settings.tts.voice_en == "espeak-en"  # file
    assert settings.animator.fps == 30  # file
    assert settings.animator.blinks_per_min == 14.0  # default


def test_bad_settings_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"setting animator\.fps: .*less than or equal to 60"):
        load_settings(animator={"fps": 500})
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[tts\nspeed=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[tts]\nspeeed = 2\n")
    with pytest.raises(ConfigError, match=r"tts\.speeed"):
        load_settings(unknown)
