"""English words for money, units, symbols and abbreviations, read by ``_numbers_en``."""

# Multiplication, approximation and other typographic signs are what these tables read.

from __future__ import annotations

# name singular, name plural, subunit singular, subunit plural ("" = no subunit read)
CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "¥": ("yen", "yen", "", ""),
    "₹": ("rupee", "rupees", "paisa", "paise"),
}
SCALE_WORDS = {"k": "thousand", "K": "thousand", "M": "million", "bn": "billion", "B": "billion"}
# unit: (singular, plural). Only units that cannot be an ordinary word after a number.
UNITS = {
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "km": ("kilometer", "kilometers"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "kg": ("kilogram", "kilograms"),
    "mg": ("milligram", "milligrams"),
    "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"),
    "lbs": ("pound", "pounds"),
    "ft": ("foot", "feet"),
    "kWh": ("kilowatt hour", "kilowatt hours"),
    "kW": ("kilowatt", "kilowatts"),
    "TB": ("terabyte", "terabytes"),
    "GB": ("gigabyte", "gigabytes"),
    "MB": ("megabyte", "megabytes"),
    "KB": ("kilobyte", "kilobytes"),
    "kB": ("kilobyte", "kilobytes"),
    "GHz": ("gigahertz", "gigahertz"),
    "MHz": ("megahertz", "megahertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "Hz": ("hertz", "hertz"),
    "ms": ("millisecond", "milliseconds"),
    "°C": ("degree Celsius", "degrees Celsius"),
    "°F": ("degree Fahrenheit", "degrees Fahrenheit"),
    "°": ("degree", "degrees"),
}
# Titles come before a name, and these words never end a sentence; the others keep a
# sentence's period when they end it.
NO_PERIOD = {
    "Mr": "Mister",
    "Mrs": "Missus",
    "Ms": "Miz",
    "Dr": "Doctor",
    "Prof": "Professor",
    "Mt": "Mount",
    "Gen": "General",
    "Capt": "Captain",
    "Sgt": "Sergeant",
    "Rev": "Reverend",
    "vs": "versus",
    "approx": "approximately",
}
ABBREVIATIONS = {
    "Jr": "Junior",
    "Sr": "Senior",
    "etc": "et cetera",
    "Inc": "Incorporated",
    "Ltd": "Limited",
    "Corp": "Corporation",
    "Ave": "Avenue",
    "Blvd": "Boulevard",
    "Fig": "Figure",
    "fig": "figure",
}
SYMBOLS = {
    "&": " and ",
    "+": " plus ",
    "=": " equals ",
    "@": " at ",
    "%": " percent ",
    "°": " degrees ",
    "×": " times ",
    "÷": " divided by ",
    "≈": " approximately ",
    "≤": " at most ",
    "≥": " at least ",
    "<": " less than ",
    ">": " greater than ",
    "~": " about ",
}
