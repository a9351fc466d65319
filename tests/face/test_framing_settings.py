"""Framing as a setting: one value, read the same way by every entry point."""

from __future__ import annotations

import pytest

from talkface.commands.say import animator_overrides
from talkface.config import load_settings
from talkface.errors import ConfigError
from talkface.face.base import Framing

pytestmark = pytest.mark.unit


def test_framing_defaults_to_head_and_shoulders() -> None:
    assert load_settings().animator.framing == Framing.BUST


def test_framing_comes_from_the_environment_and_the_command_line_wins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TALKFACE_ANIMATOR__FRAMING", "face")
    assert load_settings().animator.framing == Framing.FACE
    # --framing on say and chat: over the environment, and beside --size.
    settings = load_settings(**animator_overrides(size_px=256, framing=Framing.FULL))
    assert settings.animator.framing == Framing.FULL
    assert settings.animator.size_px == 256


def test_an_unknown_framing_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="framing"):
        load_settings(animator={"framing": "wide"})
