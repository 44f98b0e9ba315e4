"""Grounding: numbers and dataset/model names in an explainer must come from what the model read.

Readers trust the figures in an explainer; a model that invents "提升 12.3%" or a dataset the paper
never used does real harm. Every number (percentages, metrics, sizes, years) and every name-like
ASCII token (capitals inside, digits, or an acronym) of the answer is looked up in the source
text, allowing for formatting: ``12.3%``/``12.3 %``/``0.123``, ``1,000``/``1000``, ``10k``/
``10,000``, ``1.2万``/``12000``, rounding (``12%`` for ``12.4%``), ``HiFi-GAN``/``HiFiGAN``. Small
integers (below 10) are counts and ordinals the model may rephrase, and are not checked.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

NUMBER = re.compile(
    r"(?<![A-Za-z0-9_.\-])(?P<int>\d{1,3}(?:[,\u2009\u202f]\d{3})+|\d+)?(?P<frac>\.\d+)?"
    r"\s?(?P<unit>%|％|k\b|K\b|M\b|B\b|万|亿|千)?(?![A-Za-z0-9_])"
)
NAME = re.compile(r"(?<![A-Za-z0-9_])[A-Za-z][A-Za-z0-9]*(?:[-_.+/][A-Za-z0-9]+)*(?![A-Za-z0-9_])")
SECTION_MARKER = re.compile(r"^\s*\**[123][)）]\**", re.MULTILINE)
MULTIPLIERS = {"k": 1000, "K": 1000, "千": 1000, "万": 10_000, "M": 1_000_000, "亿": 100_000_000, "B": 1_000_000_000}
PERCENT = {"%", "％"}
SMALL = 10
# Generic abbreviations a model may use without the paper spelling them out; not dataset/model names.
GENERIC = frozenset({"AI", "ASR", "TTS", "LLM", "LLMs", "GPU", "GPUs", "CPU", "SOTA", "API", "NLP", "ML", "DL"})


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _canonical(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _numbers(text: str) -> list[tuple[str, Decimal, str | None]]:
    """(as written, value, unit) for every number in ``text``."""
    found = []
    for match in NUMBER.finditer(text):
        if not (match["int"] or match["frac"]):
            continue
        digits = re.sub(r"[,\u2009\u202f]", "", match["int"] or "0") + (match["frac"] or "")
        value = _decimal(digits)
        if value is not None:
            found.append((match.group(0).strip(), value, match["unit"]))
    return found


def _variants(value: Decimal, unit: str | None) -> set[str]:
    """The same quantity written other ways: expanded multipliers, percent as a fraction."""
    values = {value}
    if unit in MULTIPLIERS:
        values.add(value * MULTIPLIERS[unit])
    if unit in PERCENT:
        values.add(value / 100)
    elif value < 1:
        values.add(value * 100)  # a fraction in the source may be shown as a percentage
    return {_canonical(v) for v in values}


def _with_roundings(value: Decimal) -> set[str]:
    out = {_canonical(value)}
    for places in (0, 1, 2):
        out.add(_canonical(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)))
    return out


def _compact(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


class SourceText:
    """What the model was given, indexed once for lookups."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.compact = _compact(text)
        self.values: set[str] = set()
        for _, value, unit in _numbers(text):
            for variant in _variants(value, unit):
                self.values |= _with_roundings(Decimal(variant))

    def has_number(self, value: Decimal, unit: str | None) -> bool:
        return bool(_variants(value, unit) & self.values)

    def has_name(self, name: str) -> bool:
        key = _compact(name)
        if len(key) >= 5:
            return key in self.compact
        return re.search(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", self.text, re.IGNORECASE) is not None


def _is_name(token: str) -> bool:
    letters = [c for c in token if c.isalpha()]
    inner_capital = any(c.isupper() for c in token[1:])
    acronym = len(letters) >= 2 and all(c.isupper() for c in letters)
    return (inner_capital or acronym or any(c.isdigit() for c in token)) and token not in GENERIC


def unsupported(answer: str, source: SourceText) -> list[str]:
    """Numbers and names in ``answer`` that ``source`` does not contain, in order, each once."""
    text = SECTION_MARKER.sub("", answer)
    missing: dict[str, None] = {}
    for written, value, unit in _numbers(text):
        if unit is None and value == value.to_integral_value() and value < SMALL:
            continue
        if not source.has_number(value, unit):
            missing[written] = None
    for match in NAME.finditer(text):
        token = match.group(0).rstrip(".")
        if _is_name(token) and not source.has_name(token):
            missing[token] = None
    return list(missing)
