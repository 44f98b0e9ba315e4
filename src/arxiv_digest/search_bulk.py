"""A full build's segments: every paper tokenised once, in batches in id order, and each term's
postings written once, with no spills, merges or worker processes.

Each batch's postings (``search_tokens.batch_postings``) are encoded at once into one growing buffer
as LEB128 gaps and impact bytes, a term's first gap taken from the last id the term had in earlier
batches, so a term's bytes in the finished segment are its batches' gap bytes one after another,
then their impact bytes. Terms are numbered on first sight by their key (``TermTable``: a Python
string per distinct term, never per occurrence); only at the end are the distinct terms sorted, and
the buffer's pieces gathered in that order a few megabytes at a time into the segment's files. The
buffer holds ~2 bytes a posting, about what the gzipped index weighs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .search_postings import SLOT_BITS, bmp, encode_postings, ragged
from .search_segments import SegmentInfo, SegmentWriter
from .search_text import utf16_key
from .search_tokens import BatchPostings

CHUNK_BYTES = 1 << 20  # postings bytes gathered at a time when writing (with 16 bytes of indices for each)


class TermTable:
    """Every term seen in a build: its number (first sight first) by key, and its string."""

    def __init__(self) -> None:
        self.numbers: dict[int, int] = {}
        self.names: list[str] = []

    def number(self, batch: BatchPostings) -> np.ndarray:
        keys = batch.keys.tolist()
        get = self.numbers.get
        found = np.fromiter((get(key, -1) for key in keys), np.int64, len(keys))
        new = np.flatnonzero(found < 0)
        if len(new):
            numbers = range(len(self.names), len(self.names) + len(new))
            found[new] = numbers
            self.names += batch.names(new)
            self.numbers.update(zip(batch.keys[new].tolist(), numbers, strict=True))
        return found


class SegmentBuilder:
    """The postings of one segment, added a batch at a time (ids ascending from batch to batch)."""

    def __init__(self, table: TermTable) -> None:
        self.table = table
        self.last = np.zeros(0, np.int64)  # per term number: its last id so far
        self.store = bytearray()
        self.pieces: list[np.ndarray] = []  # per batch, rows (int32): term number, df, gap bytes
        self.offsets: list[np.ndarray] = []  # per batch, each piece's offset in the store
        self.days: set[int] = set()

    def add(self, batch: BatchPostings) -> None:
        if not len(batch.keys):
            return
        numbers = self.table.number(batch)
        if len(self.last) < len(self.table.names):
            self.last = np.concatenate((self.last, np.zeros(len(self.table.names) - len(self.last), np.int64)))
        buffer, offsets, gap_lens = encode_postings(batch.df, batch.ids, batch.impacts, self.last[numbers])
        self.last[numbers] = batch.ids[np.cumsum(batch.df) - 1]
        self.pieces.append(np.stack((numbers, batch.df, gap_lens)).astype(np.int32))
        self.offsets.append(offsets + len(self.store))
        self.store += buffer
        self.days.update(np.unique(batch.ids >> SLOT_BITS).tolist())

    def write(self, folder: Path, name: str) -> SegmentInfo:
        """The segment's files; the builder is spent."""
        writer = SegmentWriter(folder, name)
        if not self.pieces:
            return writer.close()
        number, df, gap_len = np.concatenate(self.pieces, axis=1)
        offset = np.concatenate(self.offsets)
        self.pieces, self.offsets = [], []
        present = np.unique(number)
        names = [self.table.names[i] for i in present.tolist()]
        order = sorted(range(len(names)), key=names.__getitem__) if bmp(names) else None
        if order is None:
            order = sorted(range(len(names)), key=lambda i: utf16_key(names[i]))
        terms = [names[i] for i in order]
        rank = np.zeros(len(self.table.names), np.int32)
        rank[present[order]] = np.arange(len(order))
        ranks = rank[number]
        by_term = np.argsort(ranks, kind="stable")  # pieces by term, batches in order
        del number  # from here on arrays are dropped as soon as they are used: this is a full build's peak memory
        first = np.flatnonzero(np.diff(ranks[by_term], prepend=-1))  # each term's first piece
        del ranks
        df, gap_len, offset = df[by_term], gap_len[by_term], offset[by_term]
        del by_term
        count = np.diff(np.append(first, len(df)))
        term_df, term_gaps = np.add.reduceat(df, first), np.add.reduceat(gap_len, first)
        # a term's byte ranges: its pieces' gap bytes, then their impact bytes
        at = np.repeat(first, count)
        at += np.arange(len(df))
        starts, lengths = np.empty(2 * len(df), np.int64), np.empty(2 * len(df), np.int32)
        starts[at], lengths[at] = offset, gap_len
        at += np.repeat(count, count)
        offset += gap_len
        starts[at], lengths[at] = offset, df
        del at, df, gap_len, offset
        store = np.frombuffer(self.store, np.uint8)
        sizes = term_df + term_gaps
        ends = np.cumsum(sizes)
        term = 0
        while term < len(terms):
            cut = max(int(np.searchsorted(ends, ends[term] - sizes[term] + CHUNK_BYTES, side="right")), term + 1)
            low, high = 2 * first[term], 2 * first[cut] if cut < len(terms) else len(starts)
            data = store[ragged(starts[low:high], lengths[low:high])]
            chunk = sizes[term:cut]
            writer.write_encoded(
                terms[term:cut], term_df[term:cut], term_gaps[term:cut], data, np.cumsum(chunk) - chunk
            )
            term = cut
        del store
        self.store = bytearray()
        writer.days.update(self.days)
        return writer.close()
