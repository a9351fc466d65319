"""The short-window decoder's arithmetic and its guard against repetition loops."""

from __future__ import annotations

import pytest

from talkface.asr import _decoding as dec

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("duration_s", "window"),
    [(0.0, 10.0), (1.0, 10.0), (8.0, 10.0), (8.1, 12.0), (12.0, 14.0), (27.5, 30.0), (29.0, 30.0)],
)
def test_window_leaves_silence_after_the_speech(duration_s: float, window: float) -> None:
    assert dec.window_s(duration_s) == window
    assert window - min(duration_s, dec.MAX_SHORT_AUDIO_S) >= 1.0


def test_window_frames_are_even() -> None:
    assert dec.window_frames(10.0) == 1000
    assert dec.window_frames(30.0) == 3000


def test_token_cap_grows_with_the_audio_and_fits_the_decoder() -> None:
    assert dec.max_new_tokens(1.0, 4) == 20
    assert dec.max_new_tokens(10.0, 4) > dec.max_new_tokens(3.0, 4)
    assert dec.max_new_tokens(28.0, 20) + 20 < dec.MAX_DECODER_TOKENS


def test_a_loop_cut_by_the_token_cap_keeps_one_copy() -> None:
    what_time = [100, 101, 102, 103, 104]
    looped = what_time * 3 + what_time[:3]
    assert dec.collapse_repeats(looped, hit_cap=True) == what_time


def test_a_sentence_said_twice_is_kept_when_it_ended_by_itself() -> None:
    thank_you_twice = [5, 6, 7, 5, 6, 7]
    assert dec.collapse_repeats(thank_you_twice, hit_cap=False) == thank_you_twice
    assert dec.collapse_repeats(thank_you_twice, hit_cap=True) == [5, 6, 7]


def test_a_word_repeated_many_times_collapses() -> None:
    assert dec.collapse_repeats([9, 1, 1, 1, 1, 1], hit_cap=False) == [9, 1]
    assert dec.collapse_repeats([1, 2, 3, 4], hit_cap=True) == [1, 2, 3, 4]
    assert dec.collapse_repeats([], hit_cap=True) == []


def test_compression_ratio_flags_loops() -> None:
    assert dec.compression_ratio("What time is it?") < dec.COMPRESSION_RATIO_LIMIT
    assert dec.compression_ratio("Stop. " * 30) > dec.COMPRESSION_RATIO_LIMIT
    assert dec.compression_ratio("") == 0.0


def test_mean_logprob_counts_the_end_token() -> None:
    assert dec.mean_logprob(-1.0, 3) == pytest.approx(-0.75)
