"""Helpers shared by the language-specific normalisation rules."""

from __future__ import annotations

import re
from collections.abc import Callable

# ASCII digits only: `\d` would also match Arabic-Indic and other digits that the
# digit tables below cannot read.
DIGIT = "[0-9]"
# An integer with thousands separators ("1,234,567") or a plain run of digits.
INT = r"(?:[0-9]{1,3}(?:,[0-9]{3})+(?![0-9])|[0-9]+)"
# INT with an optional decimal part ("3.14", "1,234.5").
NUMBER = rf"(?:{INT}(?:\.[0-9]+)?)"
# A plain run of digits this long (no separators) is an ID, an order or phone number,
# not a quantity: it is read digit by digit. 9 digits is above every count an LLM writes
# without separators and below the 11 digits of a Chinese mobile number.
SPELL_DIGITS_MIN_LEN = 9


def sub_spaced(pattern: re.Pattern[str], replace: Callable[[re.Match[str]], str], text: str) -> str:
    """``pattern.sub(replace, text)``, keeping words apart.

    A reading put next to a letter or digit gets a space on that side, so that "MP3"
    becomes "MP three" rather than "MPthree".
    """

    def _replace(match: re.Match[str]) -> str:
        out = replace(match)
        if not out or out == match.group(0):
            return out
        start, end = match.span()
        if start > 0 and text[start - 1].isalnum() and out[0].isalnum():
            out = " " + out
        if end < len(text) and text[end].isalnum() and out[-1].isalnum():
            out += " "
        return out

    return pattern.sub(_replace, text)


def spell_as_digits(token: str) -> bool:
    """True when an integer written as ``token`` is read digit by digit.

    That is a number with a leading zero ("007", "0123") or a long run of digits
    without separators (phone, order and ID numbers).
    """
    if "," in token:
        return False
    return (len(token) > 1 and token[0] == "0") or len(token) >= SPELL_DIGITS_MIN_LEN
