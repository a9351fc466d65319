"""English readings of numbers, dates, times, money, units, symbols and abbreviations.

:func:`normalize_en` applies the rules in a fixed order, most specific first: every rule
turns the digits it reads into words, so a later, more general rule never sees them.
"""

# En dashes, minus and multiplication signs are what these rules read.

from __future__ import annotations

import re

from talkface.text._rewrite import INT, NUMBER, spell_as_digits, sub_spaced
from talkface.text._vocabulary_en import (
    ABBREVIATIONS,
    CURRENCIES,
    NO_PERIOD,
    SCALE_WORDS,
    SYMBOLS,
    UNITS,
)

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = ((10**12, "trillion"), (10**9, "billion"), (10**6, "million"), (10**3, "thousand"))
_MAX_CARDINAL = 10**15 - 1
_ORDINAL_IRREGULAR = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}
_MONTHS = (
    "January February March April May June July August September October November December"
).split()
_MONTH_RE = (
    r"(?P<month>January|February|March|April|May|June|July|August|September|October|"
    r"November|December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sept|Sep|Oct|Nov|Dec)"
)


def cardinal(n: int) -> str:
    """``1234`` → ``"one thousand two hundred thirty-four"`` (up to the trillions)."""
    if n < 0:
        return "minus " + cardinal(-n)
    if n > _MAX_CARDINAL:
        return digits(str(n))
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {cardinal(rest)}" if rest else "")
    for scale, name in _SCALES:
        if n >= scale:
            high, rest = divmod(n, scale)
            return f"{cardinal(high)} {name}" + (f" {cardinal(rest)}" if rest else "")
    raise AssertionError("unreachable")


def ordinal(n: int) -> str:
    """``22`` → ``"twenty-second"``."""
    words = cardinal(n)
    cut = max(words.rfind(" "), words.rfind("-")) + 1
    head, last = words[:cut], words[cut:]
    if last in _ORDINAL_IRREGULAR:
        last = _ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + last


def year(n: int) -> str:
    """``1999`` → ``"nineteen ninety-nine"``, ``2005`` → ``"two thousand five"``."""
    if n < 1010 or n > 9999 or n % 1000 < 10:
        return cardinal(n)
    high, low = divmod(n, 100)
    if low == 0:
        return f"{cardinal(high)} hundred"
    if low < 10:
        return f"{cardinal(high)} oh {_ONES[low]}"
    return f"{cardinal(high)} {cardinal(low)}"


def digits(token: str) -> str:
    """``"0123"`` → ``"zero one two three"`` (other characters are dropped)."""
    return " ".join(_ONES[int(c)] for c in token if "0" <= c <= "9")


def number(token: str) -> str:
    """A written number ("1,234", "3.14", "007", ".5") read the way a person would."""
    whole, _, fraction = token.partition(".")
    spell = spell_as_digits(whole)
    whole = whole.replace(",", "")
    if not whole:
        words = ""
    elif spell or len(whole) > 15:
        words = digits(whole)
    else:
        words = cardinal(int(whole))
    if fraction:
        words = (words + " " if words else "") + "point " + digits(fraction)
    return words


def _plural(word: str) -> str:
    return word[:-1] + "ies" if word.endswith("y") else word + "s"


def _is_year(token: str) -> bool:
    return len(token) == 4 and token.isdigit() and 1100 <= int(token) <= 2099


def _month(name: str) -> str:
    return next(m for m in _MONTHS if m.startswith(name[:3]))


# --- rules, in the order they run -------------------------------------------------------

_NO_PERIOD_RE = re.compile(r"\b(?P<abbr>" + "|".join(NO_PERIOD) + r")\.(?=\s)")
_ABBREVIATION_RE = re.compile(
    r"\b(?P<abbr>" + "|".join(ABBREVIATIONS) + r")\.(?P<end>\s*$|\s+(?=[A-Z]))?"
)
# "St." after a capitalised word is a street ("Main St."), before a name a saint.
_SAINT_STREET_RE = re.compile(r"(?P<before>\b[A-Z][a-z]+\s+)?\bSt\.(?P<end>\s*$|\s+(?=[A-Z]))?")
_LATIN_RE = re.compile(r"\b(?P<abbr>e\.g|i\.e)\.(?=\W|$),?")
_NUMBER_SIGN_RE = re.compile(r"(?:\bNo\.|#)\s?(?=[0-9])")
_PHONE_RE = re.compile(
    r"(?<![\w+-])(?:\+[0-9]{1,3}[ -]?(?:\([0-9]{1,4}\)[ -]?)?[0-9]{2,4}(?:[ -][0-9]{2,4}){1,3}"
    r"|\([0-9]{2,4}\) ?[0-9]{3,4}-[0-9]{3,4}|[0-9]{2,4}-[0-9]{3,4}-[0-9]{3,4}"
    r"|0[0-9]{2,3}-[0-9]{7,8})(?![\w-])"
)
_ISO_DATE_RE = re.compile(r"(?<![\w-])([0-9]{4})-([0-9]{2})-([0-9]{2})(?![\w-])")
_MONTH_DAY_RE = re.compile(
    r"\b" + _MONTH_RE + r"\.?\s+(?P<day>[0-9]{1,2})(?:st|nd|rd|th)?\b"
    r"(?:,?\s+(?P<year>[0-9]{4})\b)?"
)
_DAY_MONTH_RE = re.compile(
    r"(?<![\w.,])(?P<day>[0-9]{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?" + _MONTH_RE + r"\b"
    r"(?:,?\s+(?P<year>[0-9]{4})\b)?"
)
_TIME_RE = re.compile(
    r"(?<![0-9:.])(?P<hour>[01]?[0-9]|2[0-3]):(?P<minute>[0-5][0-9])"
    r"(?::(?P<second>[0-5][0-9]))?(?![0-9:])"
    r"(?:\s?(?P<ampm>[AaPp])\.?[Mm]\b(?:\.(?=\s+[a-z]))?)?"
)
_CLOCK_RE = re.compile(
    r"(?<![\w:.])(?P<hour>1[0-2]|0?[1-9])\s?(?P<ampm>[AaPp])\.?[Mm]\b(?:\.(?=\s+[a-z]))?"
)
_MONEY_RE = re.compile(
    rf"(?P<sign>-)?(?P<symbol>[$€£¥₹])\s?(?P<amount>{NUMBER})"
    rf"(?:(?:\s?[-–]\s?[$€£¥₹]?|\s+to\s+[$€£¥₹])(?P<high>{NUMBER}))?"
    r"(?:\s?(?P<scale>thousand|million|billion|trillion|bn|k|K|M|B)\b)?"
)
_PERCENT_RANGE_RE = re.compile(rf"(?<![\w.])({NUMBER})\s?(?:-|–|~|to)\s?({NUMBER})\s?%")
_PERCENT_RE = re.compile(rf"(?<![\w.])(?P<sign>-)?(?P<amount>{NUMBER})\s?%")
_UNIT_RE = re.compile(
    rf"(?<![\w.])(?P<sign>-)?(?P<amount>{NUMBER})\s?(?P<unit>"
    + "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))
    + r")(?![A-Za-z])"
)
_MONTH_YEAR_RE = re.compile(r"\b" + _MONTH_RE + r"\.?,?\s+(?P<year>[0-9]{4})\b")
_YEAR_RANGE_RE = re.compile(r"(?<![\w.,-])([0-9]{4})(?:-|\s?–\s?)([0-9]{4})(?![\w.]?[0-9])")
_YEAR_CUE_RE = re.compile(
    r"\b(?P<cue>[Ii]n|[Ss]ince|[Bb]y|[Ff]rom|[Bb]etween|[Uu]ntil|[Tt]ill|[Tt]o|[Tt]hrough|[Bb]efore|"
    r"[Aa]fter|[Dd]uring|[Aa]round|[Cc]irca|[Yy]ear|[Ss]ummer|[Ww]inter|[Ss]pring|[Aa]utumn|"
    r"[Ff]all)\s+(?P<year>[0-9]{4})(?![0-9]|[.,][0-9])"
)
_ERA_RE = re.compile(r"(?<![\w.,])(?P<year>[0-9]{1,4})\s?(?P<era>BCE|BC|CE|AD)\b")
_DECADE_RE = re.compile(r"(?<![\w'])(?:(?P<century>1[0-9]|20)|')(?P<decade>[0-9]0)s\b")
_ORDINAL_RE = re.compile(rf"(?<![\w.])(?P<n>{INT})(?:st|nd|rd|th|ST|ND|RD|TH)\b")
_FRACTION_RE = re.compile(r"(?<![\w/.])([0-9]{1,3})/([0-9]{1,3})(?![\w/]|\.[0-9])")
_VERSION_RE = re.compile(
    r"(?<![\w.])(?:(?P<v>[vV])(?P<short>[0-9]+(?:\.[0-9]+)+)|(?P<long>[0-9]+(?:\.[0-9]+){2,}))"
    r"(?![0-9])"
)
_RANGE_RE = re.compile(
    rf"(?<![\w.,-])(?P<low>{NUMBER})(?:-|\s?[–~]\s?)(?P<high>{NUMBER})(?![\w.]?[0-9])"
)
_MINUS_RE = re.compile(r"(?<=[0-9])\s+[-−]\s+(?=[0-9])")
_BY_RE = re.compile(r"(?<![\w.])([0-9]{1,5}) ?x ?([0-9]{1,5})(?![\w.])")
_MULTIPLIER_RE = re.compile(rf"(?<![\w.])({NUMBER})[x×](?!\w)")
_TIMES_RE = re.compile(r"(?<=[0-9])\s*[*×]\s*(?=[0-9])")
_NEGATIVE_RE = re.compile(r"(?<![\w.)\]])-(?=[0-9])")
_NUMBER_RE = re.compile(rf"(?<![\w.,])\.[0-9]+|(?<![0-9]){NUMBER}")
_SYMBOL_RE = re.compile("[" + re.escape("".join(SYMBOLS)) + "]")
_DROP_RE = re.compile(r"[#*_^|\\/$¥€£₹]")


def _abbreviation(match: re.Match[str]) -> str:
    words = ABBREVIATIONS[match["abbr"]]
    # "apples, pears, etc." ends its sentence: keep the period for the TTS pause.
    return words + (f".{match['end']}" if match["end"] is not None else "")


def _saint_street(match: re.Match[str]) -> str:
    before, end = match["before"] or "", match["end"]
    if not before and end is not None and match.end() < len(match.string):
        return "Saint" + end
    return before + "Street" + (f".{end}" if end is not None else "")


def _phone(match: re.Match[str]) -> str:
    groups = re.findall(r"\+?[0-9]+", match.group(0))
    return ", ".join(("plus " if g[0] == "+" else "") + digits(g) for g in groups)


def _iso_date(match: re.Match[str]) -> str:
    y, m, d = (int(g) for g in match.groups())
    if not (1 <= m <= 12 and 1 <= d <= 31):
        return match.group(0)
    return f"{_MONTHS[m - 1]} {ordinal(d)}, {year(y)}"


def _month_day(match: re.Match[str]) -> str:
    day = int(match["day"])
    if not 1 <= day <= 31:
        return match.group(0)
    month = _month(match["month"])
    if match.re is _DAY_MONTH_RE:
        out = f"the {ordinal(day)} of {month}"
    else:
        out = f"{month} {ordinal(day)}"
    return out + (f", {year(int(match['year']))}" if match["year"] else "")


def _time(match: re.Match[str]) -> str:
    groups = match.groupdict()
    hour, minute, second = int(groups["hour"]), int(groups.get("minute") or 0), groups.get("second")
    ampm = f" {groups['ampm'].upper()}M" if groups["ampm"] else ""
    if minute == 0:
        words = cardinal(hour) + (ampm or " o'clock")
    else:
        words = f"{cardinal(hour)} {'oh ' if minute < 10 else ''}{cardinal(minute)}{ampm}"
    if second and int(second):
        words += f" and {cardinal(int(second))} seconds"
    return words


def _money(match: re.Match[str]) -> str:
    one, many, sub_one, sub_many = CURRENCIES[match["symbol"]]
    amount, scale = match["amount"], match["scale"]
    sign = "minus " if match["sign"] else ""
    if match["high"] or scale:
        # "$5-10 million": the unit is said once, after the range.
        high = f" to {number(match['high'])}" if match["high"] else ""
        scale_word = f" {SCALE_WORDS.get(scale, scale)}" if scale else ""
        return f"{sign}{number(amount)}{high}{scale_word} {many}"
    whole, _, cents = amount.partition(".")
    if len(cents) == 2 and sub_one and not spell_as_digits(whole) and len(whole) <= 19:
        units, hundredths = int(whole.replace(",", "")), int(cents)
        parts = []
        if units or not hundredths:
            parts.append(f"{cardinal(units)} {one if units == 1 else many}")
        if hundredths:
            parts.append(f"{cardinal(hundredths)} {sub_one if hundredths == 1 else sub_many}")
        return sign + " and ".join(parts)
    return f"{sign}{number(amount)} {one if amount == '1' else many}"


def _unit(match: re.Match[str]) -> str:
    one, many = UNITS[match["unit"]]
    sign = "minus " if match["sign"] else ""
    return f"{sign}{number(match['amount'])} {one if match['amount'] == '1' else many}"


def _year_range(match: re.Match[str]) -> str:
    low, high = match.group(1), match.group(2)
    if _is_year(low) and _is_year(high):
        return f"{year(int(low))} to {year(int(high))}"
    return match.group(0)


def _year_after_cue(match: re.Match[str]) -> str:
    if not _is_year(match["year"]):
        return match.group(0)
    return f"{match['cue']} {year(int(match['year']))}"


def _decade(match: re.Match[str]) -> str:
    if match["century"]:
        return _plural(year(int(match["century"] + match["decade"])))
    return _plural(cardinal(int(match["decade"])))


def _ordinal(match: re.Match[str]) -> str:
    written = match["n"].replace(",", "")
    return ordinal(int(written)) if len(written) <= 15 else match.group(0)


def _fraction(match: re.Match[str]) -> str:
    top, bottom = int(match.group(1)), int(match.group(2))
    if (top, bottom) == (24, 7):
        return "twenty-four seven"
    if not 2 <= bottom <= 10 or top == 0:
        return f"{cardinal(top)} over {cardinal(bottom)}"
    name = {2: "half", 4: "quarter"}.get(bottom) or ordinal(bottom)
    if top != 1:
        name = "halves" if bottom == 2 else name + "s"
    return f"{cardinal(top)} {name}"


def _version(match: re.Match[str]) -> str:
    parts = (match["short"] or match["long"]).split(".")
    words = " point ".join(number(p) for p in parts)
    return f"version {words}" if match["v"] else words


def _range(match: re.Match[str]) -> str:
    return f"{number(match['low'])} to {number(match['high'])}"


def normalize_en(text: str) -> str:
    """Apply the English rules to cleaned-up text (see :func:`normalize_text`)."""
    text = _NO_PERIOD_RE.sub(lambda m: NO_PERIOD[m["abbr"]], text)
    text = _SAINT_STREET_RE.sub(_saint_street, text)
    text = _LATIN_RE.sub(lambda m: "for example," if m["abbr"] == "e.g" else "that is,", text)
    text = _ABBREVIATION_RE.sub(_abbreviation, text)
    text = re.sub(r"\bvs\b", "versus", text)
    text = _NUMBER_SIGN_RE.sub("number ", text)
    # Readings that need the digits and punctuation around a number: before years,
    # whose rule needs only a cue word.
    text = sub_spaced(_PHONE_RE, _phone, text)
    text = sub_spaced(_ISO_DATE_RE, _iso_date, text)
    text = sub_spaced(_MONTH_DAY_RE, _month_day, text)
    text = sub_spaced(_DAY_MONTH_RE, _month_day, text)
    text = sub_spaced(_TIME_RE, _time, text)
    text = sub_spaced(_CLOCK_RE, _time, text)
    text = sub_spaced(_MONEY_RE, _money, text)
    text = sub_spaced(
        _PERCENT_RANGE_RE, lambda m: f"{number(m[1])} to {number(m[2])} percent", text
    )
    text = sub_spaced(
        _PERCENT_RE,
        lambda m: ("minus " if m["sign"] else "") + number(m["amount"]) + " percent",
        text,
    )
    text = sub_spaced(_UNIT_RE, _unit, text)
    text = _MONTH_YEAR_RE.sub(lambda m: f"{_month(m['month'])} {year(int(m['year']))}", text)
    text = sub_spaced(_YEAR_RANGE_RE, _year_range, text)
    text = _YEAR_CUE_RE.sub(_year_after_cue, text)
    text = sub_spaced(_ERA_RE, lambda m: f"{year(int(m['year']))} {m['era']}", text)
    text = sub_spaced(_DECADE_RE, _decade, text)
    text = sub_spaced(_ORDINAL_RE, _ordinal, text)
    text = sub_spaced(_FRACTION_RE, _fraction, text)
    text = sub_spaced(_VERSION_RE, _version, text)
    text = sub_spaced(_RANGE_RE, _range, text)
    text = _MINUS_RE.sub(" minus ", text)
    text = sub_spaced(_BY_RE, lambda m: f"{number(m[1])} by {number(m[2])}", text)
    text = sub_spaced(_MULTIPLIER_RE, lambda m: f"{number(m[1])} times", text)
    text = _TIMES_RE.sub(" times ", text)
    text = _NEGATIVE_RE.sub("minus ", text)
    text = sub_spaced(_NUMBER_RE, lambda m: number(m.group(0)), text)
    text = _SYMBOL_RE.sub(lambda m: SYMBOLS[m.group(0)], text)
    return _DROP_RE.sub(" ", text)
