"""What every backend's reply goes through: no repetition loops, no sentence cut in half.

Small models fall into loops ("I can also help with your projects. I can also help with
your projects. ...") and, when the token budget runs out, stop in the middle of a
sentence, which the avatar would then speak. :class:`ReplyGuard` stands between a
backend's raw deltas and the request's stream and fixes both, in one place for every
backend:

* **Repetition.** Generation stops when a phrase of :data:`PHRASE_WORDS` words comes a
  second time (a Chinese character counts as half a word, so there it is 12
  characters). The sentence in which that happened is dropped.
* **Whole sentences.** The first sentence streams delta by delta, so the avatar can start
  speaking after a few words. After it, text is handed on a whole sentence at a time
  (the sentence splitter hands the speech stage whole sentences from then on anyway),
  so when the budget runs out, the unfinished last sentence is never handed on: not
  shown, not spoken, not kept in the history. Only a first sentence longer than the
  whole budget can still end unfinished.

A reply the model ends by itself is handed on whole, punctuation or not.
"""

from __future__ import annotations

import bisect
import collections
import re
from collections.abc import Callable

from talkface.text.sentences import SentenceSplitter, SplitOptions, ends_sentence

PHRASE_WORDS = 6
"""A phrase this many words long that comes again means the model is looping."""

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
_CJK_RE = re.compile(f"[{_CJK}]")
_WORD_RE = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")
_CJK_WEIGHT = 0.5  # a Chinese word is about two characters


class PhraseCounter:
    """Counts how often each phrase of ``words`` words has come, fed text piece by piece.

    Words are compared case-insensitively, without punctuation; a phrase may run across
    a sentence end. A word is counted once the character after it has arrived (or at
    ``final``), so a word split across deltas ("pro" + "jects") counts as one.

    Args:
        words: phrase length, in words; a Chinese (CJK) character counts as half a word.
    """

    def __init__(self, words: int = PHRASE_WORDS) -> None:
        self._words = words
        self._pending = ""  # text whose words are not all counted yet
        self._recent: collections.deque[tuple[str, float]] = collections.deque()
        self._counts: collections.Counter[tuple[str, ...]] = collections.Counter()

    def feed(self, text: str, *, final: bool = False) -> tuple[tuple[str, ...], int]:
        """Add text; return the most repeated phrase it completed and its count so far
        (``((), 0)`` when it completed none)."""
        self._pending += text
        best: tuple[tuple[str, ...], int] = ((), 0)
        done = 0
        for match in _WORD_RE.finditer(self._pending):
            word = match.group()
            cjk = _CJK_RE.fullmatch(word) is not None
            if match.end() == len(self._pending) and not final and not cjk:
                break  # the word may go on in the next delta
            done = match.end()
            phrase = self._add(word.casefold(), _CJK_WEIGHT if cjk else 1.0)
            if phrase:
                self._counts[phrase] += 1
                if self._counts[phrase] > best[1]:
                    best = (phrase, self._counts[phrase])
        self._pending = "" if final else self._pending[done:]
        return best

    def _add(self, word: str, weight: float) -> tuple[str, ...]:
        """Remember ``word``; the phrase of ``words`` words ending with it, if there is one."""
        self._recent.append((word, weight))
        total = sum(w for _, w in self._recent)
        while total - self._recent[0][1] >= self._words:
            total -= self._recent.popleft()[1]
        return tuple(w for w, _ in self._recent) if total >= self._words else ()


def repeated_phrase(text: str, *, words: int = PHRASE_WORDS, times: int = 3) -> str | None:
    """The first phrase of ``words`` words that comes ``times`` times in ``text``, or None.

    Example:
        >>> repeated_phrase("I can help you with that. " * 3)
        'i can help you with that'
        >>> repeated_phrase("Paris is the capital of France.") is None
        True
    """
    counter = PhraseCounter(words)
    for match in re.finditer(r"\S+\s*", text):
        phrase, count = counter.feed(match.group())
        if count >= times:
            return " ".join(phrase)
    phrase, count = counter.feed("", final=True)
    return " ".join(phrase) if count >= times else None


class ReplyGuard:
    """One reply's raw deltas in, the text to hand on out (see the module's description).

    Use: hand each raw delta to :meth:`feed` and pass on what it returns; stop generating
    when :attr:`stop_reason` is set; at the end, pass on what :meth:`finish` returns.

    Example:
        >>> guard = ReplyGuard()
        >>> [guard.feed(d) for d in ["Hi", " there.", " Nice", " day.", " And"]]
        ['Hi', ' there.', '', '', ' Nice day.']
        >>> guard.finish("length")
        ('', 'length')
    """

    def __init__(self) -> None:
        self._text = ""
        self._released = 0  # how much of _text was handed on
        self._sentences_end = 0  # where the last complete sentence of _text ends
        self._located = 0  # where the splitter's last piece was found in _text
        self._sentence_ends: list[int] = []  # where each complete sentence of _text ends
        self._splitter = SentenceSplitter(options=SplitOptions.whole_sentences())
        self._phrases = PhraseCounter()
        self.stop_reason: str | None = None
        """"repetition" once the reply started repeating itself; None while it may go on."""

    @property
    def text(self) -> str:
        """What was handed on so far."""
        return self._text[: self._released]

    @property
    def sentences_handed_on(self) -> int:
        """How many complete sentences were handed on so far."""
        return bisect.bisect_right(self._sentence_ends, self._released)

    def feed(self, delta: str) -> str:
        """Take the next raw delta; return the text to hand on now (often "")."""
        if self.stop_reason is not None:
            return ""
        self._text += delta
        if self._phrases.feed(delta)[1] >= 2:
            self.stop_reason = "repetition"
            return ""
        self._locate(self._splitter.feed(delta))
        if self._sentences_end == 0:
            end = len(self._text)  # the first sentence streams as it comes
        else:
            end = max(self._released, self._sentences_end)
        return self._release(end)

    def pass_on(self, delta: str, put: Callable[[str], None]) -> bool:
        """:meth:`feed` ``delta`` and ``put`` what is released; True once the guard has
        stopped the reply (the generation should end)."""
        if out := self.feed(delta):
            put(out)
        return self.stop_reason is not None

    def finish(self, finish_reason: str) -> tuple[str, str]:
        """End the reply: (the text still to hand on, the finish reason to report).

        Args:
            finish_reason: how the generation ended: "stop" (the model ended it),
                "length" (the budget ran out), "cancelled", or "error".
        """
        if self.stop_reason is not None:
            return "", self.stop_reason  # the sentence that repeats is dropped
        if finish_reason == "stop":
            return self._release(len(self._text)), finish_reason
        if finish_reason == "length":
            self._locate(self._splitter.flush())  # "... the end." is now known to end
            return self._release(max(self._released, self._sentences_end)), finish_reason
        return "", finish_reason

    def _locate(self, pieces: list[str]) -> None:
        """Move the sentence end past each complete piece the splitter cut."""
        for piece in pieces:
            found = self._text.find(piece, self._located)
            if found < 0:  # cannot happen: pieces are stripped slices of the text
                continue
            self._located = found + len(piece)
            if ends_sentence(piece):
                self._sentences_end = self._located
                self._sentence_ends.append(self._located)

    def _release(self, end: int) -> str:
        out = self._text[self._released : end]
        self._released = max(self._released, end)
        return out
