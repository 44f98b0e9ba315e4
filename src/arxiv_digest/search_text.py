"""How search reads text: folding and terms, shared by the index writer, its Python reader and (line by
line) ``templates/site/static/search.js``.

* ``fold``: NFKC, lower case, accents dropped (NFD, then U+0300–U+036F removed), so ``Ｓｐｅｅｃｈ``,
  ``speech`` and ``Spéech`` are one word.
* A token is a run of CJK characters (kana and Han, the ranges in ``CJK``) or a run of other letters
  and digits; everything else separates tokens.
* Terms: a Latin word is a term; two Latin words that follow each other (with no CJK or line
  break between) are also a term, ``"speech enhancement"`` with one space, so a quoted phrase is found through its word
  pairs; a CJK run gives its overlapping bigrams (``语音增强`` → 语音 音增 增强), a lone CJK character
  itself. Chinese needs no dictionary this way, and a query's bigrams all present is a strong match.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter

CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
CJK_RANGES = ((0x3040, 0x30FF), (0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF))
TOKEN = re.compile(f"[{CJK}]+|[^\\W_{CJK}]+")
_CJK_START = re.compile(f"[{CJK}]")
# punctuation and spaces that NFKC could only turn into other separators: replacing them by a space
# first lets the cheap is_normalized() check skip NFKC for nearly all Chinese text
_SEPARATORS = re.compile(
    "[\u3000-\u3004\u3008-\u3020\u3030\u3036-\u3037\u303d-\u303f\uff01-\uff0f\uff1a-\uff20\uff3b-\uff40\uff5b-\uff65]"
)
_MARKS = re.compile("[\u0300-\u036f]")


def fold(text: str) -> str:
    """NFKC, lower case, accents dropped; the same as ``normalize("NFKC").toLowerCase()
    .normalize("NFD").replace(/[\\u0300-\\u036f]/g, "")`` in search.js, up to separators."""
    if text.isascii():
        return text.lower()
    text = _SEPARATORS.sub(" ", text)
    if not unicodedata.is_normalized("NFKC", text):
        text = unicodedata.normalize("NFKC", text)
    text = text.lower()
    if not unicodedata.is_normalized("NFD", text) or _MARKS.search(text):
        text = _MARKS.sub("", unicodedata.normalize("NFD", text))
    return text


def tokens(text: str) -> list[str]:
    """The folded tokens of ``text`` in order: Latin words and CJK runs."""
    return TOKEN.findall(fold(text))


def is_cjk(token: str) -> bool:
    return bool(_CJK_START.match(token))


def run_terms(run: str) -> list[str]:
    """A CJK run's terms: its bigrams, or the character itself when it stands alone."""
    return [run[i : i + 2] for i in range(len(run) - 1)] if len(run) > 1 else [run]


def pair(first: str, second: str) -> str:
    return f"{first} {second}"


def field_terms(text: str) -> tuple[Counter[str], int]:
    """Term counts of one field and its length in tokens (words and CJK terms; pairs are not
    counted). Pairs do not span a line break: lists (authors, tags) are joined with one. The index
    writer computes the same with numpy; this is the plain reference."""
    counts: Counter[str] = Counter()
    length = 0
    for line in text.split("\n"):
        line_counts, line_length = _line_terms(line)
        counts += line_counts
        length += line_length
    return counts, length


def _line_terms(text: str) -> tuple[Counter[str], int]:
    counts: Counter[str] = Counter()
    length = 0
    previous = ""
    for token in tokens(text):
        if is_cjk(token):
            terms = run_terms(token)
            counts.update(terms)
            length += len(terms)
            previous = ""
            continue
        counts[token] += 1
        length += 1
        if previous:
            counts[pair(previous, token)] += 1
        previous = token
    return counts, length


def utf16_key(term: str) -> bytes:
    """Sort key giving JavaScript's string order (UTF-16 code units), which search.js compares with."""
    return term.encode("utf-16-be")
