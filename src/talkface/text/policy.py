"""What talkface accepts to speak, decided in one place.

Every entry point (``talkface say``, ``talkface chat``, a live session's hello and its
replies, render jobs, ``/v1/audio/speech``) checks text, language and voice here, so
they all accept the same requests and refuse the rest with the same message (a text is
called "the text" at every door, whatever the door's field is named):

* :func:`check_language`: only the languages talkface hears, answers and speaks end to
  end (:data:`SUPPORTED_LANGUAGES`);
* :func:`speech_text`: a text to speak: its length, its emotion tag (an expression, not
  words, parsed as the LLM's replies are), its language;
* :func:`choose_voice` / :func:`check_voice_language`: a voice that speaks the language.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from talkface.errors import BadInput, PayloadTooLarge
from talkface.llm.emotion import take_emotion_tag
from talkface.messages import Emotion
from talkface.text.language import detect_language
from talkface.text.sentences import split_sentences
from talkface.tts.base import VoiceInfo

SUPPORTED_LANGUAGES = ("en", "zh")
"""Languages with speech recognition, replies, normalisation and voices end to end."""

VoiceResolver = Callable[[str | None, str], VoiceInfo]
"""``(voice name or None, language) -> voice``: :meth:`talkface.runtime.Runtime.resolve_voice`."""


def check_language(language: str | None) -> str | None:
    """``language`` when talkface supports it end to end; None means "detect it".

    Raises:
        BadInput: any other language; the message names the supported ones.
    """
    if language is None or language in SUPPORTED_LANGUAGES:
        return language
    raise BadInput(
        f"language {language!r} is not supported; talkface speaks "
        f"{', '.join(SUPPORTED_LANGUAGES)} (or leave the language unset to detect it)"
    )


def check_text(text: str, *, limit_chars: int) -> str:
    """``text`` stripped, when it is within the limit and has words in it.

    Args:
        text: what a user asked to say or sent.
        limit_chars: the longest text accepted (``limits.max_text_chars``).

    Raises:
        PayloadTooLarge: longer than ``limit_chars``.
        BadInput: nothing to say (blank, only punctuation).
    """
    if len(text) > limit_chars:
        raise PayloadTooLarge(
            f"the text is {len(text)} characters; the limit is {limit_chars} "
            "(limits.max_text_chars): split it into shorter pieces"
        )
    stripped = text.strip()
    if not _has_words(stripped):
        raise BadInput("nothing to say: the text is empty")
    return stripped


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechText:
    """A text checked for speaking.

    Attributes:
        text: the words, without the leading emotion tag.
        language: its language (the one asked for, else detected from the words).
        emotion: the leading tag's expression (None: untagged).
    """

    text: str
    language: str
    emotion: Emotion | None = None

    def sentences(self) -> list[tuple[str, Emotion]]:
        """The sentences to speak, each with its expression.

        A tag holds until the next one ("[happy] Hi. Good to see you. [serious] But...");
        untagged text is neutral. Tags are taken off, never spoken.
        """
        emotion = self.emotion or Emotion.NEUTRAL
        out = []
        for piece in split_sentences(self.text, self.language):
            tagged, words = take_emotion_tag(piece)
            emotion = tagged or emotion
            if _has_words(words):
                out.append((words.strip(), emotion))
        return out


def speech_text(text: str, *, language: str | None, limit_chars: int) -> SpeechText:
    """Check a text to speak: its length, its emotion tag, its language.

    Args:
        text: the text as given ("[happy] Hello!").
        language: the language asked for (None: detect it from the words).
        limit_chars: the longest text accepted.

    Raises:
        PayloadTooLarge: too long.
        BadInput: nothing to say (or only a tag), or an unsupported language.
    """
    stripped = check_text(text, limit_chars=limit_chars)
    emotion, words = take_emotion_tag(stripped)
    if not _has_words(words):
        raise BadInput("nothing to say: the text is empty (it has only an emotion tag)")
    words = words.strip()
    return SpeechText(text=words, language=check_language(language) or detect_language(words),
                      emotion=emotion)


def check_voice_language(voice: VoiceInfo, language: str) -> None:
    """Refuse a voice that cannot speak ``language`` (espeak-ng voices speak any).

    Raises:
        BadInput: the voice speaks another language; the message says which to pick.
    """
    if voice.backend != "espeak" and voice.language != language:
        raise BadInput(
            f"voice {voice.name!r} speaks {voice.language!r}, but the text is "
            f"{language!r}; pick a {language!r} voice (see: talkface voices)"
        )


def choose_voice(resolve: VoiceResolver, name: str | None, language: str) -> VoiceInfo:
    """The voice called ``name`` (None: the language's default), checked for ``language``.

    Raises:
        BadInput: an unsupported language, an unknown voice, or one that cannot speak it.
    """
    check_language(language)
    voice = resolve(name, language)
    check_voice_language(voice, language)
    return voice


def _has_words(text: str) -> bool:
    return any(ch.isalnum() for ch in text)
