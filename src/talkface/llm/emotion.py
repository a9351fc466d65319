"""Which expression the avatar wears for a sentence: neutral, happy or serious.

An LLM asked to may tag its sentences ("[happy] Great to see you!"); the tag is taken
off before the sentence is spoken, and so is any square-bracket tag a small model puts
elsewhere ("Red, [serious] blue"). Untagged sentences (small models rarely follow such
instructions) are marked by a light keyword classifier on their text, English and
Chinese.
"""

from __future__ import annotations

import re

from talkface.messages import Emotion

_TAG = re.compile(r"^\s*[\[(<{]\s*(neutral|happy|serious|sad|excited|joy|calm)\s*[\])>}]\s*", re.I)
_STRAY_TAG = re.compile(r"\s*\[\s*(?:neutral|happy|serious|sad|excited|joy|calm)\s*\]", re.I)
_TAG_EMOTION = {
    "neutral": Emotion.NEUTRAL,
    "calm": Emotion.NEUTRAL,
    "happy": Emotion.HAPPY,
    "excited": Emotion.HAPPY,
    "joy": Emotion.HAPPY,
    "serious": Emotion.SERIOUS,
    "sad": Emotion.SERIOUS,
}
_HAPPY_WORDS = re.compile(
    r"\b(great|glad|happy|wonderful|awesome|fantastic|excellent|congratulations|welcome|"
    r"love|enjoy|delighted|fun|amazing|thank you|thanks|pleasure|hooray|yay)\b"
    r"|[!]\s*$|高兴|开心|太好了|欢迎|谢谢|祝贺|恭喜|很棒|喜欢|愉快",
    re.I,
)
_SERIOUS_WORDS = re.compile(
    r"\b(sorry|unfortunately|cannot|can't|unable|warning|careful|important|must|danger|"
    r"risk|problem|error|failed|sadly|regret|apologi[sz]e|urgent|never)\b"
    r"|抱歉|对不起|遗憾|不幸|注意|警告|重要|危险|不能|无法|错误|问题",
    re.I,
)


def take_emotion_tag(text: str) -> tuple[Emotion | None, str]:
    """(the tag's emotion, the text without it), or (None, text) when untagged."""
    match = _TAG.match(text)
    if match is None:
        return None, text
    return _TAG_EMOTION[match.group(1).lower()], text[match.end() :]


def classify_emotion(text: str) -> Emotion:
    """The expression that suits ``text`` (serious words win over happy ones)."""
    if _SERIOUS_WORDS.search(text):
        return Emotion.SERIOUS
    if _HAPPY_WORDS.search(text):
        return Emotion.HAPPY
    return Emotion.NEUTRAL


def sentence_emotion(text: str) -> tuple[Emotion, str]:
    """The emotion of a reply sentence and the text to speak."""
    tagged, rest = take_emotion_tag(text)
    rest = _STRAY_TAG.sub("", rest)
    return (tagged if tagged is not None else classify_emotion(rest)), rest
