"""Which language a text is in, and where Chinese and Latin-script runs begin and end."""

from __future__ import annotations

import re

# CJK unified ideographs (+ extension A and compatibility ideographs).
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_HAN_RE = re.compile(f"[{_HAN}]")
_LATIN_LETTER_RE = re.compile(r"[A-Za-z\u00c0-\u024f]")
# A run is a stretch of one script plus the neutral characters (spaces, punctuation,
# digits) that follow it.
_RUN_RE = re.compile(
    f"(?P<zh>[{_HAN}][^A-Za-z\u00c0-\u024f]*)|(?P<latin>[A-Za-z\u00c0-\u024f][^{_HAN}]*)"
)


def detect_language(text: str) -> str:
    """``"zh"`` when Chinese characters dominate the letters of ``text``, else ``"en"``."""
    han = len(_HAN_RE.findall(text))
    latin_words = len(re.findall(r"[A-Za-z\u00c0-\u024f]+", text))
    # A Chinese character carries about a word's worth of speech.
    return "zh" if han and han >= latin_words else "en"


def has_han(text: str) -> bool:
    """True when ``text`` contains at least one Chinese character."""
    return _HAN_RE.search(text) is not None


def script_runs(text: str) -> list[tuple[str, str]]:
    """Cut ``text`` into ``("zh" | "latin", run)`` pieces, in order.

    Leading neutral characters (digits, punctuation) join the first run; text with no
    letters at all is one ``"latin"`` run.
    """
    runs: list[tuple[str, str]] = []
    first = re.search(f"[{_HAN}A-Za-z\u00c0-\u024f]", text)
    if first is None:
        return [("latin", text)] if text.strip() else []
    prefix = text[: first.start()]
    for match in _RUN_RE.finditer(text, first.start()):
        script = "zh" if match.group("zh") else "latin"
        piece = match.group(0)
        if prefix:
            piece, prefix = prefix + piece, ""
        runs.append((script, piece))
    return runs
