"""Repetition-loop detection for model answers, cheap enough to run on a stream as it grows.

Small or unsuitable models fall into loops: the same sentence or line over and over, or a short
pattern repeated to the end of ``max_tokens``. Two signs, both rare in a real translation or
explainer: a non-trivial line or sentence occurring ``REPEATS`` times, or a tail that is one
period repeated over at least ``TAIL_CHARS`` characters.
"""

from __future__ import annotations

import re
from collections import Counter

REPEATS = 4  # the same line or sentence this many times is a loop
MIN_UNIT_CHARS = 8  # shorter lines (list markers, "2)") repeat legitimately
TAIL_CHARS = 160  # a periodic tail at least this long is a loop
MAX_PERIOD = 400
SENTENCE_END = re.compile(r"(?<=[。！？；.!?;])\s*|\n+")


def _units(text: str) -> list[str]:
    return [u for u in (" ".join(part.split()) for part in SENTENCE_END.split(text)) if len(u) >= MIN_UNIT_CHARS]


def _periodic_tail(text: str) -> str | None:
    """The repeated unit if the last ``TAIL_CHARS``+ characters are one period repeated (3+ times)."""
    tail = text[-(TAIL_CHARS + MAX_PERIOD) :]
    if len(tail) < TAIL_CHARS:
        return None
    for period in range(1, min(MAX_PERIOD, len(tail) // 3) + 1):
        span = max(TAIL_CHARS, 3 * period)
        if span > len(tail):
            break
        window = tail[-span:]
        if window[period:] == window[:-period] and window[-period:].strip():
            return window[-period:]
    return None


def find_loop(text: str) -> str | None:
    """A short excerpt of what repeats, or None if ``text`` does not loop."""
    counts = Counter(_units(text))
    if counts:
        unit, times = counts.most_common(1)[0]
        if times >= REPEATS:
            return unit[:60]
    periodic = _periodic_tail(text)
    return " ".join(periodic.split())[:60] if periodic is not None else None
