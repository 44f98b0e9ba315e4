"""Postings of the search index in memory: built from papers' texts with numpy, encoded, merged.

A ``Run`` is a sorted slice of an inverted index: terms in JavaScript's string order, and for each
term its postings (paper ids, ascending, with an impact byte). Papers become runs, segment files are
read back as runs a shard at a time (``search_segments``), runs are combined and renumbered, so no
step holds more than a batch of papers or one shard per input.

Tokenising is the costly part of a build (a paper has ~1,600 CJK characters of translation and
explainer): bigrams are cut and counted with numpy over a whole batch of papers at once, which is
~6x faster than Python's ``re`` and ``Counter`` per paper; ``search_text.field_terms`` is the plain
reference it must agree with (``tests/test_search_index.py`` checks it with hypothesis).
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .search_text import CJK, CJK_RANGES, fold, utf16_key

SLOT_BITS = 12  # a paper's id is day * 4096 + its slot in the day
IMPACT_LEVELS = 32
K1, B, AVGDL = 1.2, 0.5, 1000.0  # BM25 saturation and length normalisation (AVGDL is fixed, see below)
_CODE_BITS = 42  # a CJK term's code: first << 21 | second (0 for a lone character); Latin: vocabulary index
MAX_FIELDS = 16
_FIELD_BITS = 4
_BATCH_BITS = 14  # 16,384 papers a batch at most
_CODE_SHIFT = _BATCH_BITS + _FIELD_BITS  # an occurrence's key: code << 18 | paper << 4 | field
_CELL_MASK = (1 << _CODE_SHIFT) - 1
_LATIN_SPLIT = re.compile(f"([^\\W_{CJK}]+)")
_HAS_CJK = re.compile(f"[{CJK}\n]")  # what stops two words from making a pair
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")


@dataclass
class Run:
    """Terms (sorted by ``utf16_key``), their document frequencies, and all postings in term order."""

    terms: list[str]
    df: np.ndarray  # int64, one per term, all > 0
    ids: np.ndarray  # uint32
    impacts: np.ndarray  # uint8
    _keys: list[str] | list[bytes] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def empty(cls) -> Run:
        return cls([], np.zeros(0, np.int64), np.zeros(0, np.uint32), np.zeros(0, np.uint8))

    def __len__(self) -> int:
        return len(self.terms)

    def split(self, last: str) -> tuple[Run, Run]:
        """The terms up to ``last`` and the rest."""
        if self._keys is None:  # Python's string order is UTF-16's unless a term is beyond U+FFFF
            self._keys = self.terms if bmp(self.terms) else [utf16_key(t) for t in self.terms]
        cut = bisect.bisect_right(self._keys, last if self._keys is self.terms else utf16_key(last))
        at = int(self.df[:cut].sum())
        head = Run(self.terms[:cut], self.df[:cut], self.ids[:at], self.impacts[:at])
        tail = Run(self.terms[cut:], self.df[cut:], self.ids[at:], self.impacts[at:])
        tail._keys = tail.terms if self._keys is self.terms else self._keys[cut:]
        return head, tail

    def pieces(self, postings: int = 1 << 17) -> Iterator[Run]:
        """The run cut into runs of about ``postings`` postings (a longer term stays whole), which
        keeps the temporaries of encoding and merging small."""
        ends = np.cumsum(self.df)
        term = at = 0
        while term < len(self.terms):
            cut = max(int(np.searchsorted(ends, at + postings, side="right")), term + 1)
            end = int(ends[cut - 1])
            piece = Run(self.terms[term:cut], self.df[term:cut], self.ids[at:end], self.impacts[at:end])
            if self._keys is not None:
                piece._keys = piece.terms if self._keys is self.terms else self._keys[term:cut]
            yield piece
            term, at = cut, end

    def days(self) -> np.ndarray:
        return np.unique(self.ids >> SLOT_BITS)

    def select(self, keep: np.ndarray) -> Run:
        """The postings where ``keep`` is true; terms left without postings are dropped."""
        if keep.all():
            return self
        term_of = np.repeat(np.arange(len(self.terms)), self.df)[keep]
        df = np.bincount(term_of, minlength=len(self.terms))
        alive = np.flatnonzero(df)
        return Run([self.terms[i] for i in alive], df[alive], self.ids[keep], self.impacts[keep])


def remap(run: Run, days: dict[int, np.ndarray]) -> Run:
    """Postings of the given days moved to new slots (``days[day][old slot]``, -1 drops the paper),
    others kept: a day is renumbered this way when a page of it changes, without its texts."""
    if not len(run) or not days:
        return run
    day_of = (run.ids >> SLOT_BITS).astype(np.int64)
    touched = np.isin(day_of, np.fromiter(days, np.int64))
    if not touched.any():
        return run
    ids = run.ids.astype(np.int64)
    new_slot = np.full(len(ids), -2, np.int64)
    for day, table in days.items():
        at = np.flatnonzero(touched & (day_of == day))
        new_slot[at] = table[ids[at] & ((1 << SLOT_BITS) - 1)]
    ids[touched] = (day_of[touched] << SLOT_BITS) | new_slot[touched]
    keep = new_slot != -1
    term_of = np.repeat(np.arange(len(run.terms), dtype=np.uint64), run.df)[keep]
    moved = Run(run.terms, run.df, ids[keep].astype(np.uint32), run.impacts[keep])
    packed = np.sort(_pack(term_of, moved.ids, moved.impacts))
    result = _from_packed(run.terms, packed, len(run.terms))
    alive = np.flatnonzero(result.df)
    return Run([result.terms[i] for i in alive], result.df[alive], result.ids, result.impacts)


def combine(runs: Sequence[Run]) -> Run:
    """One run holding all postings of ``runs`` (papers must not repeat between them)."""
    runs = [r for r in runs if len(r)]
    if len(runs) <= 1:
        return runs[0] if runs else Run.empty()
    terms = sorted({t for r in runs for t in r.terms}, key=utf16_key)
    rank = {t: i for i, t in enumerate(terms)}
    packed = np.concatenate(
        [_pack(np.repeat(np.array([rank[t] for t in r.terms], np.uint64), r.df), r.ids, r.impacts) for r in runs]
    )
    return _from_packed(terms, np.sort(packed), len(terms))


# ---------------------------------------------------------------------------------------------------
# Documents -> run


def impact(weighted_tf: np.ndarray, length: np.ndarray) -> np.ndarray:
    """BM25's term-frequency part in ``IMPACT_LEVELS`` steps (1..32: finer steps change no ranking
    that matters and cost ~40% more postings bytes after gzip). The average length is a constant
    rather than the corpus's, so a paper's impacts never change when others are added: an
    incremental build writes the same numbers as a full one, and the reader applies idf, which does
    change, at query time."""
    norm = K1 * (1 - B + B * length / AVGDL)
    return (1 + np.rint((IMPACT_LEVELS - 1) * weighted_tf / (weighted_tf + norm))).astype(np.uint8)


def _is_cjk(codes: np.ndarray) -> np.ndarray:
    mask = np.zeros(codes.shape, bool)
    for low, high in CJK_RANGES:
        mask |= (codes >= low) & (codes <= high)
    return mask


def index_papers(papers: Sequence[tuple[int, Sequence[tuple[float, str]]]]) -> Run:
    """A run from papers given as (id, [(weight, text), ...]), ids ascending, at most ``MAX_FIELDS``
    fields each: each term's weighted frequency over the fields, the paper's weighted length in
    tokens, and from these the impact. Occurrences are packed into integers and sorted once with
    ``np.sort`` (radix and SIMD sorts; ``argsort`` is ~15x slower)."""
    if len(papers) > 1 << _BATCH_BITS:
        raise ValueError(f"at most {1 << _BATCH_BITS} papers a batch")
    vocabulary: dict[str, int] = {}
    latin_keys: list[int] = []
    texts: list[str] = []
    field_keys: list[int] = []
    weights = np.zeros((len(papers), MAX_FIELDS))
    latin_words = np.zeros((len(papers), MAX_FIELDS))
    for index, (_, fields) in enumerate(papers):
        for number, (weight, text) in enumerate(fields):
            folded = fold(text)
            texts.append(folded)
            weights[index, number] = weight
            base = (index << _FIELD_BITS) | number
            field_keys.append(base)
            terms = _latin_terms(folded)
            latin_words[index, number] = terms.words
            latin_keys += [base | vocabulary.setdefault(t, len(vocabulary)) << _CODE_SHIFT for t in terms]
    field_key = np.repeat(np.array(field_keys, np.uint64), [len(t) + 1 for t in texts])
    chars = np.frombuffer(("\n".join(texts) + "\n").encode("utf-32-le"), np.uint32).astype(np.uint64)
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
    keys = np.sort(np.concatenate((np.array(latin_keys, np.uint64), cjk_keys)))
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
    codes = keys >> np.uint64(_BATCH_BITS)
    starts = _starts(codes)
    df = np.diff(np.append(starts, len(codes)))
    names = _names(codes[starts], list(vocabulary))
    order = sorted(range(len(names)), key=names.__getitem__) if bmp(names) else None
    if order is None:
        order = sorted(range(len(names)), key=lambda i: utf16_key(names[i]))
    order_array = np.array(order, np.int64)
    new_df = df[order_array]
    new_starts = np.cumsum(new_df) - new_df
    gather = np.arange(len(codes)) + np.repeat(starts[order_array] - new_starts, new_df)
    paper_ids = np.array([pid for pid, _ in papers], np.uint32)
    return Run([names[i] for i in order], new_df, paper_ids[paper_index[gather]], impacts[gather])


def bmp(names: list[str]) -> bool:
    """Whether no term has a character beyond U+FFFF, where Python's string order is UTF-16's."""
    return not _ASTRAL.search("".join(names))


def _names(codes: np.ndarray, words: list[str]) -> list[str]:
    """Term strings of sorted codes: Latin words by vocabulary index, then CJK bigrams and lone
    characters decoded in one go."""
    latin = int(np.searchsorted(codes, 1 << 21))
    names = [words[c] for c in codes[:latin].tolist()]
    cjk = codes[latin:]
    pairs = np.stack(((cjk >> np.uint64(21)), cjk & np.uint64((1 << 21) - 1)), axis=1).astype(np.uint32)
    text = pairs.tobytes().decode("utf-32-le")  # a lone character is followed by U+0000
    return names + [text[i : i + 2].rstrip("\x00") for i in range(0, len(text), 2)]


def _starts(sorted_keys: np.ndarray) -> np.ndarray:
    if not len(sorted_keys):
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.concatenate(([True], sorted_keys[1:] != sorted_keys[:-1])))


def _pack(term_rank: np.ndarray, ids: np.ndarray, impacts: np.ndarray) -> np.ndarray:
    """(term rank, id, impact) in one integer that sorts by term, then id."""
    return (term_rank.astype(np.uint64) << np.uint64(40)) | (ids.astype(np.uint64) << np.uint64(8)) | impacts


def _from_packed(terms: list[str], packed: np.ndarray, count: int) -> Run:
    df = np.bincount((packed >> np.uint64(40)).astype(np.int64), minlength=count)
    ids = ((packed >> np.uint64(8)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return Run(terms, df, ids, (packed & np.uint64(0xFF)).astype(np.uint8))


class _Terms(list[str]):
    words = 0


def _latin_terms(folded: str) -> _Terms:
    """A field's Latin words and the pairs of words that follow each other with no CJK or line
    break between (one regex pass: ``split`` gives the words and what separates them)."""
    parts = _LATIN_SPLIT.split(folded)
    words = parts[1::2]
    terms = _Terms(words)
    terms.words = len(words)
    if folded.isascii() and "\n" not in folded:
        terms += [f"{a} {b}" for a, b in itertools.pairwise(words)]
    else:
        pairs = zip(words, words[1:], parts[2:-1:2], strict=False)
        terms += [f"{a} {b}" for a, b, gap in pairs if not _HAS_CJK.search(gap)]
    return terms


# ---------------------------------------------------------------------------------------------------
# Postings <-> bytes: LEB128 gaps, then one impact byte per posting


def encode_postings(run: Run) -> tuple[bytes, np.ndarray, np.ndarray]:
    """All terms' postings in one buffer, and per term its offset and gap-bytes length; term i's
    bytes are ``buffer[offset[i] : offset[i] + gap_len[i] + df[i]]``."""
    if not len(run):
        return b"", np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.cumsum(run.df) - run.df
    ids = run.ids.astype(np.int64)
    gaps = np.diff(ids, prepend=0)
    gaps[starts] = ids[starts]
    size = np.ones(len(gaps), np.int64)
    for bits in (7, 14, 21, 28):
        size += gaps >= 1 << bits
    gap_len = np.add.reduceat(size, starts)
    total = gap_len + run.df
    offset = np.cumsum(total) - total
    term_of = np.repeat(np.arange(len(run)), run.df)
    within = np.cumsum(size) - size  # offset of each gap among all gap bytes
    gap_pos = offset[term_of] + within - (within[starts])[term_of]
    out = np.zeros(int(total.sum()), np.uint8)
    for byte in range(5):
        has = size > byte
        more = (size > byte + 1)[has]
        out[gap_pos[has] + byte] = ((gaps[has] >> (7 * byte)) & 0x7F) | (more.astype(np.int64) << 7)
    rank_in_term = np.arange(len(gaps)) - starts[term_of]
    out[offset[term_of] + gap_len[term_of] + rank_in_term] = run.impacts
    return out.tobytes(), offset, gap_len


def decode_postings(terms: list[str], df: np.ndarray, buffer: bytes, offsets: np.ndarray, gap_lens: np.ndarray) -> Run:
    """The inverse of ``encode_postings``: term i's bytes are at ``offsets[i]`` in ``buffer``."""
    if not terms:
        return Run.empty()
    data = np.frombuffer(buffer, np.uint8)
    df = np.asarray(df, np.int64)
    gap_bytes = data[ragged(np.asarray(offsets, np.int64), np.asarray(gap_lens, np.int64))]
    impacts = data[ragged(np.asarray(offsets, np.int64) + gap_lens, df)]
    ends = (gap_bytes & 0x80) == 0
    value_starts = np.flatnonzero(np.concatenate(([True], ends[:-1])))
    value_of = np.cumsum(np.concatenate(([0], ends[:-1].astype(np.int64))))
    shift = (np.arange(len(gap_bytes)) - value_starts[value_of]) * 7
    gaps = np.add.reduceat((gap_bytes & 0x7F).astype(np.int64) << shift, value_starts)
    total = np.cumsum(gaps)
    starts = np.cumsum(df) - df
    ids = total - np.repeat(total[starts] - gaps[starts], df)
    return Run(terms, df, ids.astype(np.uint32), impacts)


def ragged(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices ``starts[i] .. starts[i] + lengths[i]``, one range after another."""
    ends = np.cumsum(lengths)
    return np.arange(int(ends[-1]) if len(ends) else 0) + np.repeat(starts - (ends - lengths), lengths)
