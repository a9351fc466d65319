"""The sentence splitter: where the avatar pauses, and that streaming never changes it."""

# Full-width, Chinese and typographic punctuation is what this module is about.

from __future__ import annotations

import doctest
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talkface.text import sentences
from talkface.text.sentences import SentenceSplitter, SplitOptions, split_sentences

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        (
            "Hello! How are you today? I am fine. Thanks for asking.",
            ["Hello!", "How are you today?", "I am fine.", "Thanks for asking."],
        ),
        # Decimals, money, abbreviations and titles do not end a sentence.
        (
            "Mr. Smith went to Washington. He paid $3.50 for coffee, e.g. a latte. Bye now.",
            [
                "Mr. Smith went to Washington.",
                "He paid $3.50 for coffee, e.g. a latte.",
                "Bye now.",
            ],
        ),
        # "etc." ends its sentence when a new one starts after it.
        (
            "Our shop is open. We sell apples, pears, etc. They are fresh. We have jam, etc. too.",
            [
                "Our shop is open.",
                "We sell apples, pears, etc.",
                "They are fresh.",
                "We have jam, etc. too.",
            ],
        ),
        # Ellipsis inside a sentence, versions, links and addresses.
        (
            "Well... maybe later. Version v1.2.3 is out. Visit example.com. Mail bob@x.io now.",
            [
                "Well... maybe later.",
                "Version v1.2.3 is out.",
                "Visit example.com.",
                "Mail bob@x.io now.",
            ],
        ),
        # Initials and "a.m." / "p.m.".
        (
            "J. K. Rowling wrote it. The meeting is at 5 p.m. Tomorrow we go.",
            ["J. K. Rowling wrote it.", "The meeting is at 5 p.m.", "Tomorrow we go."],
        ),
        # Closing quotes and brackets stay with their sentence.
        (
            'He said "Go home." Then he left. (This is an aside.) Next one.',
            ['He said "Go home."', "Then he left.", "(This is an aside.)", "Next one."],
        ),
        # Markdown lines are pieces of their own; "1." is a list marker, not a sentence.
        (
            "Here are the steps:\n1. Open the app.\n2. Click the button.\n\n- item one\n- item two",
            [
                "Here are the steps:",
                "1. Open the app.",
                "2. Click the button.",
                "- item one",
                "- item two",
            ],
        ),
        # Punctuation-only pieces are dropped.
        ("First line here.\n---\nSecond line here.", ["First line here.", "Second line here."]),
    ],
)
def test_english_reply_is_spoken_sentence_by_sentence(text: str, pieces: list[str]) -> None:
    assert split_sentences(text, "en") == pieces


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        (
            "你好！今天天气很好，我们去公园吧。然后去吃饭，好吗？",
            ["你好！", "今天天气很好，我们去公园吧。", "然后去吃饭，好吗？"],
        ),
        # A closing quote stays with its sentence; an ellipsis before more text is no end.
        ("我想……也许吧。“你好。”他说了很多。", ["我想……也许吧。", "“你好。”", "他说了很多。"]),
        ("圆周率是3.14。价格是1,234元。", ["圆周率是3.14。", "价格是1,234元。"]),
    ],
)
def test_chinese_reply_is_spoken_sentence_by_sentence(text: str, pieces: list[str]) -> None:
    assert split_sentences(text, "zh") == pieces


def test_first_piece_is_cut_at_a_clause_so_the_avatar_starts_talking_early() -> None:
    pieces = split_sentences(
        "Well, that is a great question, and the answer has several parts. "
        "First, we look at the data, then we decide.",
        "en",
    )
    # "Well," is too short to be worth a pause; the first clause after it is spoken alone.
    assert pieces[0] == "Well, that is a great question,"
    # Later sentences are not cut at their clauses.
    assert pieces[2] == "First, we look at the data, then we decide."


def test_first_chinese_piece_is_a_few_characters() -> None:
    pieces = split_sentences("好的，这个问题很有意思，我们一起来看一下吧。", "zh")
    assert pieces[0] == "好的，这个问题很有意思，"


def test_short_sentences_are_joined_to_the_next_one_except_the_first() -> None:
    assert split_sentences("Sure. OK. Let me explain how this works.", "en") == [
        "Sure.",
        "OK. Let me explain how this works.",
    ]


def test_long_sentence_is_cut_at_clauses_within_the_limit() -> None:
    text = (
        "This sentence goes on and on, with many clauses, and more words than anyone "
        "would want to hear at once, because the model is verbose; and it keeps going "
        "with even more words until it finally ends."
    )
    options = SplitOptions(first_piece_min_chars=200, min_piece_chars=10, max_piece_chars=80)
    pieces = split_sentences(text, "en", options)
    assert all(len(piece) <= 80 for piece in pieces)
    assert all(piece[-1] in ",;." for piece in pieces)
    assert " ".join(pieces) == text


def test_long_sentence_without_clauses_is_cut_between_words() -> None:
    text = " ".join(["word"] * 40) + "."
    pieces = split_sentences(text, "en", SplitOptions(max_piece_chars=30))
    assert all(len(piece) <= 30 for piece in pieces)
    assert all(set(piece.split()) <= {"word", "word."} for piece in pieces)


def test_long_chinese_sentence_is_cut_but_never_inside_a_latin_word() -> None:
    text = "这是一个非常长的句子" * 6 + "Transformer模型" + "没有标点符号" * 6
    pieces = split_sentences(text, "zh", SplitOptions(max_piece_chars=20, min_piece_chars=4))
    assert all(len(piece) <= 20 for piece in pieces if "Transformer" not in piece)
    assert any("Transformer" in piece for piece in pieces)
    assert "".join(pieces) == text


def test_streaming_waits_until_a_piece_is_certain() -> None:
    splitter = SentenceSplitter("en")
    # "3." may still become "3.50"; "Dr." never ends a sentence.
    assert splitter.feed("It costs $3.") == []
    assert splitter.feed("50 in total, Dr.") == ["It costs $3.50 in total,"]
    assert splitter.feed(" Smith said. ") == []  # is the next word a new sentence?
    assert splitter.feed("Then") == ["Dr. Smith said."]
    assert splitter.flush() == ["Then"]


def test_flush_starts_a_new_reply() -> None:
    splitter = SentenceSplitter("en")
    splitter.feed("A first reply that is long enough, with a clause.")
    splitter.flush()
    # The first-piece rule applies again to the next reply.
    assert splitter.feed("Hi, there. Next") == ["Hi, there."]
    assert splitter.flush() == ["Next"]


def test_language_is_detected_when_not_given() -> None:
    # Chinese thresholds: the first clause of a few characters is spoken alone.
    assert split_sentences("好的，这个问题很有意思，我们来看。")[0] == "好的，这个问题很有意思，"
    assert split_sentences("Hello, world. This is fine.") == ["Hello, world.", "This is fine."]


@pytest.mark.parametrize(
    "kwargs",
    [{"min_piece_chars": 0}, {"max_piece_chars": 5, "min_piece_chars": 10}],
)
def test_inconsistent_options_are_refused(kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="piece_chars"):
        SplitOptions(**kwargs)


def test_a_long_stream_gives_the_same_pieces_as_the_whole_text() -> None:
    # Long enough for the splitter to drop text it no longer needs, many times over.
    paragraph = (
        "Dr. Smith paid $3.50 for 2.5 kg of apples, pears, etc. He left at 5 p.m. "
        "Then... nothing happened!\n1. First item.\n  2. Second item.\n"
        "你好，这是一个测试。我们继续说下去吧！ Mixed text goes on here, and on.\n\n"
    )
    text = paragraph * 300
    rng = random.Random(1234)
    splitter, pieces, start = SentenceSplitter(), [], 0
    while start < len(text):
        end = start + rng.randint(1, 12)
        pieces += splitter.feed(text[start:end])
        start = end
    pieces += splitter.flush()
    assert pieces == split_sentences(text)
    assert len(pieces) > 1000


# --- properties over arbitrary text and arbitrary streaming ------------------------------

# fmt: off
_TOKENS = [
    "Hello", "world", "Dr.", "Mr.", "etc.", "e.g.", "U.S.", "a.m.", "3.14", "1,234", "v1.2.3",
    "example.com", "J.", "No.", "1.", "10:30", "...", "…", ".", "!", "?", "?!", ",", ";", ":",
    " - ", "—", "\n", "\n\n", " ", "  ", '"', "”", ")", "(", "**", "---", "你好", "我们", "。",
    "！", "？", "，", "、", "……", "」", "「", "OK", "the", "I", "a", "2", "GPT",
]
# fmt: on
_texts = st.one_of(
    st.lists(st.sampled_from(_TOKENS), max_size=60).map("".join),
    st.text(max_size=200),
)
_languages = st.sampled_from([None, "en", "zh"])
_options = st.sampled_from(
    [
        None,
        SplitOptions(first_piece_min_chars=3, min_piece_chars=2, max_piece_chars=8),
        SplitOptions(first_piece_min_chars=1, min_piece_chars=1, max_piece_chars=1),
    ]
)


def _no_space(text: str) -> str:
    return "".join(text.split())


@settings(max_examples=400, deadline=None)
@given(
    text=_texts,
    cuts=st.lists(st.integers(min_value=0, max_value=400)),
    language=_languages,
    options=_options,
)
def test_pieces_do_not_depend_on_how_the_reply_was_streamed(
    text: str, cuts: list[int], language: str | None, options: SplitOptions | None
) -> None:
    expected = split_sentences(text, language, options)
    splitter = SentenceSplitter(language, options=options)
    pieces, start = [], 0
    for end in [*sorted({c for c in cuts if c <= len(text)}), len(text)]:
        pieces += splitter.feed(text[start:end])
        start = end
    pieces += splitter.flush()
    assert pieces == expected


@settings(max_examples=400, deadline=None)
@given(text=_texts, language=_languages, options=_options)
def test_pieces_say_the_whole_reply_in_order(
    text: str, language: str | None, options: SplitOptions | None
) -> None:
    pieces = split_sentences(text, language, options)
    source, at = _no_space(text), 0
    for piece in pieces:
        assert piece == piece.strip()
        assert any(ch.isalnum() for ch in piece)
        found = source.find(_no_space(piece), at)
        assert found >= 0, piece
        # Only punctuation-only pieces were dropped between two spoken ones.
        assert not any(ch.isalnum() for ch in source[at:found])
        at = found + len(_no_space(piece))
    assert not any(ch.isalnum() for ch in source[at:])


def test_the_examples_in_the_docstrings_are_right() -> None:
    result = doctest.testmod(sentences)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize(
    ("text", "first"),
    [
        (
            "Our store opens at nine in the morning and closes at six in the evening.",
            "Our store opens at nine in the morning",
        ),
        (
            "The weather tomorrow will be sunny with a light breeze from the west.",
            "The weather tomorrow will be sunny",
        ),
    ],
)
def test_a_long_first_sentence_without_commas_is_cut_before_a_phrase(text: str, first: str) -> None:
    pieces = split_sentences(text, "en")
    assert pieces[0] == first
    assert " ".join(pieces) == text
