"""What talkface accepts to speak: the one policy every entry point calls."""

from __future__ import annotations

import pytest

from talkface.errors import BadInput, PayloadTooLarge
from talkface.messages import Emotion
from talkface.session import SessionOptions
from talkface.text.policy import (
    SUPPORTED_LANGUAGES,
    check_language,
    check_voice_language,
    speech_text,
)
from talkface.tts.base import VoiceInfo

pytestmark = pytest.mark.unit

JOE = VoiceInfo(name="joe", backend="piper", language="en", model_id="joe", description="")
ESPEAK_ZH = VoiceInfo(name="espeak-zh", backend="espeak", language="zh", model_id="cmn",
                      description="")


@pytest.mark.parametrize("language", ["fr", "de", "ja", "english", ""])
def test_a_language_not_supported_end_to_end_is_refused_naming_the_ones_that_are(
    language: str,
) -> None:
    with pytest.raises(BadInput, match=rf"language {language!r} is not supported.*en, zh"):
        check_language(language)


def test_supported_languages_and_detection_pass() -> None:
    assert SUPPORTED_LANGUAGES == ("en", "zh")
    assert [check_language(code) for code in (None, "en", "zh")] == [None, "en", "zh"]


def test_say_and_render_jobs_refuse_an_unsupported_language_before_loading_anything() -> None:
    with pytest.raises(BadInput, match="not supported"):
        SessionOptions(language="fr")


@pytest.mark.parametrize(("text", "emotion", "words"), [
    ("[happy] Great to see you!", Emotion.HAPPY, "Great to see you!"),
    ("  (serious)  Please listen.", Emotion.SERIOUS, "Please listen."),
    ("[sad] 我很抱歉。", Emotion.SERIOUS, "我很抱歉。"),
    ("Just words, [happy] inside.", None, "Just words, [happy] inside."),
])
def test_an_emotion_tag_at_the_start_is_an_expression_not_words(
    text: str, emotion: Emotion | None, words: str,
) -> None:
    spoken = speech_text(text, language=None, limit_chars=1000)
    assert (spoken.emotion, spoken.text) == (emotion, words)


def test_the_language_is_detected_from_the_words_not_the_tag() -> None:
    assert speech_text("[happy] 你好", language=None, limit_chars=100).language == "zh"
    assert speech_text("[happy] hello", language="en", limit_chars=100).language == "en"
    with pytest.raises(BadInput, match="not supported"):
        speech_text("bonjour", language="fr", limit_chars=100)


@pytest.mark.parametrize("text", ["", "   ", "?!...", "[happy]", "[happy]  !"])
def test_nothing_to_say_is_refused(text: str) -> None:
    with pytest.raises(BadInput, match="nothing to say: the text is empty"):
        speech_text(text, language=None, limit_chars=100)


def test_text_over_the_limit_is_refused_with_the_setting_to_raise() -> None:
    with pytest.raises(PayloadTooLarge, match=r"101 characters; the limit is 100 "
                                              r"\(limits.max_text_chars\)"):
        speech_text("a" * 101, language=None, limit_chars=100)


def test_a_voice_speaks_only_its_language_but_espeak_speaks_any() -> None:
    check_voice_language(JOE, "en")
    check_voice_language(ESPEAK_ZH, "en")
    with pytest.raises(BadInput, match="voice 'joe' speaks 'en', but the text is 'zh'"):
        check_voice_language(JOE, "zh")
