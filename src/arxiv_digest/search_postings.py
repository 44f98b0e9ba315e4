"""Postings of the search index in memory: runs, their impacts, encoding, merging and renumbering.

A ``Run`` is a sorted slice of an inverted index: terms in JavaScript's string order, and for each
term its postings (paper ids, ascending, with an impact byte). Papers become runs
(``search_tokens``), segment files are read back as runs a shard at a time (``search_segments``),
runs are combined and renumbered, so no step holds more than a batch of papers or one shard per input.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .search_text import utf16_key

SLOT_BITS = 12  # a paper's id is day * 4096 + its slot in the day
IMPACT_LEVELS = 32
K1, B, AVGDL = 1.2, 0.5, 1000.0  # BM25 saturation and length normalisation (AVGDL is fixed, see below)
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

    def days(self) -> set[int]:
        return days_of(self.ids)

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


def days_of(ids: np.ndarray) -> set[int]:
    """The days of papers ``ids``: counted from the first one, not sorted (a full build's batch has
    ~444,000 postings over a few days; ``np.unique`` would also import numpy.ma, 30 ms of an
    incremental build)."""
    if not len(ids):
        return set()
    days = ids >> SLOT_BITS
    first = int(days.min())
    return set((np.flatnonzero(np.bincount(days - first)) + first).tolist())


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
# Impacts


def impact(weighted_tf: np.ndarray, length: np.ndarray) -> np.ndarray:
    """BM25's term-frequency part in ``IMPACT_LEVELS`` steps (1..32: finer steps change no ranking
    that matters and cost ~40% more postings bytes after gzip). The average length is a constant
    rather than the corpus's, so a paper's impacts never change when others are added: an
    incremental build writes the same numbers as a full one, and the reader applies idf, which does
    change, at query time."""
    return impact_of(weighted_tf, norm(length))


def norm(length: np.ndarray) -> np.ndarray:
    """BM25's length normalisation, per paper."""
    return K1 * (1 - B + B * length / AVGDL)


def impact_of(weighted_tf: np.ndarray, norms: np.ndarray) -> np.ndarray:
    """``impact`` from the norm of each posting's paper, in place where it can (the same operations
    in the same order, so the same bytes)."""
    denominator = weighted_tf + norms
    scaled = (IMPACT_LEVELS - 1) * weighted_tf
    scaled /= denominator
    np.rint(scaled, out=scaled)
    result = scaled.astype(np.uint8)
    result += 1
    return result


def bmp(names: list[str]) -> bool:
    """Whether no term has a character beyond U+FFFF, where Python's string order is UTF-16's."""
    return not _ASTRAL.search("".join(names))


def _pack(term_rank: np.ndarray, ids: np.ndarray, impacts: np.ndarray) -> np.ndarray:
    """(term rank, id, impact) in one integer that sorts by term, then id."""
    return (term_rank.astype(np.uint64) << np.uint64(40)) | (ids.astype(np.uint64) << np.uint64(8)) | impacts


def _from_packed(terms: list[str], packed: np.ndarray, count: int) -> Run:
    df = np.bincount((packed >> np.uint64(40)).astype(np.int64), minlength=count)
    ids = ((packed >> np.uint64(8)) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return Run(terms, df, ids, (packed & np.uint64(0xFF)).astype(np.uint8))


# ---------------------------------------------------------------------------------------------------
# Postings <-> bytes: LEB128 gaps, then one impact byte per posting


def encode_postings(
    df: np.ndarray, ids: np.ndarray, impacts: np.ndarray, base: np.ndarray | None = None
) -> tuple[bytes, np.ndarray, np.ndarray]:
    """All terms' postings in one buffer, and per term its offset and gap-bytes length; term i's
    bytes are ``buffer[offset[i] : offset[i] + gap_len[i] + df[i]]``. A term's first gap is from
    ``base[i]`` (0 by default): a full build encodes a term's postings a batch of papers at a time.

    Ids are 32-bit, so are gaps (at most 5 LEB128 bytes). Every gap's first byte is scattered to its
    place among the gap bytes at once; only the few gaps longer than a byte (a quarter of them) take
    the further passes. The buffer is then filled through one mask, each term's gap bytes then its
    impacts (8x faster than placing every byte of every term by its own index: a full build's
    parent encodes all postings)."""
    if not len(df):
        return b"", np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.cumsum(df) - df
    gaps = np.empty(len(ids), np.uint32)
    gaps[0] = ids[0]
    np.subtract(ids[1:], ids[:-1], out=gaps[1:], dtype=np.uint32, casting="unsafe")  # wraps between terms
    gaps[starts] = ids[starts] if base is None else ids[starts] - base
    size = np.ones(len(gaps), np.uint8)
    for bits in (7, 14, 21, 28):
        size += gaps >= np.uint32(1 << bits)
    gap_len = np.add.reduceat(size, starts, dtype=np.int64)
    at = np.cumsum(size, dtype=np.int64)  # each gap's first byte among all gap bytes
    gap_bytes = np.empty(int(at[-1]), np.uint8)
    at -= size
    for byte in range(5):
        has = np.flatnonzero(size > byte) if byte else slice(None)
        part = ((gaps[has] >> np.uint32(7 * byte)) & np.uint32(0x7F)).astype(np.uint8)
        part |= (size[has] > byte + 1).view(np.uint8) << np.uint8(7)
        gap_bytes[at[has] + byte] = part
    total = gap_len + df
    lengths = np.empty(2 * len(df), np.int64)
    lengths[0::2], lengths[1::2] = gap_len, df
    is_gap = np.repeat(np.tile(np.array([True, False]), len(df)), lengths)
    out = np.empty(len(is_gap), np.uint8)
    out[is_gap] = gap_bytes
    out[~is_gap] = impacts
    return out.tobytes(), np.cumsum(total) - total, gap_len


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
    indices = np.repeat(starts - (ends - lengths), lengths)
    indices += np.arange(len(indices))  # in place: a full build's gathers are the index's peak memory
    return indices
