"""Papers' texts to postings, with numpy over a whole batch of papers at once.

Tokenising is the costly part of building the index (a paper carries ~1,600 CJK characters of
translation and explainer), so no step here runs Python code per character or per occurrence:

* Folding is a table lookup per character (``_CharTable``: each character's ``fold`` and kind
  computed once per process, the first time it is seen). A character whose fold depends on its
  neighbours (a final sigma, combining marks that NFKC reorders) or that folds to several
  characters (ligatures, ``①``) makes its field go through ``search_text.fold`` instead; that is rare.
* CJK terms are integers ``first << 16 | second`` (a lone character: ``second`` 0) cut from the
  UTF-32 view of the text.
* Latin words are the runs of word characters; each occurrence gets a 64-bit polynomial hash of its
  characters (mod 2^64, with its length mixed in), a word pair the hash of ``"first second"`` made
  from its words' hashes. Hashes, not strings, identify terms, so a Python string is made once per
  distinct term (``BatchPostings.names``), never per occurrence. Two distinct words sharing a hash
  would be one term; at 64 bits that is ~1e-8 for a million words.
* Counting is one ``np.sort`` of packed (term, paper, field) integers.

A term's ``key`` is the same in every batch (CJK code, or the hash with the top bit set), which lets
a full build gather a term's postings from many batches (``search_bulk``). ``index_papers`` makes
a ``Run`` of string terms for the incremental path. ``search_text.field_terms`` is the plain
reference both must agree with (``tests/test_search_index.py`` checks it with hypothesis).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .search_postings import Run, bmp, impact_of, norm, ragged
from .search_text import CJK_RANGES, fold, utf16_key

MAX_FIELDS = 16
_FIELD_BITS = 4
_BATCH_BITS = 14  # 16,384 papers a batch at most
_CODE_SHIFT = _BATCH_BITS + _FIELD_BITS  # an occurrence's key: code << 18 | paper << 4 | field
_CELL_MASK = (1 << _CODE_SHIFT) - 1
_LATIN_CODES = 1 << 32  # batch-local codes of Latin terms start here; CJK codes are below
_LATIN_KEY = np.uint64(1 << 63)  # set in the key of a Latin term
_CONTEXT = 0xFFFFFFFF  # a character that ``fold`` must see in its text
_DROPPED = 0xFFFFFFFE  # an accent that folding removes
_FINAL_SIGMA = 0x3A3  # lower-cases to ς or σ depending on what follows
_OTHER, _WORD, _CJK, _UNKNOWN = 0, 1, 2, 255  # kinds of folded characters
_IDENTICAL = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF))  # CJK ideographs: no decomposition, no case
_HASH_BASE = np.uint64(0x100000001B3)
_HASH_LENGTH = np.uint64(0x9E3779B97F4A7C15)
_SPACE = np.uint64(32)


class _CharTable:
    """Per BMP character: its fold (one character, ``_DROPPED`` or ``_CONTEXT``; 0 until learned on
    first sight), and its kind as a folded character (``_WORD``: a letter or digit, not ``_``, not
    CJK; ``_UNKNOWN`` until learned on first sight: making the whole table cost 30 ms of every
    incremental build)."""

    def __init__(self) -> None:
        self.fold = np.zeros(0x10000, np.uint32)
        self.fold[0] = _CONTEXT  # so that 0 means "not learned yet"
        # known without asking: ASCII folds to lower case, the CJK ideographs to themselves (learning
        # the ~2,000 of them in a build's posts one by one cost 40 ms of every process)
        self.fold[1:0x80] = np.frombuffer(bytes(range(1, 0x80)).lower(), np.uint8)
        for low, high in _IDENTICAL:
            self.fold[low : high + 1] = np.arange(low, high + 1)
        self.kind = np.full(0x10000, _UNKNOWN, np.uint8)
        self.kind[:0x80] = [_kind(code) for code in range(0x80)]
        for low, high in CJK_RANGES:
            self.kind[low : high + 1] = _CJK

    def kinds(self, codes: np.ndarray) -> np.ndarray:
        """The kind of each of ``codes`` (all below 0x10000), learning the characters not seen before."""
        found = self.kind[codes]
        unknown = found == _UNKNOWN
        if unknown.any():
            for code in set(codes[unknown].tolist()):
                self.kind[code] = _kind(code)
            found = self.kind[codes]
        return found

    def folded(self, codes: np.ndarray) -> np.ndarray:
        """The fold of each of ``codes`` (all below 0x10000), learning the characters not seen before."""
        mapped = self.fold[codes]
        if mapped.all():
            return mapped
        for code in set(codes[mapped == 0].tolist()):  # (np.unique would import numpy.ma: 30 ms)
            char = chr(code)
            folded = fold(char)
            context = code == _FINAL_SIGMA or (unicodedata.combining(char) and not 0x300 <= code <= 0x36F)
            if context or len(folded) > 1 or (folded and ord(folded) > 0xFFFF) or 0xD800 <= code <= 0xDFFF:
                self.fold[code] = _CONTEXT
            else:
                self.fold[code] = ord(folded) if folded else _DROPPED
        return self.fold[codes]


def _kind(code: int) -> int:
    """What ``search_text.TOKEN`` makes of a character (``str.isalnum`` is what ``\\w`` means, less ``_``)."""
    if any(low <= code <= high for low, high in CJK_RANGES):
        return _CJK
    return _WORD if chr(code).isalnum() else _OTHER


_TABLE = _CharTable()


def _utf32(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


def _folded_codes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The fields folded and joined by newlines (one after the last) as UTF-32 codes, and each
    field's length in the folded text (without its newline)."""
    codes = _utf32("\n".join(texts) + "\n")
    lengths = np.array([len(t) for t in texts], np.int64)
    if len(codes) and codes.max() < 0x10000:
        mapped = _TABLE.folded(codes)
        if mapped.max() < _DROPPED:
            return mapped, lengths
    bmp_chars = codes < 0x10000
    mapped = np.where(bmp_chars, _TABLE.folded(np.where(bmp_chars, codes, 0)), _CONTEXT)
    context = np.flatnonzero(mapped == _CONTEXT)
    if len(context):  # fold those fields as whole texts; their folded characters stay as they are
        starts = np.cumsum(lengths + 1) - lengths - 1
        exact = set(np.unique(np.searchsorted(starts, context, side="right") - 1).tolist())
        texts = [fold(t) if i in exact else t for i, t in enumerate(texts)]
        lengths = np.array([len(t) for t in texts], np.int64)
        codes = _utf32("\n".join(texts) + "\n")
        keep = np.repeat(np.array([i in exact for i in range(len(texts))]), lengths + 1)
        bmp_chars = codes < 0x10000
        mapped = np.where(keep | ~bmp_chars, codes, _TABLE.folded(np.where(bmp_chars, codes, 0)))
    dropped = mapped == _DROPPED
    if dropped.any():
        field_of = np.repeat(np.arange(len(texts)), lengths + 1)
        lengths -= np.bincount(field_of[dropped], minlength=len(texts))
        mapped = mapped[~dropped]
    return mapped, lengths


def _kinds(codes: np.ndarray) -> np.ndarray:
    """The kind of each folded character."""
    if codes.max(initial=0) < 0x10000:
        return _TABLE.kinds(codes)
    bmp_chars = codes < 0x10000
    kinds = _TABLE.kinds(np.where(bmp_chars, codes, 0))
    for at in np.flatnonzero(~bmp_chars).tolist():
        kinds[at] = _kind(int(codes[at]))
    return kinds


_powers: np.ndarray = np.ones(1, np.uint64)


def _power_table(size: int) -> np.ndarray:
    """``_HASH_BASE ** k`` mod 2^64 for k < size (integer arrays wrap around)."""
    global _powers
    if len(_powers) < size:
        _powers = np.cumprod(np.concatenate(([np.uint64(1)], np.full(size, _HASH_BASE, np.uint64))))
    return _powers


def _run_hashes(codes: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Per run of characters, sum of ``codes[start + j] * BASE ** j`` mod 2^64."""
    if not len(starts):
        return np.zeros(0, np.uint64)
    within = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    terms = codes[ragged(starts, lengths)].astype(np.uint64) * _power_table(int(lengths.max()) + 2)[within]
    return np.add.reduceat(terms, np.cumsum(lengths) - lengths)


def _key(raw: np.ndarray, length: np.ndarray) -> np.ndarray:
    return (raw + length.astype(np.uint64) * _HASH_LENGTH) | _LATIN_KEY


@dataclass(frozen=True)
class BatchPostings:
    """A batch's postings grouped by term (postings of a term by paper id): ``keys`` name each term
    the same way in every batch; ``names`` makes the strings of the terms asked for."""

    keys: np.ndarray  # uint64, one per term
    df: np.ndarray  # int64
    ids: np.ndarray  # uint32
    impacts: np.ndarray  # uint8
    codes: np.ndarray  # the batch-local code of each term (see ``_names``)
    folded: np.ndarray  # the batch's folded text, for the names of Latin words
    words: np.ndarray  # per distinct Latin word: (start, end) of an occurrence in ``folded``
    pairs: np.ndarray  # per distinct pair: its two words' numbers

    def names(self, which: np.ndarray | None = None) -> list[str]:
        codes = self.codes if which is None else self.codes[which]
        split = int(np.searchsorted(codes, _LATIN_CODES)) if which is None else None
        if split is None:  # arbitrary order: CJK and Latin apart, then put back
            cjk = codes < _LATIN_CODES
            names = np.empty(len(codes), object)
            names[cjk] = _cjk_names(codes[cjk])
            names[~cjk] = self._latin_names((codes[~cjk] - _LATIN_CODES).tolist())
            return names.tolist()
        return _cjk_names(codes[:split]) + self._latin_names((codes[split:] - _LATIN_CODES).tolist())

    def _latin_names(self, numbers: list[int]) -> list[str]:
        if not numbers:
            return []
        text = self.folded.tobytes().decode("utf-32-le", "surrogatepass")
        words = [text[a:b] for a, b in self.words.tolist()]
        return [words[n] if n < len(words) else _pair(words, self.pairs[n - len(words)]) for n in numbers]


def _pair(words: list[str], pair: np.ndarray) -> str:
    return f"{words[pair[0]]} {words[pair[1]]}"


def _cjk_names(codes: np.ndarray) -> list[str]:
    """CJK bigrams and lone characters decoded in one go."""
    pairs = np.stack((codes >> np.uint64(16), codes & np.uint64(0xFFFF)), axis=1).astype(np.uint32)
    text = pairs.tobytes().decode("utf-32-le")  # a lone character is followed by U+0000
    return [text[i : i + 2].rstrip("\x00") for i in range(0, len(text), 2)]


def batch_postings(papers: Sequence[tuple[int, Sequence[tuple[float, str]]]]) -> BatchPostings:
    """Postings of papers given as (id, [(weight, text), ...]), ids ascending, at most
    ``MAX_FIELDS`` fields each: each term's weighted frequency over the fields, the paper's weighted
    length in tokens, and from these the impact. Occurrences are packed into integers and sorted
    once with ``np.sort`` (radix and SIMD sorts; ``argsort`` is ~15x slower)."""
    if len(papers) > 1 << _BATCH_BITS:
        raise ValueError(f"at most {1 << _BATCH_BITS} papers a batch")
    texts = [text for _, fields in papers for _, text in fields]
    cells = np.array(
        [(index << _FIELD_BITS) | number for index, (_, fields) in enumerate(papers) for number in range(len(fields))],
        np.uint32,
    )
    weights = np.zeros((len(papers), MAX_FIELDS))
    for index, (_, fields) in enumerate(papers):
        weights[index, : len(fields)] = [weight for weight, _ in fields]
    codes, lengths = _folded_codes(texts)
    lengths_with_newline = lengths + 1
    cell = np.repeat(cells, lengths_with_newline)
    kinds = _kinds(codes)

    # CJK: bigrams of adjacent CJK characters, a lone one by itself
    cjk = kinds == _CJK
    edges = np.diff(cjk.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    run_starts, run_ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lone = run_starts[run_ends - run_starts == 1]
    bigram = np.zeros(len(cjk), bool)  # where a bigram starts (the last character is a newline)
    np.logical_and(cjk[:-1], cjk[1:], out=bigram[:-1])
    cjk_keys = codes[:-1].astype(np.uint64)  # computed at every position, then kept where a bigram starts
    cjk_keys <<= np.uint64(16)
    cjk_keys |= codes[1:]
    cjk_keys <<= np.uint64(_CODE_SHIFT)
    cjk_keys |= cell[:-1]
    cjk_keys = cjk_keys[bigram[:-1]]
    lone_keys = (codes[lone].astype(np.uint64) << np.uint64(16 + _CODE_SHIFT)) | cell[lone]

    # Latin words, numbered by hash; pairs of words with no CJK or newline between them
    edges = np.diff((kinds == _WORD).view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    lengths = ends - starts
    raw = _run_hashes(codes, starts, lengths)
    hashes, first, word_ids = np.unique(_key(raw, lengths), return_index=True, return_inverse=True)
    blockers = np.sort(np.concatenate((run_starts, np.flatnonzero(codes == 10))))
    linked = np.flatnonzero(np.searchsorted(blockers, ends[:-1]) == np.searchsorted(blockers, starts[1:]))
    pair_codes = word_ids[linked].astype(np.uint64) * np.uint64(len(hashes)) + word_ids[linked + 1]
    _, pair_first, pair_ids = np.unique(pair_codes, return_index=True, return_inverse=True)
    one, two = linked[pair_first], linked[pair_first] + 1
    powers = _power_table(int(lengths.max(initial=0)) + 2)  # the hash of "first second" from the words'
    pair_raw = raw[one] + (_SPACE + _HASH_BASE * raw[two]) * powers[lengths[one]]
    pair_keys = _key(pair_raw, lengths[one] + 1 + lengths[two])
    latin_keys = np.concatenate(
        (
            (cell[starts] | ((word_ids.astype(np.uint64) + np.uint64(_LATIN_CODES)) << np.uint64(_CODE_SHIFT))),
            cell[starts[linked]]
            | ((pair_ids.astype(np.uint64) + np.uint64(_LATIN_CODES + len(hashes))) << np.uint64(_CODE_SHIFT)),
        )
    )
    field_starts = np.cumsum(lengths_with_newline) - lengths_with_newline
    tokens = np.zeros(weights.size)
    tokens[cells] = np.add.reduceat(bigram, field_starts, dtype=np.int64) if len(field_starts) else 0
    tokens += np.bincount(np.concatenate((cell[starts], cell[lone])), minlength=weights.size)
    length = (tokens.reshape(weights.shape) * weights).sum(axis=1)

    # one sort by (term, paper, field): counts, then the weighted count over fields and the impact
    keys = np.concatenate((latin_keys, cjk_keys, lone_keys))
    keys.sort()
    group = _starts(keys)
    counts = np.diff(np.append(group, len(keys)))
    keys = keys[group]
    weighted = counts * weights.ravel()[(keys & np.uint64(_CELL_MASK)).astype(np.int64)]
    keys >>= np.uint64(_FIELD_BITS)
    group = _starts(keys)
    tf = np.add.reduceat(weighted, group) if len(group) else np.zeros(0)
    keys = keys[group]
    paper_index = (keys & np.uint64((1 << _BATCH_BITS) - 1)).astype(np.int64)
    term_codes = keys >> np.uint64(_BATCH_BITS)
    group = _starts(term_codes)
    codes_of_terms = term_codes[group]
    latin = np.concatenate((hashes, pair_keys))
    is_latin = codes_of_terms >= _LATIN_CODES
    term_keys = codes_of_terms.copy()
    term_keys[is_latin] = latin[(codes_of_terms[is_latin] - np.uint64(_LATIN_CODES)).astype(np.int64)]
    paper_ids = np.array([pid for pid, _ in papers], np.uint32)
    return BatchPostings(
        term_keys,
        np.diff(np.append(group, len(term_codes))),
        paper_ids[paper_index],
        impact_of(tf, norm(length)[paper_index]),
        codes_of_terms,
        codes,
        np.stack((starts[first], ends[first]), axis=1),
        np.stack((word_ids[one], word_ids[two]), axis=1),
    )


def index_papers(papers: Sequence[tuple[int, Sequence[tuple[float, str]]]]) -> Run:
    """A run (terms as strings, in JavaScript's order) of papers given as for ``batch_postings``."""
    batch = batch_postings(papers)
    terms = batch.names()
    order = sorted(range(len(terms)), key=terms.__getitem__) if bmp(terms) else None
    if order is None:
        order = sorted(range(len(terms)), key=lambda i: utf16_key(terms[i]))
    order_array = np.array(order, np.int64)
    starts = np.cumsum(batch.df) - batch.df
    gather = ragged(starts[order_array], batch.df[order_array])
    return Run([terms[i] for i in order], batch.df[order_array], batch.ids[gather], batch.impacts[gather])


def _starts(sorted_keys: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))
