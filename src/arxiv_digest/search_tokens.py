"""Papers' texts to a run of postings, with numpy over a whole batch of papers at once.

Tokenising is the costly part of building the index (a paper carries ~1,600 CJK characters of
translation and explainer), so no step here runs Python code per character or per CJK term:

* Folding is a table lookup per character (``_CharTable``: each character's ``fold`` computed once
  per process, the first time it is seen). A character whose fold depends on its neighbours (a
  final sigma, combining marks that NFKC reorders) or that folds to several characters (ligatures,
  ``①``) makes its field go through ``search_text.fold`` instead; that is rare.
* Latin words are the runs of word characters in the folded text; only the words themselves are
  sliced out as strings and numbered; word pairs are pairs of numbers, made strings once each.
* CJK bigrams are integers ``first << 21 | second`` cut from the UTF-32 view of the text.
* Counting is one ``np.sort`` of packed (term, paper, field) integers.

``search_text.field_terms`` is the plain reference this must agree with
(``tests/test_search_index.py`` checks it with hypothesis).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

import numpy as np

from .search_postings import Run, bmp, impact
from .search_text import CJK_RANGES, fold, utf16_key

MAX_FIELDS = 16
_FIELD_BITS = 4
_BATCH_BITS = 14  # 16,384 papers a batch at most
_CODE_SHIFT = _BATCH_BITS + _FIELD_BITS  # an occurrence's key: code << 18 | paper << 4 | field
_CELL_MASK = (1 << _CODE_SHIFT) - 1
_LATIN_CODES = 1 << 21  # Latin terms are numbered below this; CJK codes are first << 21 | second
_CONTEXT = 0xFFFFFFFF  # a character that ``fold`` must see in its text
_DROPPED = 0xFFFFFFFE  # an accent that folding removes
_FINAL_SIGMA = 0x3A3  # lower-cases to ς or σ depending on what follows


class _CharTable:
    """Per BMP character: its fold (one character, ``_DROPPED`` or ``_CONTEXT``), and whether it is
    part of a Latin word (a letter or digit, not ``_``, not CJK), learned on first sight."""

    def __init__(self) -> None:
        self.fold = np.zeros(0x10000, np.uint32)
        self.word = np.zeros(0x10000, bool)
        self.known = np.zeros(0x10000, bool)

    def learn(self, codes: np.ndarray) -> None:
        """Fills in the characters of ``codes`` (all below 0x10000) not seen before."""
        unseen = codes[~self.known[codes]]
        for code in np.unique(unseen).tolist():
            char = chr(code)
            folded = fold(char)
            context = code == _FINAL_SIGMA or (unicodedata.combining(char) and not 0x300 <= code <= 0x36F)
            if context or len(folded) > 1 or (folded and ord(folded) > 0xFFFF) or 0xD800 <= code <= 0xDFFF:
                self.fold[code] = _CONTEXT
            else:
                self.fold[code] = ord(folded) if folded else _DROPPED
            self.word[code] = _is_word(code)
            self.known[code] = True


def _is_word(code: int) -> bool:
    """What ``search_text.TOKEN`` takes for a Latin word's character."""
    return chr(code).isalnum() and not any(low <= code <= high for low, high in CJK_RANGES)


_TABLE = _CharTable()


def _is_cjk(codes: np.ndarray) -> np.ndarray:
    mask = np.zeros(codes.shape, bool)
    for low, high in CJK_RANGES:
        mask |= (codes >= low) & (codes <= high)
    return mask


def _utf32(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


def _folded_codes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The fields folded and joined by newlines (one after the last) as UTF-32 codes, and each
    field's length in the folded text (without its newline)."""
    codes = _utf32("\n".join(texts) + "\n")
    bmp_chars = codes < 0x10000
    _TABLE.learn(codes[bmp_chars])
    mapped = np.where(bmp_chars, _TABLE.fold[np.where(bmp_chars, codes, 0)], _CONTEXT)
    lengths = np.array([len(t) for t in texts], np.int64)
    context = np.flatnonzero(mapped == _CONTEXT)
    if len(context):  # fold those fields as whole texts; their folded characters stay as they are
        starts = np.cumsum(lengths + 1) - lengths - 1
        exact = set(np.unique(np.searchsorted(starts, context, side="right") - 1).tolist())
        texts = [fold(t) if i in exact else t for i, t in enumerate(texts)]
        lengths = np.array([len(t) for t in texts], np.int64)
        codes = _utf32("\n".join(texts) + "\n")
        keep = np.repeat(np.array([i in exact for i in range(len(texts))]), lengths + 1)
        bmp_chars = codes < 0x10000
        _TABLE.learn(codes[bmp_chars])
        mapped = np.where(keep | ~bmp_chars, codes, _TABLE.fold[np.where(bmp_chars, codes, 0)])
    dropped = mapped == _DROPPED
    if dropped.any():
        field_of = np.repeat(np.arange(len(texts)), lengths + 1)
        lengths -= np.bincount(field_of[dropped], minlength=len(texts))
        mapped = mapped[~dropped]
    return mapped, lengths


def _word_chars(codes: np.ndarray) -> np.ndarray:
    bmp_chars = codes < 0x10000
    _TABLE.learn(codes[bmp_chars])
    word = _TABLE.word[np.where(bmp_chars, codes, 0)]
    for at in np.flatnonzero(~bmp_chars).tolist():
        word[at] = _is_word(int(codes[at]))
    return word


def index_papers(papers: Sequence[tuple[int, Sequence[tuple[float, str]]]]) -> Run:
    """A run from papers given as (id, [(weight, text), ...]), ids ascending, at most ``MAX_FIELDS``
    fields each: each term's weighted frequency over the fields, the paper's weighted length in
    tokens, and from these the impact. Occurrences are packed into integers and sorted once with
    ``np.sort`` (radix and SIMD sorts; ``argsort`` is ~15x slower)."""
    if len(papers) > 1 << _BATCH_BITS:
        raise ValueError(f"at most {1 << _BATCH_BITS} papers a batch")
    texts = [text for _, fields in papers for _, text in fields]
    field_keys = np.array(
        [(index << _FIELD_BITS) | number for index, (_, fields) in enumerate(papers) for number in range(len(fields))],
        np.uint64,
    )
    weights = np.zeros((len(papers), MAX_FIELDS))
    for index, (_, fields) in enumerate(papers):
        weights[index, : len(fields)] = [weight for weight, _ in fields]
    codes, lengths = _folded_codes(texts)
    field_key = np.repeat(field_keys, lengths + 1)
    chars = codes.astype(np.uint64)

    # Latin words: runs of word characters; pairs of words with no CJK or newline between them
    word = _word_chars(codes)
    edges = np.diff(np.concatenate(([False], word, [False])).astype(np.int8))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    folded = codes.tobytes().decode("utf-32-le", "surrogatepass")
    words = [folded[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
    vocabulary = {w: i for i, w in enumerate(dict.fromkeys(words))}
    word_ids = np.fromiter(map(vocabulary.__getitem__, words), np.uint64, len(words))
    blockers = np.concatenate(([0], np.cumsum(_is_cjk(codes) | (codes == 10))))
    linked = blockers[starts[1:]] == blockers[ends[:-1]]
    pair_codes = word_ids[:-1][linked] * np.uint64(len(vocabulary)) + word_ids[1:][linked]
    pairs, pair_ids = np.unique(pair_codes, return_inverse=True)
    names = list(vocabulary)
    firsts, seconds = (x.tolist() for x in divmod(pairs, np.uint64(len(vocabulary))))
    names += [f"{names[a]} {names[b]}" for a, b in zip(firsts, seconds, strict=True)]
    if len(names) >= _LATIN_CODES:
        raise ValueError("too many distinct words in one batch")
    latin_keys = np.concatenate(
        (
            field_key[starts] | (word_ids << np.uint64(_CODE_SHIFT)),
            field_key[starts[:-1][linked]] | ((pair_ids.astype(np.uint64) + len(vocabulary)) << np.uint64(_CODE_SHIFT)),
        )
    )
    latin_words = np.bincount(field_key[starts].astype(np.int64), minlength=weights.size).reshape(weights.shape)

    # CJK: bigrams of adjacent CJK characters, a lone one by itself
    cjk = _is_cjk(chars)
    before = np.concatenate(([False], cjk[:-1]))
    after = np.concatenate((cjk[1:], [False]))
    bigram = cjk & after
    at = np.flatnonzero(bigram | (cjk & ~before & ~after))
    second = np.where(bigram[at], chars[np.minimum(at + 1, len(chars) - 1)], 0)
    cjk_keys = field_key[at] | (((chars[at] << np.uint64(21)) | second) << np.uint64(_CODE_SHIFT))
    cjk_count = np.bincount(field_key[at].astype(np.int64), minlength=weights.size).reshape(weights.shape)
    length = ((latin_words + cjk_count) * weights).sum(axis=1)

    # one sort by (term, paper, field): counts, then the weighted count over fields and the impact
    keys = np.sort(np.concatenate((latin_keys, cjk_keys)))
    starts = _starts(keys)
    counts = np.diff(np.append(starts, len(keys)))
    keys = keys[starts]
    weighted = counts * weights.ravel()[(keys & np.uint64(_CELL_MASK)).astype(np.int64)]
    keys >>= np.uint64(_FIELD_BITS)
    first = _starts(keys)
    tf = np.add.reduceat(weighted, first) if len(first) else np.zeros(0)
    keys = keys[first]
    paper_index = (keys & np.uint64((1 << _BATCH_BITS) - 1)).astype(np.int64)
    impacts = impact(tf, length[paper_index])
    term_codes = keys >> np.uint64(_BATCH_BITS)
    starts = _starts(term_codes)
    df = np.diff(np.append(starts, len(term_codes)))
    terms = _names(term_codes[starts], names)
    order = sorted(range(len(terms)), key=terms.__getitem__) if bmp(terms) else None
    if order is None:
        order = sorted(range(len(terms)), key=lambda i: utf16_key(terms[i]))
    order_array = np.array(order, np.int64)
    new_df = df[order_array]
    new_starts = np.cumsum(new_df) - new_df
    gather = np.arange(len(term_codes)) + np.repeat(starts[order_array] - new_starts, new_df)
    paper_ids = np.array([pid for pid, _ in papers], np.uint32)
    return Run([terms[i] for i in order], new_df, paper_ids[paper_index[gather]], impacts[gather])


def _names(codes: np.ndarray, latin: list[str]) -> list[str]:
    """Term strings of sorted codes: Latin terms by number, then CJK bigrams and lone characters
    decoded in one go."""
    split = int(np.searchsorted(codes, _LATIN_CODES))
    names = [latin[c] for c in codes[:split].tolist()]
    cjk = codes[split:]
    pairs = np.stack(((cjk >> np.uint64(21)), cjk & np.uint64((1 << 21) - 1)), axis=1).astype(np.uint32)
    text = pairs.tobytes().decode("utf-32-le")  # a lone character is followed by U+0000
    return names + [text[i : i + 2].rstrip("\x00") for i in range(0, len(text), 2)]


def _starts(sorted_keys: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))
