"""The OpenAI-compatible endpoints, called with the official ``openai`` client over HTTP."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator

import av
import httpx
import numpy as np
import openai
import pytest

from .conftest import RunningServer

pytestmark = [pytest.mark.serving, pytest.mark.integration]

SENTENCE = "The quick brown fox jumps over the lazy dog."
CHINESE = "你好，很高兴认识你。"


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=server.api_key,
                       max_retries=0, timeout=120.0) as client:
        yield client


def decode(data: bytes, fmt: str) -> tuple[np.ndarray, int]:
    """Mono float samples and their rate, as any player would decode them."""
    if fmt == "pcm":  # OpenAI's pcm: raw s16le mono at 24 kHz
        return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0, 24_000
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.audio[0]
        planes = [frame.to_ndarray().astype(np.float32) for frame in container.decode(stream)]
        rate = stream.rate
    samples = np.concatenate([p.reshape(-1) if p.shape[0] == 1 else p[0] for p in planes])
    if samples.dtype != np.float32 or np.abs(samples).max() > 2:
        samples = samples / 32768.0
    return samples, rate


@pytest.mark.parametrize("fmt", ["mp3", "opus", "aac", "flac", "wav", "pcm"])
def test_speech_comes_back_as_audible_speech_in_every_format(client: openai.OpenAI,
                                                             fmt: str) -> None:
    response = client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE,
                                          response_format=fmt)  # type: ignore[arg-type]
    samples, rate = decode(response.read(), fmt)
    duration_s = len(samples) / rate
    assert 1.5 < duration_s < 6.0, duration_s  # a sentence, not silence or garbage
    assert float(np.sqrt(np.mean(samples**2))) > 0.02  # audible


def test_speech_round_trips_through_transcription(client: openai.OpenAI,
                                                  wer: Callable[[str, str], float]) -> None:
    wav = client.audio.speech.create(model="tts-1", voice="echo", input=SENTENCE,
                                     response_format="wav").read()
    text = client.audio.transcriptions.create(model="whisper-1", file=("fox.wav", wav)).text
    assert wer(SENTENCE, text) <= 0.2, text
    plain = client.audio.transcriptions.create(model="whisper-1", file=("fox.wav", wav),
                                               response_format="text", language="en")
    assert wer(SENTENCE, str(plain)) <= 0.2, plain
    verbose = client.audio.transcriptions.create(model="whisper-1", file=("fox.wav", wav),
                                                 response_format="verbose_json")
    assert verbose.language == "en"
    assert 1.5 < verbose.duration < 6.0
    assert verbose.segments and verbose.segments[0].end == pytest.approx(verbose.duration)


def test_an_emotion_tag_is_not_read_out(client: openai.OpenAI,
                                        wer: Callable[[str, str], float]) -> None:
    wav = client.audio.speech.create(model="tts-1", voice="echo", input=f"[happy] {SENTENCE}",
                                     response_format="wav").read()
    text = client.audio.transcriptions.create(model="whisper-1", file=("fox.wav", wav),
                                              language="en").text
    assert "happy" not in text.lower() and wer(SENTENCE, text) <= 0.2, text


def test_speed_changes_the_length_of_the_speech(client: openai.OpenAI) -> None:
    def length_s(speed: float) -> float:
        data = client.audio.speech.create(model="tts-1", voice="alloy", input=SENTENCE,
                                          response_format="pcm", speed=speed).read()
        return len(data) / 2 / 24_000

    assert length_s(1.5) < 0.8 * length_s(1.0)


def test_chinese_text_is_detected_and_spoken_by_a_chinese_voice(client: openai.OpenAI) -> None:
    audio = client.audio.speech.create(model="tts-1", voice="nova", input=CHINESE,
                                       response_format="wav").read()
    samples, rate = decode(audio, "wav")
    assert len(samples) / rate > 0.8
    # An English-only voice named explicitly cannot speak it, and says so.
    with pytest.raises(openai.BadRequestError, match="speaks 'en'"):
        client.audio.speech.create(model="tts-1", voice="joe", input=CHINESE)


def test_talkface_voice_names_work_and_unknown_ones_are_listed(client: openai.OpenAI) -> None:
    assert client.audio.speech.create(model="tts-1", voice="espeak-en", input="Hello there.",
                                      response_format="wav").read()
    with pytest.raises(openai.BadRequestError, match=r"available voices: .*joe") as caught:
        client.audio.speech.create(model="tts-1", voice="no-such-voice", input="Hello.")
    assert caught.value.code == "bad_input"


def test_a_file_that_is_not_audio_is_refused_with_its_name(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=r"'notes\.wav' is not an audio file"):
        client.audio.transcriptions.create(model="whisper-1",
                                           file=("notes.wav", b"these are not sound waves" * 40))
    # A WAV header with nothing after it: damaged, also a 400, and the path is not leaked.
    header = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80\x3e\x00\x00" \
             b"\x00\x7d\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00"
    with pytest.raises(openai.BadRequestError) as caught:
        client.audio.transcriptions.create(model="whisper-1", file=("empty.wav", header))
    assert "/tmp" not in str(caught.value) and "empty.wav" in str(caught.value)


def test_audio_longer_than_the_limit_is_refused_with_413(client: openai.OpenAI,
                                                         server: RunningServer) -> None:
    limit_s = server.settings.server.limits.max_audio_s
    silence = np.zeros(int((limit_s + 3) * 8000), "<i2").tobytes()  # 8 kHz keeps it small
    with pytest.raises(openai.APIStatusError, match="at most") as caught:
        client.audio.transcriptions.create(model="whisper-1",
                                           file=("long.wav", _wav(silence, 8000)))
    assert caught.value.status_code == 413


def _wav(pcm: bytes, rate: int) -> bytes:
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(pcm)
    return buffer.getvalue()


def test_chat_completion_answers_with_usage(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o-mini", temperature=0, max_tokens=24,
        messages=[{"role": "system", "content": "You answer in one short sentence."},
                  {"role": "user", "content": "What colour is the sky on a clear day?"}],
    )
    choice = completion.choices[0]
    assert completion.object == "chat.completion" and completion.model == "gpt-4o-mini"
    assert choice.message.role == "assistant" and choice.message.content.strip()
    assert "blue" in choice.message.content.lower()
    assert completion.usage is not None and completion.usage.prompt_tokens > 10
    assert 0 < completion.usage.completion_tokens <= 24


def test_max_tokens_cuts_the_reply_and_says_length(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="any", max_tokens=3, messages=[{"role": "user", "content": "Tell me a long story."}],
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens <= 3


def test_streamed_chat_arrives_as_chunks_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="any", stream=True, max_tokens=24, temperature=0,
        stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Name three fruits."}],
    )
    chunks = list(stream)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content.strip()
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks
                if c.choices and c.choices[0].finish_reason]
    assert finishes in (["stop"], ["length"])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert len({c.id for c in chunks}) == 1


def test_the_raw_event_stream_ends_with_done(server: RunningServer) -> None:
    body = {"model": "x", "stream": True, "max_tokens": 8,
            "messages": [{"role": "user", "content": "Hi!"}]}
    with server.client() as http, \
            http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert events[-1] == "data: [DONE]"
    assert all(e.startswith("data: ") for e in events)
    first = json.loads(events[0].removeprefix("data: "))
    assert first["object"] == "chat.completion.chunk"


def test_a_chat_that_does_not_fit_the_context_is_refused(client: openai.OpenAI) -> None:
    # 3,500 rare CJK characters (Extension B, four UTF-8 bytes each): under the server's
    # text limit, but ~3 tokens a character in any vocabulary talkface ships (Qwen:
    # ~10,900; SmolLM2: ~14,000), far more than the 4,096-token context.
    dense = "".join(chr(0x20000 + 7 * i) for i in range(3500))
    with pytest.raises(openai.BadRequestError, match="model's context holds"):
        client.chat.completions.create(model="x", messages=[{"role": "user", "content": dense}])


def test_models_are_listed(client: openai.OpenAI, server: RunningServer) -> None:
    ids = [model.id for model in client.models.list()]
    llm = server.settings.llm.model  # a packaged model's name, as the user configured it
    assert llm in ids and "talkface-tts" in ids
    assert client.models.retrieve(llm).owned_by == "talkface"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-5")


def test_the_http_client_errors_are_openai_shaped(server: RunningServer) -> None:
    with httpx.Client(base_url=server.base_url) as http:
        response = http.post("/v1/chat/completions", json={"model": "x", "messages": []},
                             headers=server.headers())
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and "messages" in error["message"]
