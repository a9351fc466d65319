"""Make LLM text speakable: strip Markdown and emoji, read numbers, symbols and links.

A TTS voice reads what it is given: "**Note**" becomes "asterisk asterisk note", "$3.50"
becomes "dollar three point five zero" or worse, and an emoji may be spelt out by name.
:func:`normalize_text` rewrites one sentence (as cut by :mod:`talkface.text.sentences`)
into plain words of its language. It is pure Python and regular expressions: fast,
deterministic, and it never raises.
"""

# Full-width, Chinese and typographic punctuation is what this module is about.

from __future__ import annotations

import re
import unicodedata

from talkface.text._numbers_en import normalize_en
from talkface.text._numbers_zh import normalize_zh

# Full-width forms of ASCII letters and digits, and of the symbols the number rules
# read; full-width Chinese punctuation (，。！？：) is left alone.
_FULL_WIDTH = {
    **{code: code - 0xFEE0 for code in range(0xFF10, 0xFF1A)},  # ０-９
    **{code: code - 0xFEE0 for code in range(0xFF21, 0xFF3B)},  # Ａ-Ｚ
    **{code: code - 0xFEE0 for code in range(0xFF41, 0xFF5B)},  # ａ-ｚ
    **{ord(c): ord(c) - 0xFEE0 for c in "％＋＝＠＃＆＄＜＞＊／＿"},
    0xFFE5: ord("¥"),  # ￥ full-width yen/yuan sign
    0x2212: ord("-"),  # − minus sign
    0x3000: ord(" "),  # ideographic space
}
# "３．１４" and "１０：３０" become "3.14" and "10:30" once their digits are half-width.
_DIGIT_PUNCTUATION_RE = re.compile(r"(?<=[0-9])([．：，])(?=[0-9])")
_DIGIT_PUNCTUATION = {"．": ".", "：": ":", "，": ","}

_EMOJI_RE = re.compile(
    "["
    "\U0001f000-\U0001faff"  # emoji, pictographs, playing cards, mahjong, flags
    "\u2300-\u23ff"  # misc technical: ⌚ ⏰ ⏳
    "\u2600-\u27bf"  # misc symbols and dingbats: ☀ ★ ✅ ❤
    "\u2b00-\u2bff"  # arrows and stars: ⬆ ⭐
    "\ufe00-\ufe0f"  # variation selectors
    "\u200d\u20e3"  # zero-width joiner, combining keycap
    "\U000e0000-\U000e007f"  # tag characters (flag sequences)
    "\ue000-\uf8ff\U000f0000-\U0010ffff"  # private use
    "\ud800-\udfff"  # lone surrogates, which cannot even be encoded to UTF-8
    "]"
)

# --- Markdown ---------------------------------------------------------------------------
_CODE_FENCE_RE = re.compile(r"^\s*(```+|~~~+)[\w+-]*\s*$", re.MULTILINE)
_INLINE_CODE_RE = re.compile(r"`+([^`\n]*)`+")
_IMAGE_RE = re.compile(r"!\[([^\]\n]*)\]\([^)\n]*\)")
_LINK_RE = re.compile(r"\[([^\]\n]*)\]\([^)\n]*\)")
_AUTOLINK_RE = re.compile(r"<((?:https?://|mailto:)[^>\s]+)>")
_HTML_TAG_RE = re.compile(r"</?[A-Za-z][A-Za-z0-9]*(?:\s[^<>\n]*)?/?>")
# Emphasis needs a non-word character (or the text's end) outside its markers, so that
# "2*3*4" and "snake_case_name" are left alone.
_EMPHASIS_RE = re.compile(
    r"(?<![\w*])(\*{1,3})(?=\S)([^*\n]*?\S)\1(?![\w*])"
    r"|(?<![\w_])(_{1,3})(?=\S)([^_\n]*?\S)\3(?![\w_])"
    r"|~~(?=\S)([^~\n]*?\S)~~"
)
# A lone "*" between digits ("2*3") is a multiplication sign.
_STRAY_MARKERS_RE = re.compile(r"\*{2,}|(?<![0-9\s])\*|\*(?![\s0-9])")
_HEADING_RE = re.compile(r"^[ \t]*#{1,6}[ \t]+", re.MULTILINE)
_RULE_LINE_RE = re.compile(r"^[ \t]*([-*_=])(?:[ \t]*\1){2,}[ \t]*$", re.MULTILINE)
_LIST_MARKER_RE = re.compile(r"^[ \t]*(?:[-*+•]|[0-9]{1,2}[.)])[ \t]+", re.MULTILINE)
_QUOTE_RE = re.compile(r"^[ \t]*(?:>[ \t]?)+", re.MULTILINE)
_TABLE_RULE_RE = re.compile(r"^[ \t|:-]*-{3,}[ \t|:-]*$", re.MULTILINE)

# --- links ------------------------------------------------------------------------------
_URL_RE = re.compile(
    r"\b(?:https?://|ftp://|www\.)"
    r"(?:www\.)?(?P<host>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)(?::[0-9]+)?"
    r"(?P<rest>[/?#][^\s<>\"'()\[\]]*)?"
)
_EMAIL_RE = re.compile(
    # The look-behind starts a match only where a user name can start: without it, every
    # position of a long run of name characters would be tried, in quadratic time.
    r"(?<![A-Za-z0-9._%+-])(?:mailto:)?(?P<user>[A-Za-z0-9._%+-]+)@(?P<host>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
)
_BARE_DOMAIN_RE = re.compile(
    r"(?<![\w.@/-])(?P<host>(?:[A-Za-z0-9-]+\.)+(?:com|org|net|edu|gov|io|ai|dev|app|co|"
    r"cn|uk|de|jp|fr|info)(?:\.cn|\.uk|\.jp)?)(?![\w@-]|\.[A-Za-z0-9])"
)

# --- punctuation and spaces -------------------------------------------------------------
_REPEATED_MARKS_RE = re.compile(r"[!?！？]{2,}")
_DOTS_RE = re.compile(r"(?<![0-9])\.{2,}|。{2,}|…+|(?<=[0-9])\.{3,}")
_REPEATED_PUNCT_RE = re.compile(r"([,;:，；：、~～])\1+")
_DASHES_RE = re.compile(r"(?<![\w-])-{2,}(?![\w-])|—{2,}|(?<=\w)--(?=\w)")
_SPACES_RE = re.compile(r"\s+")
_SPACE_BEFORE_PUNCT_RE = re.compile(r"\s+(?=[,.!?;:…，。！？；：、)\]}”’])")
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_PUNCT = "，。！？；：、（）《》「」『』“”‘’…—"
_SPACE_IN_CHINESE_RE = re.compile(
    f"(?<=[{_HAN}{_CJK_PUNCT}])\\s+(?=[{_HAN}{_CJK_PUNCT}0-9])|(?<=[{_HAN}0-9])\\s+(?=[{_HAN}])"
)


def normalize_text(text: str, language: str) -> str:
    """Rewrite ``text`` into words a TTS voice of ``language`` reads correctly.

    Language-independent cleanup: Markdown markup is removed (its text kept), as are
    emoji, control and zero-width characters; full-width letters and digits become
    ASCII; links are shortened to their host ("example dot com"), e-mail addresses read
    as "name at example dot com"; repeated punctuation is collapsed and whitespace
    becomes single spaces.

    Then, for ``"en"``: numbers, decimals, ordinals, years, dates, times, money,
    percentages, ranges, units, common symbols and abbreviations become English words
    ("$12.50" → "twelve dollars and fifty cents"). For ``"zh"``: the same become
    Chinese ("2024年" → "二零二四年", "50%" → "百分之五十"); Latin-script words are left
    as they are, for an English voice. Other languages get the cleanup only.

    Args:
        text: one sentence or a few, as the LLM wrote them.
        language: ``"en"``, ``"zh"`` or another code.

    Returns:
        The text to speak; empty when nothing speakable is left.

    Example:
        >>> normalize_text("**Total:** $1,234 (about 50%) 🎉", "en")
        'Total: one thousand two hundred thirty-four dollars (about fifty percent)'
    """
    text = _clean(text)
    text = _strip_markdown(text)
    text = _speak_links(text)
    text = _collapse_punctuation(text)
    if language == "en":
        text = normalize_en(text)
    elif language == "zh":
        text = normalize_zh(text)
    text = _SPACES_RE.sub(" ", text).strip()
    text = _SPACE_BEFORE_PUNCT_RE.sub("", text)
    if language == "zh":
        text = _SPACE_IN_CHINESE_RE.sub("", text)
    return text


def _clean(text: str) -> str:
    text = text.translate(_FULL_WIDTH)
    text = _DIGIT_PUNCTUATION_RE.sub(lambda m: _DIGIT_PUNCTUATION[m.group(1)], text)
    text = _EMOJI_RE.sub("", text)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Control characters (Cc) except newline become spaces; format characters (Cf:
    # zero-width spaces, BOMs, bidi marks) vanish.
    return "".join(
        " " if category == "Cc" and ch != "\n" else ch
        for ch in text
        if (category := unicodedata.category(ch)) != "Cf"
    )


def _strip_markdown(text: str) -> str:
    text = _CODE_FENCE_RE.sub("", text)
    text = _INLINE_CODE_RE.sub(r"\1", text)
    text = _IMAGE_RE.sub(r"\1", text)
    text = _LINK_RE.sub(r"\1", text)
    text = _AUTOLINK_RE.sub(r"\1", text)
    text = _HTML_TAG_RE.sub(" ", text)
    text = _TABLE_RULE_RE.sub("", text)
    text = _RULE_LINE_RE.sub("", text)
    text = _HEADING_RE.sub("", text)
    text = _QUOTE_RE.sub("", text)
    text = _LIST_MARKER_RE.sub("", text)
    for _ in range(3):  # nested emphasis: ***bold italic***, **bold _italic_**
        text = _EMPHASIS_RE.sub(lambda m: m[2] or m[4] or m[5] or "", text)
    # Unmatched markers: a sentence cut out of "**a. b.**" keeps one "**".
    text = _STRAY_MARKERS_RE.sub("", text)
    return text.replace("|", " ")


def _say_host(host: str) -> str:
    return " dot ".join(part for part in host.split(".") if part)


def _url(match: re.Match[str]) -> str:
    # The path is not worth hearing; the sentence's own punctuation after it
    # ("see https://example.com/docs.") is kept.
    rest = match["rest"] or ""
    return _say_host(match["host"]) + rest[len(rest.rstrip(".,;:!?")) :]


def _speak_links(text: str) -> str:
    text = _URL_RE.sub(_url, text)
    text = _EMAIL_RE.sub(lambda m: f"{_say_host(m['user'])} at {_say_host(m['host'])}", text)
    return _BARE_DOMAIN_RE.sub(lambda m: _say_host(m["host"]), text)


def _collapse_punctuation(text: str) -> str:
    def _marks(match: re.Match[str]) -> str:
        run = match.group(0)
        full_width = "？" in run or "！" in run
        if "?" in run or "？" in run:
            return "？" if full_width else "?"
        return "！" if full_width else "!"

    text = _REPEATED_MARKS_RE.sub(_marks, text)
    text = _DOTS_RE.sub("…", text)
    text = _REPEATED_PUNCT_RE.sub(r"\1", text)
    return _DASHES_RE.sub(" — ", text)
