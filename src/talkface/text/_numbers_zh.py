"""Chinese readings of numbers, dates, times, money, units and symbols.

:func:`normalize_zh` applies the rules in a fixed order, most specific first: every rule
turns the digits it reads into Chinese characters, so a later, more general rule never
sees them. Latin-script words are left alone; the TTS stage speaks them with an English
voice.
"""

# Full-width, Chinese and typographic punctuation is what this module is about.

from __future__ import annotations

import re

from talkface.text._rewrite import INT, spell_as_digits, sub_spaced

_DIGITS = "零一二三四五六七八九"
_SMALL_UNITS = ("", "十", "百", "千")
_GROUP_UNITS = ("", "万", "亿", "万亿")
_MAX_CARDINAL = 10**16 - 1
# Word characters of Latin text. `\w` would also match Chinese characters, and a number
# right after a Chinese character ("增长了50%") is still a number of its own.
_W = "0-9A-Za-z_"
# Chinese groups digits by four ("1,0005") as well as by three ("1,234").
_INT_ZH = r"(?:[0-9]{1,4}(?:,[0-9]{4})+(?![0-9])|" + INT + ")"
_NUMBER_ZH = rf"(?:{_INT_ZH}(?:\.[0-9]+)?)"
# Measure words after which 2 is read 两 ("2个" → 两个), not 二.
_MEASURE_WORDS = (
    "个位只本次天年件条张岁种台辆名家斤部双对层块杯瓶碗份句遍周页点倍群类组棵匹头架艘"
    "间座首盘把根片颗支枝场回项门节届"
)
_MULTI_CHAR_MEASURES = ("小时", "分钟", "公里", "公斤", "千克", "星期", "个月")
_CURRENCIES = {"¥": "元", "$": "美元", "€": "欧元", "£": "英镑", "₹": "卢比"}
_UNITS = {
    "km/h": "公里每小时",
    "km": "公里",
    "cm": "厘米",
    "mm": "毫米",
    "kg": "公斤",
    "mg": "毫克",
    "ml": "毫升",
    "mL": "毫升",
    "kWh": "千瓦时",
    "kW": "千瓦",
    "°C": "摄氏度",
    "℃": "摄氏度",
    "°F": "华氏度",
    "°": "度",
}
_SYMBOLS = {
    "&": "和",
    "+": "加",
    "=": "等于",
    "@": " at ",
    "%": "百分号",
    "°": "度",
    "℃": "摄氏度",
    "×": "乘",
    "÷": "除以",
    "≈": "约等于",
    "≤": "小于等于",
    "≥": "大于等于",
    "<": "小于",
    ">": "大于",
    "~": "约",
    "～": "约",
}


def digits(token: str) -> str:
    """``"0123"`` → ``"零一二三"`` (other characters are dropped)."""
    return "".join(_DIGITS[int(c)] for c in token if "0" <= c <= "9")


def _below_10k(n: int) -> str:
    out, zero = "", False
    for power in (3, 2, 1, 0):
        digit = n // 10**power % 10
        if digit == 0:
            zero = bool(out)
            continue
        if zero:
            out += "零"
            zero = False
        out += _DIGITS[digit] + _SMALL_UNITS[power]
    return out


def cardinal(n: int) -> str:
    """``123`` → ``"一百二十三"``, ``10005`` → ``"一万零五"`` (up to 万亿)."""
    if n < 0:
        return "负" + cardinal(-n)
    if n == 0:
        return "零"
    if n > _MAX_CARDINAL:
        return digits(str(n))
    groups = [n // 10 ** (4 * i) % 10_000 for i in range(4)]
    out, zero = "", False
    for i in (3, 2, 1, 0):
        group = groups[i]
        if group == 0:
            zero = bool(out)
            continue
        # A gap inside the number is spoken as one 零: 一万零五, 一亿零一百万.
        if out and (zero or group < 1000):
            out += "零"
        out += _below_10k(group) + _GROUP_UNITS[i]
        zero = False
    # 10 is 十, not 一十; only at the start (一百一十 keeps its 一).
    return out[1:] if out.startswith("一十") else out


def number(token: str) -> str:
    """A written number ("1,234", "3.14", "007", ".5") read in Chinese."""
    whole, _, fraction = token.partition(".")
    spell = spell_as_digits(whole)
    whole = whole.replace(",", "")
    if not whole:
        words = "零"
    elif spell or len(whole) > 16:
        words = digits(whole)
    else:
        words = cardinal(int(whole))
    if fraction:
        words += "点" + digits(fraction)
    return words


def _liang(words: str) -> str:
    """两 before 千, 万 and 亿 at the start of a number: 两千, 两万, 两亿."""
    if len(words) > 1 and words[0] == "二" and words[1] in "千万亿":
        return "两" + words[1:]
    return words


# --- rules, in the order they run -------------------------------------------------------

_PHONE_RE = re.compile(
    rf"(?<![{_W}+-])(?:\+[0-9]{{1,3}}[ -]?)?[0-9]{{2,4}}(?:-[0-9]{{3,8}}){{1,2}}(?![{_W}-])"
)
_DATE_RE = re.compile(r"(?<![0-9])([0-9]{4})[-/.]([0-9]{1,2})[-/.]([0-9]{1,2})(?![0-9])")
_YEAR_RANGE_RE = re.compile(r"(?<![0-9.])([0-9]{4})\s?[-–~～至到]\s?([0-9]{4})\s*年")
_YEAR_RE = re.compile(r"(?<![0-9.])([0-9]{4})\s*年")
_TIME_RE = re.compile(
    r"(?<![0-9:.])(?P<hour>[01]?[0-9]|2[0-3]):(?P<minute>[0-5][0-9])"
    r"(?::(?P<second>[0-5][0-9]))?(?![0-9:])"
)
_MONEY_RE = re.compile(rf"(?P<sign>-)?(?P<symbol>[$€£¥₹])\s?(?P<amount>{_NUMBER_ZH})")
_PERCENT_RANGE_RE = re.compile(
    rf"(?<![{_W}.])({_NUMBER_ZH})\s?%?\s?(?:-|–|~|～|到|至)\s?({_NUMBER_ZH})\s?%"
)
_PERCENT_RE = re.compile(rf"(?<![{_W}.])(?P<sign>-)?(?P<amount>{_NUMBER_ZH})\s?(?P<sym>[%‰])")
_UNIT_RE = re.compile(
    rf"(?<![{_W}.])(?P<sign>-)?(?P<amount>{_NUMBER_ZH})\s?(?P<unit>"
    + "|".join(re.escape(u) for u in sorted(_UNITS, key=len, reverse=True))
    + r")(?![A-Za-z])"
)
_FRACTION_RE = re.compile(rf"(?<![{_W}/.])([0-9]{{1,4}})/([0-9]{{1,4}})(?![{_W}/]|\.[0-9])")
_VERSION_RE = re.compile(
    rf"(?<![{_W}.])(?:(?P<v>[vV])(?P<short>[0-9]+(?:\.[0-9]+)+)|(?P<long>[0-9]+(?:\.[0-9]+){{2,}}))"
    r"(?![0-9])"
)
_RANGE_RE = re.compile(
    rf"(?<![{_W}.,-])(?P<low>{_NUMBER_ZH})(?:-|\s?[–~～]\s?)(?P<high>{_NUMBER_ZH})"
    r"(?![0-9A-Za-z_.]?[0-9])"
)
_MINUS_RE = re.compile(r"(?<=[0-9])\s+[-−]\s+(?=[0-9])")
_TIMES_RE = re.compile(r"(?<=[0-9])\s*[*×]\s*(?=[0-9])")
_NEGATIVE_RE = re.compile(rf"(?<![{_W}.)\]])-(?=[0-9])")
_NUMBER_RE = re.compile(rf"(?<![{_W}.,])\.[0-9]+|(?<![0-9]){_NUMBER_ZH}")
_SYMBOL_RE = re.compile("[" + re.escape("".join(_SYMBOLS)) + "]")
_DROP_RE = re.compile(r"[#*_^|\\/$¥€£₹]")


def _phone(match: re.Match[str]) -> str:
    groups = re.findall(r"\+?[0-9]+", match.group(0))
    # "2020-2024" is a range, "010-12345678" and "138-0013-8000" are phone numbers.
    phone_like = len(groups) >= 3 or groups[0][0] in "+0" or max(len(g) for g in groups) >= 7
    if not phone_like or sum(len(g) for g in groups) < 7:
        return match.group(0)
    return " ".join(("加" if g[0] == "+" else "") + digits(g) for g in groups)


def _date(match: re.Match[str]) -> str:
    y, m, d = match.groups()
    if not (1 <= int(m) <= 12 and 1 <= int(d) <= 31):
        return match.group(0)
    return f"{digits(y)}年{cardinal(int(m))}月{cardinal(int(d))}日"


def _time(match: re.Match[str]) -> str:
    hour, minute, second = int(match["hour"]), int(match["minute"]), match["second"]
    words = ("两" if hour == 2 else cardinal(hour)) + "点"
    if minute:
        words += ("零" if minute < 10 else "") + cardinal(minute) + "分"
    if second and int(second):
        words += ("" if minute else "零分") + cardinal(int(second)) + "秒"
    return words


def _money(match: re.Match[str]) -> str:
    sign = "负" if match["sign"] else ""
    amount, symbol = match["amount"], match["symbol"]
    whole, _, cents = amount.partition(".")
    whole = whole.replace(",", "")
    if symbol == "¥" and 1 <= len(cents) <= 2 and len(whole) <= 16 and not spell_as_digits(whole):
        # Renminbi amounts are read in 元, 角 and 分: ¥3.05 → 三元零五分.
        jiao, fen = int(cents[0]), int(cents[1]) if len(cents) == 2 else 0
        out = _liang(cardinal(int(whole))) + "元" if int(whole) or not (jiao or fen) else ""
        if jiao:
            out += _DIGITS[jiao] + "角"
        if fen:
            out += ("零" if out and not jiao else "") + _DIGITS[fen] + "分"
        return sign + out
    return sign + _liang(number(amount)) + _CURRENCIES[symbol]


def _percent(match: re.Match[str]) -> str:
    prefix = "千分之" if match["sym"] == "‰" else "百分之"
    return ("负" if match["sign"] else "") + prefix + number(match["amount"])


def _unit(match: re.Match[str]) -> str:
    return ("负" if match["sign"] else "") + number(match["amount"]) + _UNITS[match["unit"]]


def _version(match: re.Match[str]) -> str:
    words = "点".join(number(p) for p in (match["short"] or match["long"]).split("."))
    return match["v"] + words if match["v"] else words


def _plain_number(match: re.Match[str]) -> str:
    token = match.group(0)
    text, end = match.string, match.end()
    if token == "2" and text[match.start() - 1 : match.start()] != "第":
        after = text[end : end + 2]
        if (after[:1] and after[0] in _MEASURE_WORDS) or after in _MULTI_CHAR_MEASURES:
            return "两"
    return _liang(number(token))


def normalize_zh(text: str) -> str:
    """Apply the Chinese rules to cleaned-up text (see :func:`normalize_text`)."""
    text = text.replace("￥", "¥").replace("−", "-")
    text = sub_spaced(_PHONE_RE, _phone, text)
    text = sub_spaced(_DATE_RE, _date, text)
    # Years are read digit by digit: 2024年 → 二零二四年 (but 10年 "ten years" → 十年).
    text = _YEAR_RANGE_RE.sub(lambda m: f"{digits(m[1])}到{digits(m[2])}年", text)
    text = _YEAR_RE.sub(lambda m: digits(m.group(1)) + "年", text)
    text = sub_spaced(_TIME_RE, _time, text)
    text = sub_spaced(_MONEY_RE, _money, text)
    text = _PERCENT_RANGE_RE.sub(lambda m: f"百分之{number(m[1])}到百分之{number(m[2])}", text)
    text = _PERCENT_RE.sub(_percent, text)
    text = sub_spaced(_UNIT_RE, _unit, text)
    text = _FRACTION_RE.sub(
        lambda m: f"{number(m[2])}分之{number(m[1])}" if int(m[2]) else m.group(0), text
    )
    text = sub_spaced(_VERSION_RE, _version, text)
    text = _RANGE_RE.sub(lambda m: f"{number(m['low'])}到{number(m['high'])}", text)
    text = _MINUS_RE.sub("减", text)
    text = _TIMES_RE.sub("乘", text)
    text = _NEGATIVE_RE.sub("负", text)
    text = _NUMBER_RE.sub(_plain_number, text)
    text = _SYMBOL_RE.sub(lambda m: _SYMBOLS[m.group(0)], text)
    return _DROP_RE.sub(" ", text)
