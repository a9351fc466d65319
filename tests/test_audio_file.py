"""Audio files users give ``talkface chat --audio``: decoded when usable, refused clearly."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from talkface import audio_file
from talkface.audio_file import load_audio_file
from talkface.errors import BadInput, PayloadTooLarge

pytestmark = pytest.mark.unit


def write_wav(path: Path, samples: np.ndarray, rate: int, channels: int = 1) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as file:
        file.setnchannels(channels)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(pcm.tobytes())
    return path


def write_encoded(path: Path, codec: str, seconds: float, rate: int = 48_000) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "stereo"
        t = np.arange(int(seconds * rate)) / rate
        left = 0.3 * np.sin(2 * np.pi * 440 * t)
        planes = np.stack([left, left]).astype(np.float32)
        size = 960
        for begin in range(0, planes.shape[1] - size + 1, size):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(planes[:, begin : begin + size]),
                format="fltp",
                layout="stereo",
            )
            frame.sample_rate = rate
            frame.pts = begin
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return path


def test_stereo_48khz_wav_becomes_16khz_mono(tmp_path: Path) -> None:
    t = np.arange(96_000) / 48_000
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    stereo = np.stack([left, 0.5 * left], axis=1).reshape(-1)  # interleaved L R
    audio, info = load_audio_file(write_wav(tmp_path / "q.wav", stereo, 48_000, channels=2))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert len(audio) == 32_000
    assert (info.source_rate_hz, info.channels, info.codec) == (48_000, 2, "pcm_s16le")
    assert info.duration_s == pytest.approx(2.0)
    # Mean of both channels: 0.75 of the left channel's amplitude.
    assert np.abs(audio[1000:-1000]).max() == pytest.approx(0.375, abs=0.02)


@pytest.mark.parametrize(("name", "codec"), [("q.mp3", "mp3"), ("q.ogg", "libopus")])
def test_compressed_formats_are_decoded(tmp_path: Path, name: str, codec: str) -> None:
    audio, info = load_audio_file(write_encoded(tmp_path / name, codec, 2.0))
    assert len(audio) / 16_000 == pytest.approx(2.0, abs=0.1)
    assert info.channels == 2
    assert 0.2 < np.abs(audio).max() <= 1.0


def test_silence_and_noise_are_valid_audio(tmp_path: Path) -> None:
    silent, _ = load_audio_file(write_wav(tmp_path / "s.wav", np.zeros(48_000), 16_000))
    assert len(silent) == 48_000 and not silent.any()
    noise = np.random.default_rng(0).normal(0, 0.3, 48_000)
    noisy, _ = load_audio_file(write_wav(tmp_path / "n.wav", noise, 16_000))
    assert noisy.std() > 0.2


def test_ten_minutes_are_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_wav(tmp_path / "long.wav", np.zeros(600 * 8_000), 8_000)

    def must_not_decode(*args: object) -> None:
        raise AssertionError("the file was decoded before its length was checked")

    monkeypatch.setattr(audio_file, "_decode_mono", must_not_decode)
    with pytest.raises(PayloadTooLarge, match=r"600 s long; .* at most 120 s"):
        load_audio_file(path)


def test_a_file_without_a_trustworthy_length_is_stopped_while_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_wav(tmp_path / "long.wav", np.zeros(20 * 16_000), 16_000)
    monkeypatch.setattr(audio_file, "_check_declared_duration", lambda *args: None)
    with pytest.raises(PayloadTooLarge, match="at most 5 s"):
        load_audio_file(path, max_duration_s=5)


def lying_wav(path: Path, declared_bytes: int = 0x7FFF_FFF0) -> Path:
    """One second of 16 kHz audio whose header declares ``declared_bytes`` of it."""
    wav = bytearray(write_wav(path, np.zeros(16_000), 16_000).read_bytes())
    data = wav.index(b"data")
    wav[data + 4 : data + 8] = struct.pack("<I", declared_bytes)
    wav[4:8] = struct.pack("<I", min(declared_bytes + data - 4, 0xFFFF_FFFF))
    path.write_bytes(bytes(wav))
    return path


def test_a_wav_header_that_declares_more_than_the_file_holds_is_refused_unread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 2 GiB declared (18 hours at 16 kHz), one second held: refused from the header alone.
    path = lying_wav(tmp_path / "lying.wav")

    def must_not_open(*args: object, **kwargs: object) -> None:
        raise AssertionError("the file was opened by FFmpeg before its header was checked")

    import av

    monkeypatch.setattr(av, "open", must_not_open)
    with pytest.raises(BadInput, match=r"header .* says it holds 67109 s of audio, but the "
                                       r"file has only 1.0 s: the header is damaged"):
        load_audio_file(path)


def test_a_wav_header_that_does_not_know_its_length_is_read_to_the_limit(tmp_path: Path) -> None:
    # 0xFFFFFFFF: "unknown", what streaming recorders write; the samples are what counts.
    audio, info = load_audio_file(lying_wav(tmp_path / "streamed.wav", 0xFFFF_FFFF))
    assert len(audio) == 16_000 and info.duration_s == pytest.approx(1.0)


def test_a_header_naming_an_encoding_ffmpeg_cannot_decode_is_refused(tmp_path: Path) -> None:
    wav = bytearray(write_wav(tmp_path / "odd.wav", np.zeros(16_000), 16_000).read_bytes())
    wav[34:36] = struct.pack("<H", 60_000)  # bits per sample
    (tmp_path / "odd.wav").write_bytes(bytes(wav))
    with pytest.raises(BadInput, match="encoding FFmpeg cannot decode; convert it to WAV"):
        load_audio_file(tmp_path / "odd.wav")


def test_missing_empty_and_non_audio_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="does not exist"):
        load_audio_file(tmp_path / "nope.wav")
    with pytest.raises(BadInput, match="not a file"):
        load_audio_file(tmp_path)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(BadInput, match="empty"):
        load_audio_file(tmp_path / "empty.wav")
    (tmp_path / "notes.wav").write_text("this is a text file, not a recording\n" * 50)
    with pytest.raises(BadInput, match="not an audio file"):
        load_audio_file(tmp_path / "notes.wav")


def test_a_corrupt_wav_is_refused(tmp_path: Path) -> None:
    junk = np.random.default_rng(1).integers(0, 255, 4000, dtype=np.uint8).tobytes()
    (tmp_path / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt " + junk)
    with pytest.raises(BadInput, match=r"convert it to WAV"):
        load_audio_file(tmp_path / "broken.wav")


def test_a_file_with_no_samples_is_refused(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "nothing.wav", np.zeros(0), 16_000)
    with pytest.raises(BadInput, match="no audio samples"):
        load_audio_file(path)


@pytest.mark.parametrize("rate", [1, 4_000, 10_000_000])
def test_absurd_sample_rates_are_refused(tmp_path: Path, rate: int) -> None:
    path = write_wav(tmp_path / "rate.wav", np.zeros(16_000), 16_000)
    header = bytearray(path.read_bytes())
    header[24:28] = struct.pack("<I", rate)
    header[28:32] = struct.pack("<I", rate * 2)
    path.write_bytes(bytes(header))
    with pytest.raises(BadInput, match="sample rate"):
        load_audio_file(path)
