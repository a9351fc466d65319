"""espeak-ng: Mandarin through pinyin, mixed Chinese and English, other languages."""

from __future__ import annotations

import subprocess

import pytest

from talkface.tts.base import SynthesisRequest, TTSSettings
from talkface.tts.espeak import EspeakTTS, to_numbered_pinyin, voice_for_language

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def espeak() -> EspeakTTS:
    return EspeakTTS.load(TTSSettings(), voice_for_language("zh"))


def phonemes(voice: str, text: str) -> str:
    result = subprocess.run(["espeak-ng", "-q", "-x", "-v", voice], input=text, text=True,
                            capture_output=True, check=True)
    return result.stdout


def test_chinese_becomes_numbered_pinyin() -> None:
    assert to_numbered_pinyin("你好") == "ni3 hao3"
    assert to_numbered_pinyin("很高兴为您服务。") == "hen3 gao1 xing4 wei4 nin2 fu2 wu4 ."


def test_the_pinyin_voice_does_not_read_tone_numbers_aloud() -> None:
    pinyin = to_numbered_pinyin("你好，我很高兴")
    spoken = phonemes("cmn-latn-pinyin", pinyin)
    # English number words ("three": Tr'i:, "one": w'0n) would mean the digits were spoken.
    assert "Tr'i:" not in spoken and "w'0n" not in spoken and "(en)" not in spoken
    # The plain cmn voice, given the same pinyin, does speak them: the reason for the route.
    assert "Tr'i:" in phonemes("cmn", pinyin)


def test_mandarin_and_mixed_english_are_spoken(espeak: EspeakTTS) -> None:
    voice = voice_for_language("zh")
    chinese = espeak.synthesize(SynthesisRequest(text="我喜欢编程。", voice=voice))
    mixed = espeak.synthesize(SynthesisRequest(text="我喜欢 Python 编程。", voice=voice))
    assert chinese.sample_rate_hz == 22_050
    assert 0.5 < chinese.duration_ns / 1e9 < 3
    assert mixed.duration_ns > chinese.duration_ns + 200_000_000  # "Python" was spoken too


def test_another_language_by_code(espeak: EspeakTTS) -> None:
    german = voice_for_language("de")
    speech = espeak.synthesize(SynthesisRequest(text="Guten Tag, wie geht es Ihnen?", voice=german))
    assert speech.duration_ns > 1_000_000_000
