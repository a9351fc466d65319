"""Cut the LLM's streamed reply into pieces the TTS can speak as soon as they are complete.

The avatar starts talking while the LLM is still writing: every delta goes into a
:class:`SentenceSplitter`, which hands back each sentence (or, for a long sentence, each
clause) the moment it is certain to be complete. The first piece of a reply is cut
early, at its first clause boundary, so the first audio comes sooner.

A streaming splitter can only cut where the text that follows cannot change the
decision: "3." may become "3.14", "Dr." is not the end of anything, and "etc." ends a
sentence only if the next word starts one. So :meth:`SentenceSplitter.feed` waits for
the characters it needs, and every decision depends on the text alone, never on how it
was cut into deltas: the same reply always gives the same pieces.

The splitter does not normalise text; run :func:`talkface.text.normalize.normalize_text`
on each piece.
"""

# Full-width, Chinese and typographic punctuation is what this module is about.

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from talkface.text.language import detect_language


@dataclass(frozen=True, slots=True, kw_only=True)
class SplitOptions:
    """Where a reply may be cut. Lengths count characters of the stripped piece.

    The defaults suit English; :meth:`for_language` gives the Chinese ones, where a
    character carries about a syllable rather than a letter.

    Attributes:
        first_piece_min_chars: the first piece of a reply is cut at its first clause
            boundary (, ; : — ， ； ： 、) once it has at least this many characters, so
            the first audio starts after a few words rather than a whole sentence.
        min_piece_chars: a sentence shorter than this ("OK.", "Yes!") is joined to the
            next one instead of being spoken alone, except as the first piece. Cuts
            inside a long sentence never leave a piece shorter than this either.
        max_piece_chars: a sentence longer than this is cut at its last clause boundary
            within the limit, failing that at its last word boundary (in Chinese: between
            any two characters but inside a Latin word or a number), failing that at the
            first word boundary after the limit.
        first_piece_max_chars: a first piece with no clause boundary is cut once it is
            this long: before the last phrase-starting word ("and", "in", "because"...)
            that leaves at least ``first_piece_min_chars``, else at the word boundary
            reached. A long first sentence would otherwise delay the first audio by
            its whole synthesis time.
    """

    first_piece_min_chars: int = 16
    min_piece_chars: int = 10
    max_piece_chars: int = 160
    first_piece_max_chars: int = 48

    def __post_init__(self) -> None:
        for name in ("first_piece_min_chars", "min_piece_chars", "max_piece_chars",
                     "first_piece_max_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.min_piece_chars > self.max_piece_chars:
            raise ValueError(
                f"min_piece_chars={self.min_piece_chars} is more than "
                f"max_piece_chars={self.max_piece_chars}; lower the first or raise the second"
            )

    @classmethod
    def for_language(cls, language: str) -> SplitOptions:
        """The default options for ``language`` (``"zh"``, or English for anything else)."""
        return _ZH_OPTIONS if language == "zh" else _EN_OPTIONS

    @classmethod
    def whole_sentences(cls) -> SplitOptions:
        """Options that cut only where a sentence or a line ends, however short or long it
        is (for code that needs sentence boundaries rather than speakable pieces)."""
        return _WHOLE_SENTENCE_OPTIONS


_EN_OPTIONS = SplitOptions()
_ZH_OPTIONS = SplitOptions(
    first_piece_min_chars=5, min_piece_chars=4, max_piece_chars=50, first_piece_max_chars=50
)
_UNLIMITED_CHARS = 1 << 30
_WHOLE_SENTENCE_OPTIONS = SplitOptions(
    first_piece_min_chars=_UNLIMITED_CHARS,
    min_piece_chars=1,
    max_piece_chars=_UNLIMITED_CHARS,
    first_piece_max_chars=_UNLIMITED_CHARS,
)
# Words that start a phrase: a first piece cut before one of them still sounds whole.
_PHRASE_STARTERS = frozenset(
    "and but or so because which who that where when while if although though as to in "
    "on at for with from by about after before until since into over under".split()
)


class _Cut(enum.Enum):
    SENTENCE = "sentence"
    CLAUSE = "clause"
    WORD = "word"


_TERMINATORS = frozenset(".!?…。！？")
_CJK_TERMINATORS = frozenset("。！？")
# Closing quotes and brackets (and Markdown emphasis) after a terminator stay with it.
_CLOSERS = frozenset("\"')]}»”’」』）》】〕〉*_`")
_CJK_CLAUSE = frozenset("，；：、")
_LATIN_CLAUSE = frozenset(",;:")
# Never the end of a sentence: they stand before what they introduce.
_NEVER_END = frozenset(
    "Mr Mrs Ms Dr Prof St Mt Gen Capt Sgt Rev Sen Rep Gov vs e.g i.e cf approx Fig fig".split()
)
_LATIN_TOKEN_RE = re.compile(r"[A-Za-z][A-Za-z.]*$")
_CJK_RE = re.compile(
    "[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]"
)
_HAN_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_OPENERS = frozenset("\"'(“‘「『《[")
# How much text before a decision point the language is detected on.
_LANGUAGE_WINDOW_CHARS = 200
# Text before the current piece is kept for look-behind (abbreviations, list markers,
# language) and dropped beyond this, so a long stream does not grow without bound.
_KEEP_BEHIND_CHARS = 256
_COMPACT_AFTER_CHARS = 8192


def _is_cjk(ch: str) -> bool:
    return bool(ch) and _CJK_RE.match(ch) is not None


def _is_han(ch: str) -> bool:
    return _HAN_RE.match(ch) is not None


def _speakable(piece: str) -> bool:
    return any(ch.isalnum() for ch in piece)


class SentenceSplitter:
    """Incremental: feed LLM text deltas, get speakable pieces as soon as they are complete.

    A piece ends at . ! ? … 。 ！ ？ (with any closing quotes and brackets) or at a line
    break, but not at a decimal point ("3.14"), a version ("v1.2.3"), a link or address
    ("example.com"), an abbreviation ("Dr.", "e.g.", "U.S."), an initial ("J. Smith"), a
    numbered list marker ("1. ") or an ellipsis inside a sentence ("well... maybe").
    "etc." and "a.m." end a sentence when the next word starts one. Latin terminators
    need a space, a line break, a Chinese character or the end of the reply after them;
    Chinese ones do not. See :class:`SplitOptions` for how long pieces may be.

    Pieces are stripped of surrounding whitespace; pieces without a letter, digit or
    Chinese character ("---", "**") are dropped. After :meth:`flush` the splitter is
    ready for the next reply.

    Args:
        language: ``"en"``, ``"zh"``, or None to detect it (for each cut, on the text
            up to that point) with :func:`talkface.text.language.detect_language`.
        options: where to cut; default: ``SplitOptions.for_language(language)``.

    Example:
        >>> splitter = SentenceSplitter("en")
        >>> splitter.feed("Hello there, my friend! Dr. Smith paid $3.")
        ['Hello there, my friend!']
        >>> splitter.feed("50 today.")
        []
        >>> splitter.flush()
        ['Dr. Smith paid $3.50 today.']
    """

    def __init__(self, language: str | None = None, *, options: SplitOptions | None = None) -> None:
        self._language = language
        self._options = options
        self._reset()

    def _reset(self) -> None:
        self._text = ""  # everything fed since the start of the reply (compacted)
        self._start = 0  # where the current piece begins in _text
        self._scan = 0  # the next character of _text to examine
        self._clause_cut: int | None = None  # last clause boundary that may end the piece
        self._word_cut: int | None = None  # last word boundary that may end the piece
        self._last_space: int | None = None  # first piece: the previous word boundary
        self._phrase_cut: int | None = None  # first piece: a boundary before a phrase start
        self._emitted = 0
        self._dropped_chars = 0  # how much text before _text[0] was compacted away

    def feed(self, delta: str) -> list[str]:
        """Add the next piece of the reply.

        Args:
            delta: text as the LLM streamed it, of any length (may be empty).

        Returns:
            The pieces this delta completed, in order; often none.
        """
        self._text += delta
        return self._split(end_of_reply=False)

    def flush(self) -> list[str]:
        """End the reply: return what remains, cut as the rules say, and start afresh."""
        pieces = self._split(end_of_reply=True)
        self._reset()
        return pieces

    # --- internals ----------------------------------------------------------------------

    def _split(self, *, end_of_reply: bool) -> list[str]:
        pieces = []
        while (cut := self._next_cut(end_of_reply)) is not None:
            piece = self._text[self._start : cut].strip()
            self._start = self._scan = cut
            self._clause_cut = self._word_cut = None
            self._last_space = self._phrase_cut = None
            if _speakable(piece):
                pieces.append(piece)
                self._emitted += 1
        if self._start > _COMPACT_AFTER_CHARS:
            drop = self._start - _KEEP_BEHIND_CHARS
            self._text = self._text[drop:]
            self._start -= drop
            self._scan -= drop
            self._dropped_chars += drop
        return pieces

    def _options_at(self, pos: int) -> SplitOptions:
        if self._options is not None:
            return self._options
        language = self._language or detect_language(
            self._text[max(0, pos - _LANGUAGE_WINDOW_CHARS) : pos]
        )
        return SplitOptions.for_language(language)

    def _next_cut(self, eos: bool) -> int | None:
        """Where the current piece ends, or None when that is not known yet."""
        text, n = self._text, len(self._text)
        if self._scan == self._start:
            while self._start < n and text[self._start].isspace():
                self._start += 1
            self._scan = self._start
        i = self._scan
        while i < n:
            ch = text[i]
            cut: int | None = None
            nxt = i + 1
            if ch.isspace():
                cut = self._consider(i, _Cut.WORD)
                if cut is None and ch == "\n":
                    cut = self._consider(i + 1, _Cut.SENTENCE)
            elif ch in _TERMINATORS:
                decided = self._terminator(i, eos)
                if decided is None:
                    self._scan = i
                    return None
                nxt, kind = decided
                if kind is not None:
                    cut = self._consider(nxt, kind)
            elif ch in _CJK_CLAUSE or ch == "—":
                cut = self._consider(i + 1, _Cut.CLAUSE)
            elif ch in _LATIN_CLAUSE or (ch in "-–" and i > 0 and text[i - 1] == " "):
                # "a, b" and "a - b" are clause boundaries; "1,234" and "10:30" are not.
                if i + 1 == n and not eos:
                    self._scan = i
                    return None
                if i + 1 < n and text[i + 1].isspace():
                    cut = self._consider(i + 1, _Cut.CLAUSE)
            elif i > self._start and ch.isalnum() and text[i - 1].isalnum():
                # Chinese may be cut between any two characters, Latin words may not.
                if _is_han(ch) or _is_han(text[i - 1]):
                    cut = self._consider(i, _Cut.WORD)
            if cut is not None:
                return cut
            i = nxt
        self._scan = n
        if not eos or self._start >= n:
            return None
        cut = self._consider(n, _Cut.SENTENCE)
        return n if cut is None else cut

    def _consider(self, pos: int, kind: _Cut) -> int | None:
        """Record a boundary at ``pos``; return where to cut if the piece ends now."""
        length = len(self._text[self._start : pos].rstrip())
        if length == 0:
            return None
        options = self._options_at(pos)
        if length > options.max_piece_chars:
            best = self._clause_cut if self._clause_cut is not None else self._word_cut
            return best if best is not None else pos
        first = self._emitted == 0
        if (
            kind is _Cut.SENTENCE
            and (
                first
                or length >= options.min_piece_chars
                # "---" or "**" alone on a line: cut it off, it will be dropped.
                or not _speakable(self._text[self._start : pos])
            )
        ):
            return pos
        if kind is _Cut.CLAUSE and first and length >= options.first_piece_min_chars:
            return pos
        if kind is _Cut.WORD and first:
            cut = self._first_piece_word(pos, length, options)
            if cut is not None:
                return cut
        if length >= options.min_piece_chars:
            if kind is _Cut.WORD:
                self._word_cut = pos
            else:
                self._clause_cut = pos
        return None

    def _first_piece_word(self, pos: int, length: int, options: SplitOptions) -> int | None:
        """Where a long first piece without clause boundaries is cut, if it is now."""
        previous = self._last_space
        self._last_space = pos
        if previous is not None:
            word = self._text[previous:pos].strip().lower()
            before = len(self._text[self._start : previous].rstrip())
            if word in _PHRASE_STARTERS and before >= options.first_piece_min_chars:
                self._phrase_cut = previous
        if length < options.first_piece_max_chars:
            return None
        return self._phrase_cut if self._phrase_cut is not None else pos

    def _terminator(self, i: int, eos: bool) -> tuple[int, _Cut | None] | None:
        """Decide the run of terminators at ``i``: (its end, the cut it makes or None).

        None when the text after it, needed to decide, has not arrived yet.
        """
        text, n = self._text, len(self._text)
        end = i
        while end < n and text[end] in _TERMINATORS:
            end += 1
        while end < n and text[end] in _CLOSERS:
            end += 1
        if end == n and not eos:
            return None
        run = text[i:end]
        if any(ch in _CJK_TERMINATORS for ch in run):
            return end, _Cut.SENTENCE
        after = text[end] if end < n else ""
        if after and not after.isspace() and not _is_cjk(after):
            return end, None  # "3.14", "v1.2", "example.com", "e.g", "wait...what"
        if "!" in run or "?" in run:
            return end, _Cut.SENTENCE
        ellipsis = "…" in run or run.count(".") > 1
        if ellipsis and after and not after.isspace():
            return end, _Cut.CLAUSE  # "我想……也许"
        follower_at = end
        while follower_at < n and text[follower_at].isspace():
            follower_at += 1
        if follower_at == n and not eos:
            return None
        if follower_at == n or "\n" in text[end:follower_at]:
            return end, _Cut.SENTENCE
        follower = text[follower_at]
        starts_sentence = follower.isupper() or _is_cjk(follower) or follower in _OPENERS
        if ellipsis:
            return end, _Cut.SENTENCE if starts_sentence else _Cut.CLAUSE
        return end, self._after_period(i, follower, starts_sentence)

    def _after_period(self, i: int, follower: str, starts_sentence: bool) -> _Cut | None:
        """Whether a single "." at ``i``, followed by a space and ``follower``, ends one."""
        text = self._text
        digits_from = i
        while digits_from > max(0, i - 3) and text[digits_from - 1].isdigit():
            digits_from -= 1
        if 1 <= i - digits_from <= 2 and not text[digits_from - 1 : digits_from].isdigit():
            # Look back a bounded distance only, so compaction cannot change the answer.
            line_from = digits_from
            while line_from > max(0, digits_from - 16) and text[line_from - 1] in " \t":
                line_from -= 1
            at_text_start = line_from == 0 and self._dropped_chars == 0
            if at_text_start or text[line_from - 1 : line_from] == "\n":
                return None  # "1. " starts a numbered list item
        match = _LATIN_TOKEN_RE.search(text, max(0, i - 20), i)
        token = match.group(0) if match else ""
        if token in _NEVER_END or (token == "No" and follower.isdigit()):
            return None
        if len(token) == 1 and token.isupper() and token != "I":
            return None  # an initial: "J. K. Rowling"
        if "." in token and all(len(part) <= 2 for part in token.split(".")):
            # "a.m." and "p.m." end a sentence before a capital; "U.S." and "Ph.D." are
            # more often inside one ("the U.S. Army"), and not splitting costs little.
            if token.lower() in ("a.m", "p.m") and starts_sentence and not follower.isdigit():
                return _Cut.SENTENCE
            return None
        if token == "etc":
            return _Cut.SENTENCE if starts_sentence and not follower.isdigit() else None
        return None if follower.islower() else _Cut.SENTENCE


def ends_sentence(piece: str) -> bool:
    """Whether ``piece`` ends with sentence punctuation (. ! ? … 。 ！ ？), closing quotes
    and brackets after it aside.

    Example:
        >>> ends_sentence('She said "yes."'), ends_sentence("Here is the list:")
        (True, False)
    """
    end = len(piece.rstrip())
    while end > 0 and piece[end - 1] in _CLOSERS:
        end -= 1
    return end > 0 and piece[end - 1] in _TERMINATORS


def split_sentences(
    text: str, language: str | None = None, options: SplitOptions | None = None
) -> list[str]:
    """Cut a whole reply into speakable pieces, as a :class:`SentenceSplitter` would.

    Args:
        text: the complete reply.
        language: ``"en"``, ``"zh"``, or None to detect it.
        options: where to cut; default: ``SplitOptions.for_language(language)``.

    Returns:
        The stripped pieces, in order.

    Example:
        >>> split_sentences("你好！今天天气很好，我们去公园吧。", "zh")
        ['你好！', '今天天气很好，我们去公园吧。']
    """
    splitter = SentenceSplitter(language, options=options)
    return splitter.feed(text) + splitter.flush()
