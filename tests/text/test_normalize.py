"""Text normalisation: what the avatar actually says for what the LLM wrote."""

# Full-width, Chinese and typographic punctuation is what this module is about.

from __future__ import annotations

import doctest
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from talkface.text import normalize
from talkface.text.normalize import normalize_text

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("**Note:** this is *important*.", "Note: this is important."),
        (
            "__Bold__ and _italic_ and ~~gone~~ and ***both***.",
            "Bold and italic and gone and both.",
        ),
        ("Run `pip install talkface` first.", "Run pip install talkface first."),
        ("# Getting started\nInstall it.", "Getting started Install it."),
        ("- apples\n- pears\n* plums\n1. first\n2) second", "apples pears plums first second"),
        ("> quoted text", "quoted text"),
        ("See [the docs](https://example.com/docs) now.", "See the docs now."),
        ("![a cat](cat.png)", "a cat"),
        ("```python\nprint(x)\n```", "print(x)"),
        ("| a | b |\n|---|---|\n| c | d |", "a b c d"),
        ("line<br>break", "line break"),
        # A sentence cut out of a bold paragraph keeps one unmatched marker.
        ("**First sentence.", "First sentence."),
        ("snake_case_name", "snake_case_name"),
    ],
)
def test_markdown_is_not_read_aloud(written: str, spoken: str) -> None:
    assert normalize_text(written, "xx") == spoken


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("Great job! 🎉👍🏽", "Great job!"),
        ("I ❤️ it ⭐", "I it"),
        ("Family: 👨‍👩‍👧 and flags 🇨🇳", "Family: and flags"),
        ("tab\there\x00and\x07bell", "tab here and bell"),
        ("zero\u200bwidth\ufeff", "zerowidth"),
        ("  lots   of \n\n spaces  ", "lots of spaces"),
        ("Ｆｕｌｌ ｗｉｄｔｈ", "Full width"),
        ("Wow!!!", "Wow!"),
        ("Really?!?!", "Really?"),
        ("Wait....", "Wait…"),
        ("Hmm,,, okay;;", "Hmm, okay;"),
        ("好的！！！", "好的！"),
        ("Visit https://www.example.com/docs/intro?x=1.", "Visit example dot com."),
        ("Go to www.python.org now", "Go to python dot org now"),
        ("Try example.com.", "Try example dot com."),
        (
            "Write to alice.smith@example.co.uk today",
            "Write to alice dot smith at example dot co dot uk today",
        ),
        ("", ""),
        ("🎉", ""),
    ],
)
def test_language_independent_cleanup(written: str, spoken: str) -> None:
    assert normalize_text(written, "xx") == spoken


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        # cardinals, negatives, decimals
        ("1,234", "one thousand two hundred thirty-four"),
        ("There are 42 cats.", "There are forty-two cats."),
        ("1,000,000,000,000", "one trillion"),
        ("7,000,000", "seven million"),
        ("-5", "minus five"),
        ("3.14", "three point one four"),
        ("0.5 and .5", "zero point five and point five"),
        ("room 101", "room one hundred one"),
        # ordinals
        (
            "1st, 2nd, 3rd, 22nd and 101st",
            "first, second, third, twenty-second and one hundred first",
        ),
        # years: after a cue word, as a decade, in a date or range; bare 4-digit numbers
        # are read as numbers ("two thousand twenty-four" is right for a year too).
        ("in 1999", "in nineteen ninety-nine"),
        ("Since 2024, things changed.", "Since twenty twenty-four, things changed."),
        ("by 2005", "by two thousand five"),
        ("in 1905", "in nineteen oh five"),
        ("between 1990 and now", "between nineteen ninety and now"),
        ("the 1990s and the '80s", "the nineteen nineties and the eighties"),
        ("1990-1995", "nineteen ninety to nineteen ninety-five"),
        ("2024 people", "two thousand twenty-four people"),
        ("2024-01-15", "January fifteenth, twenty twenty-four"),
        ("March 5, 2024", "March fifth, twenty twenty-four"),
        ("5 March 2024", "the fifth of March, twenty twenty-four"),
        ("500 BC", "five hundred BC"),
        # times
        ("10:30", "ten thirty"),
        ("10:05", "ten oh five"),
        ("10:00", "ten o'clock"),
        ("9am", "nine AM"),
        ("at 9 p.m. we ate", "at nine PM we ate"),
        ("7:45 PM", "seven forty-five PM"),
        # money and percentages
        ("$1,234", "one thousand two hundred thirty-four dollars"),
        ("$12.50", "twelve dollars and fifty cents"),
        ("$1.01", "one dollar and one cent"),
        ("$0.99", "ninety-nine cents"),
        ("-$5", "minus five dollars"),
        ("€20", "twenty euros"),
        ("£3.20", "three pounds and twenty pence"),
        ("¥500", "five hundred yen"),
        ("$3.5 million", "three point five million dollars"),
        ("$5k", "five thousand dollars"),
        ("$5-10", "five to ten dollars"),
        ("$5 to $10", "five to ten dollars"),
        ("€2-3 million", "two to three million euros"),
        ("50%", "fifty percent"),
        ("12.5%", "twelve point five percent"),
        ("3-5%", "three to five percent"),
        # ranges and arithmetic
        ("3-5 years", "three to five years"),
        ("pages 10–20", "pages ten to twenty"),
        ("5 - 3 = 2", "five minus three equals two"),
        ("2+2=4", "two plus two equals four"),
        ("2*3", "two times three"),
        ("5x faster", "five times faster"),
        ("a 1920x1080 screen", "a one thousand nine hundred twenty by one thousand eighty screen"),
        # fractions, units, versions
        ("1/2 and 3/4", "one half and three quarters"),
        ("2/3", "two thirds"),
        ("24/7", "twenty-four seven"),
        ("25°C", "twenty-five degrees Celsius"),
        ("1 kg and 5 km", "one kilogram and five kilometers"),
        ("100 km/h", "one hundred kilometers per hour"),
        ("16 GB", "sixteen gigabytes"),
        ("v1.2.3", "version one point two point three"),
        ("MP3 and 3D", "MP three and three D"),
        # symbols
        ("Tom & Jerry", "Tom and Jerry"),
        ("C++", "C plus plus"),
        ("#1 fan", "number one fan"),
        ("No. 5", "number five"),
        ("about 90°", "about ninety degrees"),
        # abbreviations
        ("Mr. Smith vs. Dr. Jones", "Mister Smith versus Doctor Jones"),
        ("Mrs. Brown", "Missus Brown"),
        ("St. Louis is big", "Saint Louis is big"),
        ("I live on Main St.", "I live on Main Street."),
        ("apples, pears, etc.", "apples, pears, et cetera."),
        ("apples, etc. and pears", "apples, et cetera and pears"),
        ("fruit, e.g. apples", "fruit, for example, apples"),
        ("one thing, i.e. this", "one thing, that is, this"),
        # phone numbers and other long digit strings are read digit by digit
        ("Call 555-123-4567.", "Call five five five, one two three, four five six seven."),
        ("+1 555 123 4567", "plus one, five five five, one two three, four five six seven"),
        ("(555) 123-4567", "five five five, one two three, four five six seven"),
        ("order 123456789", "order one two three four five six seven eight nine"),
        ("agent 007", "agent zero zero seven"),
    ],
)
def test_english_numbers_symbols_and_abbreviations(written: str, spoken: str) -> None:
    assert normalize_text(written, "en") == spoken


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        ("123", "一百二十三"),
        ("10", "十"),
        ("0", "零"),
        ("110", "一百一十"),
        ("1005", "一千零五"),
        ("1,0005", "一万零五"),
        ("1,234", "一千二百三十四"),
        ("100000", "十万"),
        ("1000010", "一百万零一十"),
        ("300,000,000 和 3亿", "三亿和三亿"),
        ("2000", "两千"),
        ("我有2个苹果", "我有两个苹果"),
        ("第2名", "第二名"),
        ("3.14", "三点一四"),
        ("0.5", "零点五"),
        ("-5", "负五"),
        ("温度是-5度", "温度是负五度"),
        ("50%", "百分之五十"),
        ("增长了3.5%", "增长了百分之三点五"),
        ("10%-20%", "百分之十到百分之二十"),
        ("3‰", "千分之三"),
        ("2024年", "二零二四年"),
        ("2024年3月5日", "二零二四年三月五日"),
        ("2024-03-05", "二零二四年三月五日"),
        ("2020-2024年", "二零二零到二零二四年"),
        ("10年", "十年"),
        ("90年代", "九十年代"),
        ("10:30", "十点三十分"),
        ("10:00", "十点"),
        ("10:05", "十点零五分"),
        ("2:30", "两点三十分"),
        ("电话13800138000", "电话一三八零零一三八零零零"),
        ("电话010-12345678", "电话零一零一二三四五六七八"),
        ("¥100", "一百元"),
        ("￥12.50", "十二元五角"),
        ("¥3.05", "三元零五分"),
        ("$5", "五美元"),
        ("€20", "二十欧元"),
        ("3-5个", "三到五个"),
        ("3~5天", "三到五天"),
        ("1/2", "二分之一"),
        ("版本1.2.3发布了", "版本一点二点三发布了"),
        ("25°C", "二十五摄氏度"),
        ("5km", "五公里"),
        ("5 + 3 = 8", "五加三等于八"),
        ("A&B公司", "A和B公司"),
        ("v1.2.3版本", "v一点二点三版本"),
        ("１２３", "一百二十三"),
        ("３．１４", "三点一四"),
        # Latin-script words stay as they are, for the English voice.
        ("我用iPhone 15拍照", "我用iPhone 十五拍照"),
        ("**注意**：请看 https://example.com", "注意：请看 example dot com"),
        ("你好 世界", "你好世界"),
    ],
)
def test_chinese_numbers_and_symbols(written: str, spoken: str) -> None:
    assert normalize_text(written, "zh") == spoken


def test_other_languages_only_get_the_cleanup() -> None:
    assert normalize_text("**Hola**, tengo 3 gatos 🐱", "es") == "Hola, tengo 3 gatos"


# --- properties -------------------------------------------------------------------------

# fmt: off
_PIECES = [
    "1", "2", "10", "1,234", "3.14", "-", "$", "€", "£", "¥", "%", "°C", ":", "/", ".",
    ",", " ", "\n", "年", "个", "第", "*", "**", "_", "`", "#", "[", "](", ")", "http://",
    "www.", "@", "a", "b", "km", "st", "AM", "Dr.", "etc.", "e.g.", "0", "00", "123456789",
    "+", "(", "...", "!!", "？", "你好", "🎉", "\u200d", "Ｑ", "９",
]
# fmt: on
_texts = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(_PIECES), max_size=40).map("".join),
)
_languages = st.sampled_from(["en", "zh", "de"])


@settings(max_examples=500, deadline=None)
@given(text=_texts, language=_languages)
def test_any_text_normalizes_without_error_into_clean_text(text: str, language: str) -> None:
    spoken = normalize_text(text, language)
    assert spoken == spoken.strip()
    assert "  " not in spoken
    assert not re.search(
        r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\ufeff\U0001f300-\U0001faff]", spoken
    )
    assert normalize_text(text, language) == spoken  # deterministic
    spoken.encode("utf-8")  # no lone surrogates left for the TTS to choke on


@settings(max_examples=500, deadline=None)
@given(text=_texts, language=st.sampled_from(["en", "zh"]))
def test_no_digit_is_left_for_the_voice_to_guess(text: str, language: str) -> None:
    assert not re.search("[0-9]", normalize_text(text, language))


def test_the_examples_in_the_docstrings_are_right() -> None:
    result = doctest.testmod(normalize)
    assert result.attempted > 0
    assert result.failed == 0
