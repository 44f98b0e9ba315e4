"""A full build's segments: every paper tokenised once, in batches in id order, and each term's
postings written once, with no merges.

Each batch's postings (``search_tokens.batch_postings``) are encoded at once as LEB128 gaps and
impact bytes, a term's first gap taken from the last id the term had in earlier batches, so a
term's bytes in the finished segment are its batches' gap bytes one after another, then their
impact bytes. Terms are numbered on first sight by their key (``TermTable``: a Python string per
distinct term, never per occurrence); only at the end are the distinct terms sorted, and the
batches' pieces gathered in that order a quarter of a megabyte at a time into the segment's files.

The encoded postings (~2 bytes a posting, about what the gzipped index weighs: 122 MB at 3,000
posts) are a full build's largest data, so they wait in a temporary file, not in memory, and so does
where each batch's piece of each term lies in it (20 bytes a piece, 38 MB at 3,000 posts). Each
batch's terms are written to it nearly in the segment's order (by their first four characters),
so a gather reads a short run from each batch (``_read_ranges``). Writing a full build's segments
is the one step of it that needs no build state: a process forked beside the listings does it.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import numpy as np

from .search_postings import bmp, days_of, encode_postings, ragged
from .search_segments import SegmentInfo, SegmentWriter
from .search_text import utf16_key
from .search_tokens import BatchPostings

RUN_GAP = 1 << 14  # bytes between two pieces read with one call rather than two
CHUNK_BYTES = 1 << 18  # postings bytes gathered at a time when writing (with 16 bytes of indices for each)
# where a batch's postings of one term are in the store (20 bytes; 1.9 million of them at 3,000 posts)
_PIECE = np.dtype([("number", np.int32), ("df", np.int32), ("gaps", np.int32), ("offset", np.int64)])


class TermTable:
    """Every term seen in a build: its number (first sight first) by key, its string, and the first
    four UTF-16 code units of the string as a number (``prefixes``: nearly the order terms are written in)."""

    def __init__(self) -> None:
        self.numbers: dict[int, int] = {}
        self.names: list[str] = []
        self.prefixes = np.zeros(0, np.uint64)

    def number(self, batch: BatchPostings) -> np.ndarray:
        keys = batch.keys.tolist()
        found = np.fromiter(map(self.numbers.get, keys, itertools.repeat(-1)), np.int64, len(keys))
        new = np.flatnonzero(found < 0)
        if len(new):
            numbers = range(len(self.names), len(self.names) + len(new))
            found[new] = numbers
            names = batch.names(new)
            self.names += names
            prefixes = b"".join(utf16_key(name)[:8].ljust(8, b"\0") for name in names)
            self.prefixes = np.concatenate((self.prefixes, np.frombuffer(prefixes, ">u8").astype(np.uint64)))
            self.numbers.update(zip(batch.keys[new].tolist(), numbers, strict=True))
        return found


class SegmentBuilder:
    """The postings of one segment, added a batch at a time (ids ascending from batch to batch)."""

    def __init__(self, table: TermTable, spill_dir: Path) -> None:
        self.table = table
        self.last = np.zeros(0, np.int64)  # per term number: its last id so far
        # the encoded postings, and where each batch's piece of a term is in them (``_PIECE``), wait on
        # disk: unlinked at once, so a killed build leaves nothing; closed by ``write``
        self.store = tempfile.TemporaryFile(dir=spill_dir)  # noqa: SIM115
        self.pieces = tempfile.TemporaryFile(dir=spill_dir)  # noqa: SIM115
        self.size = 0
        self.days: set[int] = set()

    def add(self, batch: BatchPostings) -> None:
        if not len(batch.keys):
            return
        numbers = self.table.number(batch)
        if len(self.last) < len(self.table.names):
            self.last = np.concatenate((self.last, np.zeros(len(self.table.names) - len(self.last), np.int64)))
        # the batch's terms nearly in the segment's order, so that writing it reads the file in runs
        order = np.argsort(self.table.prefixes[numbers], kind="stable")
        numbers, df = numbers[order], batch.df[order]
        gather = ragged((np.cumsum(batch.df) - batch.df)[order], df)
        ids = batch.ids[gather]
        buffer, offsets, gap_lens = encode_postings(df, ids, batch.impacts[gather], self.last[numbers])
        self.last[numbers] = ids[np.cumsum(df) - 1]
        pieces = np.empty(len(numbers), _PIECE)
        pieces["number"], pieces["df"], pieces["gaps"], pieces["offset"] = numbers, df, gap_lens, offsets + self.size
        self.pieces.write(pieces.tobytes())
        self.store.write(buffer)
        self.size += len(buffer)
        self.days.update(days_of(batch.ids))

    def flush(self) -> None:
        """Everything added on disk, not in this process's buffers: a process forked next writes the
        segment (the files' offsets are shared with it; a buffer flushed later would land twice)."""
        self.store.flush()
        self.pieces.flush()

    def write(self, folder: Path, name: str) -> SegmentInfo:
        """The segment's files; the builder is spent."""
        writer = SegmentWriter(folder, name)
        with self.pieces:
            self.pieces.seek(0)
            pieces = np.fromfile(self.pieces, _PIECE)
        if not len(pieces):
            self.store.close()
            return writer.close()
        number, df, gap_len, offset = (pieces[field] for field in ("number", "df", "gaps", "offset"))
        present = np.flatnonzero(np.bincount(number, minlength=len(self.table.names)))
        names = [self.table.names[i] for i in present.tolist()]
        order = sorted(range(len(names)), key=names.__getitem__) if bmp(names) else None
        if order is None:
            order = sorted(range(len(names)), key=lambda i: utf16_key(names[i]))
        terms = [names[i] for i in order]
        rank = np.zeros(len(self.table.names), np.int32)
        rank[present[order]] = np.arange(len(order))
        ranks = rank[number]
        by_term = np.argsort(ranks, kind="stable")  # pieces by term, batches in order
        first = np.flatnonzero(np.diff(ranks[by_term], prepend=-1))  # each term's first piece
        del ranks  # arrays are dropped as soon as they are used: this is a full build's peak memory
        term_df = np.add.reduceat(df[by_term], first)
        term_gaps = np.add.reduceat(gap_len[by_term], first)
        sizes = term_df + term_gaps
        ends = np.cumsum(sizes)
        first = np.append(first, len(by_term))
        self.store.flush()
        with self.store:
            term = 0
            while term < len(terms):  # a quarter of a megabyte of postings at a time
                cut = max(int(np.searchsorted(ends, ends[term] - sizes[term] + CHUNK_BYTES, side="right")), term + 1)
                chunk_pieces = by_term[first[term] : first[cut]]
                starts, lengths = _byte_ranges(
                    first[term:cut] - first[term],
                    df[chunk_pieces],
                    gap_len[chunk_pieces],
                    offset[chunk_pieces],
                )
                data = _read_ranges(self.store.fileno(), starts, lengths)
                chunk = sizes[term:cut]
                writer.write_encoded(
                    terms[term:cut], term_df[term:cut], term_gaps[term:cut], data, np.cumsum(chunk) - chunk
                )
                term = cut
        writer.days.update(self.days)
        return writer.close()


def _read_ranges(file: int, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The bytes of each range (``starts``, ``lengths``) of ``file``, one range after another, read
    as the few runs they fall in. A memory map of the store put ~60 MB more into the build's memory
    at 3,000 posts: each fault maps the pages around it too, and pieces are spread over every batch."""
    if not len(starts):
        return np.zeros(0, np.uint8)
    order = np.argsort(starts, kind="stable")
    begin, end = starts[order], starts[order] + lengths[order]
    reach = np.maximum.accumulate(end)
    new_run = np.concatenate(([True], begin[1:] > reach[:-1] + RUN_GAP))
    opens = np.flatnonzero(new_run)
    run_start, run_length = begin[opens], np.maximum.reduceat(end, opens) - begin[opens]
    run_base = np.cumsum(run_length) - run_length
    buffer = np.empty(int(run_length.sum()), np.uint8)
    view = buffer.data
    for start, length, at in zip(run_start.tolist(), run_length.tolist(), run_base.tolist(), strict=True):
        while length:  # (a read may return less than asked)
            done = os.preadv(file, [view[at : at + length]], start)
            if not done:
                raise OSError(f"the search index's postings store ended early, at byte {start}")
            start, length, at = start + done, length - done, at + done
    run_of = np.empty(len(starts), np.int64)
    run_of[order] = np.cumsum(new_run) - 1
    return buffer[ragged(starts - run_start[run_of] + run_base[run_of], lengths)]


def _byte_ranges(
    first: np.ndarray, df: np.ndarray, gap_len: np.ndarray, offset: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Where consecutive terms' bytes are in the store, given their pieces in order (``first``: each
    term's first piece): a term's pieces' gap bytes, then their impact bytes."""
    count = np.diff(np.append(first, len(df)))
    at = np.repeat(first, count)
    at += np.arange(len(df))
    starts, lengths = np.empty(2 * len(df), np.int64), np.empty(2 * len(df), np.int64)
    starts[at], lengths[at] = offset, gap_len
    at += np.repeat(count, count)
    starts[at], lengths[at] = offset + gap_len, df
    return starts, lengths
